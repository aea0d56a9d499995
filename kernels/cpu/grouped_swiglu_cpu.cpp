#include "kernels/cpu/grouped_swiglu_cpu.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/swiglu_rows.h"

namespace moelab::kernels::cpu {

namespace {

// Rows per chunk of an elementwise pass: enough work per chunk (about 16k elements) that the
// thread hand-off is paid back.
std::int64_t row_grain(std::int64_t width) { return std::max<std::int64_t>(1, 16384 / width); }

// dst[r] = src[token[r]] for every row: the gather of the routed tokens.
template <class T>
void gather_rows(const CpuExecutor& exec, const T* src, const std::int64_t* token,
                 std::int64_t rows, std::int64_t width, T* dst) {
    exec.parallel_for(rows, row_grain(width), [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t r = begin; r < end; ++r) {
            std::memcpy(dst + r * width, src + token[r] * width, sizeof(T) * width);
        }
    });
}

// dst[t] = sum of src[r] over the rows r of token t, in ascending r: each output row is written
// once, and the order of the sum is the same for any number of threads.
template <class T>
void combine_rows(const CpuExecutor& exec, const GroupedSwigluProblem<T>& problem, const T* src,
                  std::int64_t width, T* dst) {
    exec.parallel_for(problem.tokens, row_grain(width), [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
            T* __restrict into = dst + t * width;
            const std::int64_t first = problem.token_offsets[t];
            const std::int64_t last = problem.token_offsets[t + 1];
            if (first == last) {
                std::memset(into, 0, sizeof(T) * width);
                continue;
            }
            std::memcpy(into, src + problem.rows_of_token[first] * width, sizeof(T) * width);
            for (std::int64_t i = first + 1; i < last; ++i) {
                const T* __restrict from = src + problem.rows_of_token[i] * width;
                for (std::int64_t j = 0; j < width; ++j) into[j] += from[j];
            }
        }
    });
}

// Runs per_expert(e) for every expert, side by side or in turn (Note [Experts side by side]).
template <class T, class PerExpert>
void for_each_expert(const CpuExecutor& exec, const GroupedSwigluProblem<T>& problem,
                     PerExpert&& per_expert) {
    const int threads = exec.task_threads();
    const ExpertSchedule schedule =
        schedule_experts(problem.offsets, problem.desc.experts, threads);
    if (schedule.side_by_side) {
        exec.for_each_task(static_cast<std::int64_t>(schedule.order.size()), threads,
                           [&](std::int64_t i) { per_expert(schedule.order[i]); });
        return;
    }
    for (std::int64_t e = 0; e < problem.desc.experts; ++e) per_expert(e);
}

}  // namespace

void index_rows_by_token(const std::int64_t* token, std::int64_t rows, std::int64_t tokens,
                         std::int64_t* token_offsets, std::int64_t* rows_of_token) {
    std::fill(token_offsets, token_offsets + tokens + 1, 0);
    for (std::int64_t r = 0; r < rows; ++r) ++token_offsets[token[r] + 1];
    for (std::int64_t t = 0; t < tokens; ++t) token_offsets[t + 1] += token_offsets[t];
    // Placing rows advances token_offsets[t] to t's end, that is t + 1's start; shifting the
    // array right by one restores the starts.
    for (std::int64_t r = 0; r < rows; ++r) rows_of_token[token_offsets[token[r]]++] = r;
    for (std::int64_t t = tokens; t > 0; --t) token_offsets[t] = token_offsets[t - 1];
    token_offsets[0] = 0;
}

ExpertSchedule schedule_experts(const std::int64_t* offsets, std::int64_t experts, int threads) {
    ExpertSchedule schedule;
    schedule.order.resize(static_cast<std::size_t>(experts));
    for (std::int64_t e = 0; e < experts; ++e) schedule.order[e] = e;
    auto rows_of = [&](std::int64_t e) { return offsets[e + 1] - offsets[e]; };
    std::stable_sort(schedule.order.begin(), schedule.order.end(),
                     [&](std::int64_t a, std::int64_t b) { return rows_of(a) > rows_of(b); });
    if (threads <= 1 || experts <= 1 || offsets[experts] == 0) return schedule;
    std::vector<std::int64_t> busy(static_cast<std::size_t>(threads), 0);
    for (const std::int64_t e : schedule.order) {
        *std::min_element(busy.begin(), busy.end()) += rows_of(e);
    }
    const std::int64_t busiest = *std::max_element(busy.begin(), busy.end());
    // busiest <= 1.05 * rows / threads, in integers.
    schedule.side_by_side = 100 * busiest * threads <= 105 * offsets[experts];
    return schedule;
}

template <class T>
void grouped_swiglu_forward(const CpuExecutor& exec, const GroupedSwigluProblem<T>& problem,
                            const T* x, const GroupedSwigluForwardBuffers<T>& buffers) {
    const std::int64_t d = problem.desc.d_model, f = problem.desc.d_ff;
    for_each_expert(exec, problem, [&](std::int64_t e) {
        const std::int64_t offset = problem.offsets[e];
        const std::int64_t count = problem.offsets[e + 1] - offset;
        if (count == 0) return;
        gather_rows(exec, x, problem.token + offset, count, d, buffers.rows + offset * d);
        exec.gemm(GemmArgs<T>{.m = count,
                              .n = 2 * f,
                              .k = d,
                              .a = buffers.rows + offset * d,
                              .lda = d,
                              .b = problem.w_in + e * d * 2 * f,
                              .ldb = 2 * f,
                              .c = buffers.pre + offset * 2 * f,
                              .ldc = 2 * f});
        exec.parallel_for(count, row_grain(2 * f), [&](std::int64_t begin, std::int64_t end) {
            swiglu_rows(buffers.pre, problem.weight, buffers.act, offset + begin, offset + end, f);
        });
        exec.gemm(GemmArgs<T>{.m = count,
                              .n = d,
                              .k = f,
                              .a = buffers.act + offset * f,
                              .lda = f,
                              .b = problem.w_out + e * f * d,
                              .ldb = d,
                              .c = buffers.scratch + offset * d,
                              .ldc = d});
    });
    combine_rows(exec, problem, buffers.scratch, d, buffers.out);
}

