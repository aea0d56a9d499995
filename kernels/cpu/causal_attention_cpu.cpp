#include "kernels/cpu/causal_attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/vector_math.h"

// Note [Causal attention by tiles]
// Every block (one sequence and key/value head) is one task of the executor: its products run
// single-threaded on the task's thread, side by side with other blocks' (the products of one
// head are 64-256 wide, too small for the BLAS's own threads to pay: LibTorch's bmm of them
// reached a third of the GEMM peak). A block's key and value gradients are summed by its task
// alone, in a fixed order, so the results have the same bits however many threads run.
//
// Within a block the queries go by tiles of kTileRows rows, and a tile's rows attend to the keys
// up to its last row only: the products above the diagonal tiles are never computed (at 128
// queries 3/4 of the whole product is, at 256 5/8) and the mask inside the diagonal tile is part
// of the softmax pass. A tile's scores (kTileRows x keys) stay in the cache from their product
// through the softmax to the product with the values.
//
// The backward is FlashAttention's: dP = dO V^T, dS = P (dP - rowsum(dO O)), dQ = scale dS K,
// dK = scale dS^T Q, dV = P^T dO, tile by tile, with P kept by the forward (short sequences) or
// recomputed from the row's log-sum-exp (one more product per tile, memory linear in the
// sequence).

namespace moelab::kernels::cpu {

namespace {

constexpr std::int64_t kTileRows = 64;

// The softmax of `rows` rows of scores in place, row r being query first + r against keys
// [0, keys): entries past the query's own position become 0, the others
// exp(scale s - max) / sum; log_sum_exp[r] = max + log(sum) (of the scaled scores).
template <class T, class Exp>
[[gnu::always_inline]] inline void softmax_rows_body(T* __restrict scores, std::int64_t ld,
                                                     std::int64_t first, std::int64_t rows,
                                                     std::int64_t keys, T scale,
                                                     T* __restrict log_sum_exp, Exp exp) {
    for (std::int64_t r = 0; r < rows; ++r) {
        T* __restrict s = scores + r * ld;
        const std::int64_t seen = first + r + 1;  // keys 0..first + r
        T top = scale * s[0];
#pragma omp simd reduction(max : top)
        for (std::int64_t j = 1; j < seen; ++j) top = std::max(top, scale * s[j]);
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (std::int64_t j = 0; j < seen; ++j) {
            const T e = exp(scale * s[j] - top);
            s[j] = e;
            sum += e;
        }
        const T inverse = T(1) / sum;
#pragma omp simd
        for (std::int64_t j = 0; j < seen; ++j) s[j] *= inverse;
        std::fill(s + seen, s + keys, T(0));
        log_sum_exp[r] = top + std::log(sum);
    }
}

// The probabilities again from the scores (rows as above): exp(scale s - log_sum_exp) up to the
// query's position, 0 after it.
template <class T, class Exp>
[[gnu::always_inline]] inline void recompute_rows_body(T* __restrict scores, std::int64_t ld,
                                                       std::int64_t first, std::int64_t rows,
                                                       std::int64_t keys, T scale,
                                                       const T* __restrict log_sum_exp, Exp exp) {
    for (std::int64_t r = 0; r < rows; ++r) {
        T* __restrict s = scores + r * ld;
        const std::int64_t seen = first + r + 1;
        const T lse = log_sum_exp[r];
#pragma omp simd
        for (std::int64_t j = 0; j < seen; ++j) s[j] = exp(scale * s[j] - lse);
        std::fill(s + seen, s + keys, T(0));
    }
}

// The scores' gradient in place of the probabilities' (grad, rows as above):
// scale p (dp - <grad_out_r, out_r>) up to the query's position, 0 after it.
template <class T>
[[gnu::always_inline]] inline void score_gradient_rows_body(
    T* __restrict grad, std::int64_t ld, const T* __restrict probabilities, std::int64_t ld_p,
    std::int64_t first, std::int64_t rows, std::int64_t keys, T scale, const T* __restrict grad_out,
    const T* __restrict out, std::int64_t value_dim) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const T* __restrict go = grad_out + r * value_dim;
        const T* __restrict o = out + r * value_dim;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (std::int64_t c = 0; c < value_dim; ++c) dot += go[c] * o[c];
        T* __restrict g = grad + r * ld;
        const T* __restrict p = probabilities + r * ld_p;
        const std::int64_t seen = first + r + 1;
#pragma omp simd
        for (std::int64_t j = 0; j < seen; ++j) g[j] = scale * p[j] * (g[j] - dot);
        std::fill(g + seen, g + keys, T(0));
    }
}

