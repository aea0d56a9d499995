#pragma once

// The `grouped` kernel's torch-free CPU launchers: grouped SwiGLU experts with the gather of
// routed tokens, the routing-weight multiply and the combine folded in, forward and backward.
//
// Rows are the assignments, grouped by expert: row r belongs to expert e when
// offsets[e] <= r < offsets[e + 1], reads token token[r] of x and adds weight[r] times its
// expert's output into that token's output row:
//   out[t] = sum over rows r with token[r] = t of  weight[r] * SwiGLU_e(x[t])
// The weight scales the activation before the second GEMM (it is linear there), so no pass over
// the expert outputs is spent on it. The combine writes each output row once, adding that token's
// rows in row order (an index of rows by token, built once per call), so results do not depend on
// how the elementwise passes are split; the GEMMs give the bits the BLAS gives (Note [Experts side
// by side]: run in turn they use the BLAS's threads, side by side one thread each).

#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_executor.h"
#include "moelab/kernels/grouped_swiglu.h"

namespace moelab::kernels::cpu {

template <class T>
struct GroupedSwigluProblem {
    GroupedSwigluDesc desc;                 // experts, d_model, d_ff
    std::int64_t tokens = 0;                // rows of x and of the output
    std::int64_t rows = 0;                  // assignments
    const std::int64_t* offsets = nullptr;  // experts + 1: offsets[0] = 0, offsets[experts] = rows
    const std::int64_t* token = nullptr;    // rows, each in [0, tokens)
    // The rows of each token, ascending: rows_of_token[token_offsets[t] .. token_offsets[t + 1]).
    const std::int64_t* token_offsets = nullptr;  // tokens + 1
    const std::int64_t* rows_of_token = nullptr;  // rows
    const T* weight = nullptr;                    // rows
    const T* w_in = nullptr;   // (experts, d_model, 2 d_ff), Note [Expert weight layout]
    const T* w_out = nullptr;  // (experts, d_ff, d_model)
};

// Fills token_offsets (tokens + 1) and rows_of_token (rows) from token (rows, each in
// [0, tokens)): a counting sort, stable in r.
void index_rows_by_token(const std::int64_t* token, std::int64_t rows, std::int64_t tokens,
                         std::int64_t* token_offsets, std::int64_t* rows_of_token);

// Note [Experts side by side]
// One BLAS call over a few hundred rows does not keep several cores busy: at the quickstart
// shape (about 512 rows per expert, d_model 256) OpenBLAS's threads spend a fifth of their time
// handing work over and waiting at the serial steps between GEMMs. When the experts' rows can be
// shared out evenly, each expert instead runs whole (gather, GEMM, SwiGLU, GEMM) on one thread,
// with single-threaded GEMMs, several experts at once; otherwise (few experts, or one expert with
// most of the rows) the experts run one after another with the BLAS's threads. Largest first, each
// to the first thread free: the schedule below predicts how long the busiest thread works, and
// side by side is chosen when that is within 5% of an even share (a dynamic queue cannot do better
// than the largest expert).
struct ExpertSchedule {
    std::vector<std::int64_t> order;  // experts by descending rows; ties by index
    bool side_by_side = false;
};

// offsets: experts + 1 (as in GroupedSwigluProblem); threads: how many experts can run at once.
ExpertSchedule schedule_experts(const std::int64_t* offsets, std::int64_t experts, int threads);

// Buffers of the forward, all row-major and owned by the caller. The first three are what the
// backward needs besides the inputs.
template <class T>
struct GroupedSwigluForwardBuffers {
    T* rows = nullptr;     // rows x d_model: the gathered x, written
    T* pre = nullptr;      // rows x 2 d_ff: [gate | up], written
    T* act = nullptr;      // rows x d_ff: weight * SiLU(gate) * up, written
    T* scratch = nullptr;  // rows x d_model
    T* out = nullptr;      // tokens x d_model, written (every element)
};

template <class T>
void grouped_swiglu_forward(const CpuExecutor& exec, const GroupedSwigluProblem<T>& problem,
                            const T* x, const GroupedSwigluForwardBuffers<T>& buffers);

template <class T>
struct GroupedSwigluBackwardBuffers {
    T* grad_x = nullptr;       // tokens x d_model, written (every element)
    T* grad_weight = nullptr;  // rows, written
    T* grad_w_in = nullptr;    // experts x d_model x 2 d_ff, written (zero for an empty expert)
    T* grad_w_out = nullptr;   // experts x d_ff x d_model, written
    T* scratch_d = nullptr;    // rows x d_model
    T* scratch_f = nullptr;    // rows x d_ff
    T* scratch_2f = nullptr;   // rows x 2 d_ff
};

// `forward` the buffers the forward wrote (rows, pre, act); `grad_out` (tokens x d_model) the
// gradient of the output.
template <class T>
void grouped_swiglu_backward(const CpuExecutor& exec, const GroupedSwigluProblem<T>& problem,
                             const GroupedSwigluForwardBuffers<const T>& forward, const T* grad_out,
                             const GroupedSwigluBackwardBuffers<T>& buffers);

}  // namespace moelab::kernels::cpu
