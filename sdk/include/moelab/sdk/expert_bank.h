#pragma once

// Expert banks: the host object that owns a layer's experts and runs "these tokens through these
// experts with these weights" on the best kernel the host has (grouped GEMM on CPU or CUDA, and,
// later, all-to-all expert parallelism). Router and block plugins compose banks instead of owning
// expert weights, so kernels and parallelism stay in the host.

#include <cstdint>
#include <string>

#include <torch/nn/module.h>

#include "moelab/sdk/extensions.h"

namespace moelab::sdk {

// A bank of SwiGLU experts: expert_e(x) = W_down_e (SiLU(W_gate_e x) * W_up_e x).
struct ExpertBankSpec {
    std::string name = "experts";  // submodule name the block registers it under; used in metrics
    std::int64_t experts = 0;
    std::int64_t d_model = 0;
    std::int64_t d_ff_expert = 0;  // intermediate size of one expert
    // Token dropping: < 0 follows the recipe's [moe] capacity_factor; 0 is dropless; c > 0 keeps at
    // most ceil(c * assignments / experts) assignments per expert.
    double capacity_factor = -1.0;
    // Always-active experts added to every token (a shared expert), as opposed to routed ones.
    // Robustness studies may switch shared banks off; the host does that for every bank marked so.
    bool shared = false;
    // Method-specific settings (Note [Extensions]): the keys of bank_extension below.
    Extensions extensions;
};

// Keys of ExpertBankSpec::extensions (sdk/README.md "Extensions" lists each with its version).
namespace bank_extension {
// double >= 0, since 4.0: an activation probe. run_all() counts the intermediate activations
// a = SiLU(W_gate x) * (W_up x) with |a| > threshold, and the host reports their fraction (the
// non-sparse activation rate, "nsar") with the bank's statistics (Finedeep's NSAR).
inline constexpr ExtensionKey<double> kActivationThreshold{"activation_threshold"};
}  // namespace bank_extension

// Thread-safety: like any torch::nn::Module, one forward at a time per bank.
class ExpertBank : public torch::nn::Module {
  public:
    virtual const ExpertBankSpec& spec() const = 0;

    // out[t] = sum over slots s with indices[t, s] >= 0 of weights[t, s] * expert_{indices[t,
    // s]}(x[t]) x:       (tokens, d_model), the model's compute dtype indices: (tokens, slots)
    // int64 in [-1, experts) weights: (tokens, slots) float Returns (tokens, d_model). Assignments
    // beyond an expert's capacity contribute zero. Differentiable in x, weights and the expert
    // parameters. Only the selected (token, expert) pairs are computed.
    virtual at::Tensor mix(const at::Tensor& x, const at::Tensor& indices,
                           const at::Tensor& weights) = 0;

    // Every expert on every token: (experts, tokens, d_model). For blocks that need all expert
    // outputs: dense compute with a straight-through estimator in training (DSMoE) or gates
    // computed from expert outputs (Finedeep). Differentiable in x and the expert parameters.
    virtual at::Tensor run_all(const at::Tensor& x) = 0;
};

}  // namespace moelab::sdk
