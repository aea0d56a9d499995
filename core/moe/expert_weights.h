#pragma once

// What every expert bank of the host shares, whether it holds all of a bank's experts or a shard
// of them: the checks of its spec and of mix() arguments, and the initial expert weights.

#include <cstdint>
#include <optional>

#include "moelab/sdk/expert_bank.h"

namespace moelab::core {

// Throws sdk::Error naming the bank unless its sizes are positive and its extensions are known
// ones; returns the activation probe's threshold (bank_extension::kActivationThreshold) if set.
std::optional<double> check_bank_spec(const sdk::ExpertBankSpec& spec);

// Throws sdk::Error naming the bank unless `indices` is (tokens, slots) int64 with values in
// [-1, spec.experts) and `weights` has its shape; returns the indices to plan with. The range
// check keeps a bad index from reading outside the weights. Inside a forward pass on CUDA it is
// read at the pass's end (Note [Deferred checks]), and until then out-of-range indices are
// planned as empty slots: the returned indices have -1 in their place.
at::Tensor check_mix_arguments(const sdk::ExpertBankSpec& spec, const at::Tensor& x,
                               const at::Tensor& indices, const at::Tensor& weights);

struct ExpertWeights {
    at::Tensor w_in;   // (count, d_model, 2 * d_ff_expert): [gate | up]
    at::Tensor w_out;  // (count, d_ff_expert, d_model)
};

// Experts [first, first + count) of the bank. Expert e draws from its own generator, seeded with
// mix_seed(seed, e) for its global id e, so its initial weights do not depend on how the bank's
// experts are spread over processes. W_in ~ N(0, init_std^2), W_out ~ N(0, output_init_std^2).
ExpertWeights init_expert_weights(const sdk::ExpertBankSpec& spec, std::int64_t first,
                                  std::int64_t count, double init_std, double output_init_std,
                                  std::uint64_t seed);

}  // namespace moelab::core
