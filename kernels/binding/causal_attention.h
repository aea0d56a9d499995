#pragma once

// The host's fused causal attention on the CPU (what the host's sdk::AttentionKernels offers
// attention plugins): autograd around the torch-free launchers of
// kernels/cpu/causal_attention_cpu.h.

#include <optional>
#include <string>

#include <ATen/ATen.h>

namespace moelab::kernels::binding {

// Why causal_attention cannot run these tensors (the device, the dtype, the shapes), or nothing
// when it can.
std::optional<std::string> causal_attention_refusal(const at::Tensor& query, const at::Tensor& key,
                                                    const at::Tensor& value);

// softmax_{j <= i}(scale q_i . k_j) v_j for whole sequences: query (n, group, seq, head_dim), key
// (n, seq, head_dim), value (n, seq, value_dim), float32 or float64 CPU tensors; returns (n,
// group, seq, value_dim), differentiable in all three. The contract of
// sdk::blocked_causal_attention, without its mask tensors and with the work spread over the cores.
// Throws std::invalid_argument with causal_attention_refusal's reason on tensors it cannot run.
// Its backward is not itself differentiable (no second derivatives).
at::Tensor causal_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                            double scale);

}  // namespace moelab::kernels::binding
