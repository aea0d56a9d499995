#include "core/moe/expert_weights.h"

#include <vector>

#include <fmt/format.h>

#include "core/moe/extension_check.h"
#include "core/plugin/deferred_checks.h"
#include "core/system/hash.h"
#include "core/system/tensor_text.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

std::optional<double> check_bank_spec(const sdk::ExpertBankSpec& spec) {
    if (spec.experts <= 0 || spec.d_model <= 0 || spec.d_ff_expert <= 0) {
        throw sdk::Error(
            fmt::format("expert bank '{}': experts, d_model and d_ff_expert must be "
                        "positive, got {}, {}, {}",
                        spec.name, spec.experts, spec.d_model, spec.d_ff_expert));
    }
    check_extensions(spec.extensions, fmt::format("expert bank '{}': ExpertBankSpec", spec.name),
                     {known(sdk::bank_extension::kActivationThreshold)});
    const double* threshold = spec.extensions.find(sdk::bank_extension::kActivationThreshold);
    if (threshold == nullptr) return std::nullopt;
    if (!(*threshold >= 0)) {
        throw sdk::Error(
            fmt::format("expert bank '{}': extension activation_threshold must be >= 0, got {}",
                        spec.name, *threshold));
    }
    return *threshold;
}

at::Tensor check_mix_arguments(const sdk::ExpertBankSpec& spec, const at::Tensor& x,
                               const at::Tensor& indices, const at::Tensor& weights) {
    const std::int64_t tokens = x.size(0);
    if (indices.dim() != 2 || indices.size(0) != tokens || indices.scalar_type() != at::kLong ||
        weights.sizes() != indices.sizes()) {
        throw sdk::Error(fmt::format(
            "expert bank '{}': expected indices (tokens={}, slots) int64 and weights of the same "
            "shape, got indices {} and weights {}",
            spec.name, tokens, tensor_text(indices), tensor_text(weights)));
    }
    if (indices.numel() == 0) return indices;
    const at::Tensor outside = (indices < -1).logical_or(indices >= spec.experts);
    expect_no_violations(
        outside.sum(), [name = spec.name, experts = spec.experts, indices](std::int64_t) {
            const auto [low, high] = at::aminmax(indices);
            throw sdk::Error(fmt::format(
                "expert bank '{}': expert indices must be in [-1, {}) (-1: empty slot), "
                "got values from {} to {}",
                name, experts, low.item<std::int64_t>(), high.item<std::int64_t>()));
        });
    // The plan indexes with them before a deferred check is read (Note [Deferred checks]).
    return checks_deferred_for(indices)
               ? at::where(outside, at::full({}, -1, indices.options()), indices)
               : indices;
}

ExpertWeights init_expert_weights(const sdk::ExpertBankSpec& spec, std::int64_t first,
                                  std::int64_t count, double init_std, double output_init_std,
                                  std::uint64_t seed) {
    std::vector<at::Tensor> w_in, w_out;
    for (std::int64_t e = first; e < first + count; ++e) {
        at::Generator generator =
            sdk::make_generator(mix_seed(seed, static_cast<std::uint64_t>(e)));
        w_in.push_back(
            sdk::normal_weight({spec.d_model, 2 * spec.d_ff_expert}, init_std, generator));
        w_out.push_back(
            sdk::normal_weight({spec.d_ff_expert, spec.d_model}, output_init_std, generator));
    }
    return {at::stack(w_in), at::stack(w_out)};
}

}  // namespace moelab::core