struct ExpFloat {
    [[gnu::always_inline]] float operator()(float x) const { return exp_approx(x); }
};
struct ExpDouble {
    double operator()(double x) const { return std::exp(x); }
};

MOELAB_CLONES void softmax_rows(float* scores, std::int64_t ld, std::int64_t first,
                                std::int64_t rows, std::int64_t keys, float scale,
                                float* log_sum_exp) {
    softmax_rows_body(scores, ld, first, rows, keys, scale, log_sum_exp, ExpFloat{});
}
void softmax_rows(double* scores, std::int64_t ld, std::int64_t first, std::int64_t rows,
                  std::int64_t keys, double scale, double* log_sum_exp) {
    softmax_rows_body(scores, ld, first, rows, keys, scale, log_sum_exp, ExpDouble{});
}

MOELAB_CLONES void recompute_rows(float* scores, std::int64_t ld, std::int64_t first,
                                  std::int64_t rows, std::int64_t keys, float scale,
                                  const float* log_sum_exp) {
    recompute_rows_body(scores, ld, first, rows, keys, scale, log_sum_exp, ExpFloat{});
}
void recompute_rows(double* scores, std::int64_t ld, std::int64_t first, std::int64_t rows,
                    std::int64_t keys, double scale, const double* log_sum_exp) {
    recompute_rows_body(scores, ld, first, rows, keys, scale, log_sum_exp, ExpDouble{});
}

MOELAB_CLONES void score_gradient_rows(float* grad, std::int64_t ld, const float* probabilities,
                                       std::int64_t ld_p, std::int64_t first, std::int64_t rows,
                                       std::int64_t keys, float scale, const float* grad_out,
                                       const float* out, std::int64_t value_dim) {
    score_gradient_rows_body(grad, ld, probabilities, ld_p, first, rows, keys, scale, grad_out, out,
                             value_dim);
}
void score_gradient_rows(double* grad, std::int64_t ld, const double* probabilities,
                         std::int64_t ld_p, std::int64_t first, std::int64_t rows,
                         std::int64_t keys, double scale, const double* grad_out, const double* out,
                         std::int64_t value_dim) {
    score_gradient_rows_body(grad, ld, probabilities, ld_p, first, rows, keys, scale, grad_out, out,
                             value_dim);
}

// Where one tile of one query head of one block lives in the buffers.
struct Tile {
    std::int64_t head_row;  // (block * group + g) * seq: the query head's first row
    std::int64_t first;     // the tile's first query
    std::int64_t rows;
    std::int64_t keys() const { return first + rows; }  // the keys its queries see
};

// Calls visit(tile) for every query head of block `b` and every tile of its rows, in order.
template <class T, class Visit>
void for_each_tile(const CausalAttentionProblem<T>& p, std::int64_t b, Visit&& visit) {
    for (std::int64_t g = 0; g < p.group; ++g) {
        for (std::int64_t first = 0; first < p.seq; first += kTileRows) {
            visit(Tile{(b * p.group + g) * p.seq, first, std::min(kTileRows, p.seq - first)});
        }
    }
}

// c (m x n, row stride ldc) = a b^T for row-major a (m x k) and b (n x k), both with rows of k:
// the scores Q K^T and dP = dO V^T.
template <class T>
void times_transposed(const CpuExecutor& executor, const T* a, const T* b, std::int64_t m,
                      std::int64_t n, std::int64_t k, T* c, std::int64_t ldc) {
    executor.gemm(GemmArgs<T>{.transpose_b = true,
                              .m = m,
                              .n = n,
                              .k = k,
                              .a = a,
                              .lda = k,
                              .b = b,
                              .ldb = k,
                              .c = c,
                              .ldc = ldc});
}

// c (m x n, rows of n) += a^T b for row-major a (k x m, row stride lda) and b (k x n): the key and
// value gradients, summed over a tile's queries.
template <class T>
void add_transposed_times(const CpuExecutor& executor, const T* a, std::int64_t lda, const T* b,
                          std::int64_t m, std::int64_t n, std::int64_t k, T* c) {
    executor.gemm(GemmArgs<T>{.transpose_a = true,
                              .m = m,
                              .n = n,
                              .k = k,
                              .a = a,
                              .lda = lda,
                              .b = b,
                              .ldb = n,
                              .c = c,
                              .ldc = n,
                              .accumulate = true});
}

}  // namespace

