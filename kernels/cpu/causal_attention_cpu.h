#pragma once

// Causal attention over whole sequences on the CPU, forward and backward, without LibTorch: the
// launcher behind the host's fused attention (binding/causal_attention.h). Note [Causal attention
// by tiles] in causal_attention_cpu.cpp says how the work is split.
//
// Every buffer is row-major and contiguous. A block is one (sequence, key/value head): `group`
// query heads attend to its keys and values, query i to keys 0..i.

#include <cstdint>

#include "kernels/cpu/cpu_executor.h"

namespace moelab::kernels::cpu {

template <class T>
struct CausalAttentionProblem {
    std::int64_t blocks = 0;     // sequences x key/value heads
    std::int64_t group = 0;      // query heads per key/value head
    std::int64_t seq = 0;        // queries and keys per block
    std::int64_t head_dim = 0;   // of queries and keys
    std::int64_t value_dim = 0;  // of values and outputs
    T scale = 1;                 // multiplies q.k
    const T* query = nullptr;    // (blocks, group, seq, head_dim)
    const T* key = nullptr;      // (blocks, seq, head_dim)
    const T* value = nullptr;    // (blocks, seq, value_dim)
};

// out (blocks, group, seq, value_dim) = softmax_j<=i(scale q_i.k_j) v; log_sum_exp (blocks,
// group, seq): each row's log sum_j<=i exp(scale q_i.k_j), what the backward needs to recompute
// the probabilities. probabilities: null, or (blocks, group, seq, seq) to keep them instead (0
// above the diagonal inside each tile's keys; the columns past a tile's last key left unset, and
// never read), which saves the backward a product per tile.
template <class T>
void causal_attention_forward(const CpuExecutor& executor, const CausalAttentionProblem<T>& problem,
                              T* out, T* log_sum_exp, T* probabilities);

// The gradients of the inputs from grad_out (blocks, group, seq, value_dim), given the forward's
// out and log_sum_exp, and its probabilities or null. grad_query has the query's shape, grad_key
// the key's and grad_value the value's; each is overwritten.
template <class T>
void causal_attention_backward(const CpuExecutor& executor,
                               const CausalAttentionProblem<T>& problem, const T* out,
                               const T* log_sum_exp, const T* probabilities, const T* grad_out,
                               T* grad_query, T* grad_key, T* grad_value);

}  // namespace moelab::kernels::cpu