// Note [Grouped SwiGLU backward]
// With h = [g | u] = x W_in, a = SiLU(g) * u, b = w a (w the row's routing weight),
// y = b W_out, and dy the gathered output gradient of each row:
//   dW_out = b^T dy              db = dy W_out^T              dw = <db, a>
//   dg = w db * u * SiLU'(g)     du = w db * SiLU(g)
//   SiLU'(g) = σ (1 + g (1 - σ)) with σ = sigmoid(g)
//   dW_in = x^T [dg | du]        dx_rows = [dg | du] W_in^T   dx = combine of dx_rows
// The forward keeps the gathered rows, h and b (rows x (d + 3 d_ff) values), like the autograd of
// the reference composition would: recomputing b or gathering the rows again costs a memory-bound
// pass each between GEMMs.
template <class T>
void grouped_swiglu_backward(const CpuExecutor& exec, const GroupedSwigluProblem<T>& problem,
                             const GroupedSwigluForwardBuffers<const T>& forward, const T* grad_out,
                             const GroupedSwigluBackwardBuffers<T>& buffers) {
    const std::int64_t d = problem.desc.d_model, f = problem.desc.d_ff;
    T* const dy = buffers.scratch_d;
    T* const d_scaled = buffers.scratch_f;
    T* const grad_pre = buffers.scratch_2f;
    // An expert's rows of dy are consumed before its rows' input gradients take their place.
    T* const grad_rows = buffers.scratch_d;
    for_each_expert(exec, problem, [&](std::int64_t e) {
        const std::int64_t offset = problem.offsets[e];
        const std::int64_t count = problem.offsets[e + 1] - offset;
        T* const grad_w_out = buffers.grad_w_out + e * f * d;
        T* const grad_w_in = buffers.grad_w_in + e * d * 2 * f;
        if (count == 0) {
            std::memset(grad_w_out, 0, sizeof(T) * f * d);
            std::memset(grad_w_in, 0, sizeof(T) * d * 2 * f);
            return;
        }
        gather_rows(exec, grad_out, problem.token + offset, count, d, dy + offset * d);
        exec.gemm(GemmArgs<T>{.transpose_a = true,
                              .m = f,
                              .n = d,
                              .k = count,
                              .a = forward.act + offset * f,
                              .lda = f,
                              .b = dy + offset * d,
                              .ldb = d,
                              .c = grad_w_out,
                              .ldc = d});
        exec.gemm(GemmArgs<T>{.transpose_b = true,
                              .m = count,
                              .n = f,
                              .k = d,
                              .a = dy + offset * d,
                              .lda = d,
                              .b = problem.w_out + e * f * d,
                              .ldb = d,
                              .c = d_scaled + offset * f,
                              .ldc = f});
        exec.parallel_for(count, row_grain(2 * f), [&](std::int64_t begin, std::int64_t end) {
            swiglu_rows_backward(forward.pre, d_scaled, problem.weight, grad_pre,
                                 buffers.grad_weight, offset + begin, offset + end, f);
        });
        exec.gemm(GemmArgs<T>{.transpose_a = true,
                              .m = d,
                              .n = 2 * f,
                              .k = count,
                              .a = forward.rows + offset * d,
                              .lda = d,
                              .b = grad_pre + offset * 2 * f,
                              .ldb = 2 * f,
                              .c = grad_w_in,
                              .ldc = 2 * f});
        exec.gemm(GemmArgs<T>{.transpose_b = true,
                              .m = count,
                              .n = d,
                              .k = 2 * f,
                              .a = grad_pre + offset * 2 * f,
                              .lda = 2 * f,
                              .b = problem.w_in + e * d * 2 * f,
                              .ldb = 2 * f,
                              .c = grad_rows + offset * d,
                              .ldc = d});
    });
    combine_rows(exec, problem, grad_rows, d, buffers.grad_x);
}

template void grouped_swiglu_forward<float>(const CpuExecutor&, const GroupedSwigluProblem<float>&,
                                            const float*,
                                            const GroupedSwigluForwardBuffers<float>&);
template void grouped_swiglu_forward<double>(const CpuExecutor&,
                                             const GroupedSwigluProblem<double>&, const double*,
                                             const GroupedSwigluForwardBuffers<double>&);
template void grouped_swiglu_backward<float>(const CpuExecutor&, const GroupedSwigluProblem<float>&,
                                             const GroupedSwigluForwardBuffers<const float>&,
                                             const float*,
                                             const GroupedSwigluBackwardBuffers<float>&);
template void grouped_swiglu_backward<double>(const CpuExecutor&,
                                              const GroupedSwigluProblem<double>&,
                                              const GroupedSwigluForwardBuffers<const double>&,
                                              const double*,
                                              const GroupedSwigluBackwardBuffers<double>&);

}  // namespace moelab::kernels::cpu