template <class T>
void causal_attention_forward(const CpuExecutor& executor, const CausalAttentionProblem<T>& p,
                              T* out, T* log_sum_exp, T* probabilities) {
    const std::int64_t hd = p.head_dim, dv = p.value_dim;
    executor.for_each_task(p.blocks, executor.task_threads(), [&](std::int64_t b) {
        const T* key = p.key + b * p.seq * hd;
        const T* value = p.value + b * p.seq * dv;
        std::vector<T> scratch(probabilities == nullptr ? kTileRows * p.seq : 0);
        for_each_tile(p, b, [&](const Tile& tile) {
            const std::int64_t row = tile.head_row + tile.first;
            const std::int64_t keys = tile.keys();
            T* scores = probabilities != nullptr ? probabilities + row * p.seq : scratch.data();
            const std::int64_t ld = probabilities != nullptr ? p.seq : keys;
            times_transposed(executor, p.query + row * hd, key, tile.rows, keys, hd, scores, ld);
            softmax_rows(scores, ld, tile.first, tile.rows, keys, p.scale, log_sum_exp + row);
            executor.gemm(GemmArgs<T>{.m = tile.rows,
                                      .n = dv,
                                      .k = keys,
                                      .a = scores,
                                      .lda = ld,
                                      .b = value,
                                      .ldb = dv,
                                      .c = out + row * dv,
                                      .ldc = dv});
        });
    });
}

template <class T>
void causal_attention_backward(const CpuExecutor& executor, const CausalAttentionProblem<T>& p,
                               const T* out, const T* log_sum_exp, const T* probabilities,
                               const T* grad_out, T* grad_query, T* grad_key, T* grad_value) {
    const std::int64_t hd = p.head_dim, dv = p.value_dim;
    executor.for_each_task(p.blocks, executor.task_threads(), [&](std::int64_t b) {
        const T* key = p.key + b * p.seq * hd;
        const T* value = p.value + b * p.seq * dv;
        T* d_key = grad_key + b * p.seq * hd;
        T* d_value = grad_value + b * p.seq * dv;
        std::fill(d_key, d_key + p.seq * hd, T(0));
        std::fill(d_value, d_value + p.seq * dv, T(0));
        std::vector<T> recomputed(probabilities == nullptr ? kTileRows * p.seq : 0);
        std::vector<T> grad_scores(kTileRows * p.seq);
        for_each_tile(p, b, [&](const Tile& tile) {
            const std::int64_t row = tile.head_row + tile.first;
            const std::int64_t keys = tile.keys();
            const T* query = p.query + row * hd;
            const T* d_out = grad_out + row * dv;
            const T* probs = probabilities;
            std::int64_t ld_p = p.seq;
            if (probabilities != nullptr) {
                probs += row * p.seq;
            } else {
                ld_p = keys;
                times_transposed(executor, query, key, tile.rows, keys, hd, recomputed.data(),
                                 ld_p);
                recompute_rows(recomputed.data(), ld_p, tile.first, tile.rows, keys, p.scale,
                               log_sum_exp + row);
                probs = recomputed.data();
            }
            // dP = dO V^T, then dV += P^T dO.
            times_transposed(executor, d_out, value, tile.rows, keys, dv, grad_scores.data(), keys);
            add_transposed_times(executor, probs, ld_p, d_out, keys, dv, tile.rows, d_value);
            // dS (scaled) in place of dP, then dQ = dS K and dK += dS^T Q.
            score_gradient_rows(grad_scores.data(), keys, probs, ld_p, tile.first, tile.rows, keys,
                                p.scale, d_out, out + row * dv, dv);
            executor.gemm(GemmArgs<T>{.m = tile.rows,
                                      .n = hd,
                                      .k = keys,
                                      .a = grad_scores.data(),
                                      .lda = keys,
                                      .b = key,
                                      .ldb = hd,
                                      .c = grad_query + row * hd,
                                      .ldc = hd});
            add_transposed_times(executor, grad_scores.data(), keys, query, keys, hd, tile.rows,
                                 d_key);
        });
    });
}

template void causal_attention_forward(const CpuExecutor&, const CausalAttentionProblem<float>&,
                                       float*, float*, float*);
template void causal_attention_forward(const CpuExecutor&, const CausalAttentionProblem<double>&,
                                       double*, double*, double*);
template void causal_attention_backward(const CpuExecutor&, const CausalAttentionProblem<float>&,
                                        const float*, const float*, const float*, const float*,
                                        float*, float*, float*);
template void causal_attention_backward(const CpuExecutor&, const CausalAttentionProblem<double>&,
                                        const double*, const double*, const double*, const double*,
                                        double*, double*, double*);

}  // namespace moelab::kernels::cpu
