#include "core/moe/host_expert_bank.h"

#include <stdexcept>

#include <fmt/format.h>

#include "core/moe/extension_check.h"
#include "core/moe/routing_plan.h"
#include "core/system/hash.h"
#include "core/system/tensor_text.h"
#include "kernels/binding/grouped_swiglu.h"
#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

HostExpertBank::HostExpertBank(sdk::ExpertBankSpec spec, DispatchPolicy policy, double init_std,
                               double output_init_std, std::uint64_t seed)
    : spec_(std::move(spec)), policy_(policy) {
    if (spec_.experts <= 0 || spec_.d_model <= 0 || spec_.d_ff_expert <= 0) {
        throw sdk::Error(
            fmt::format("expert bank '{}': experts, d_model and d_ff_expert must be "
                        "positive, got {}, {}, {}",
                        spec_.name, spec_.experts, spec_.d_model, spec_.d_ff_expert));
    }
    check_extensions(spec_.extensions, fmt::format("expert bank '{}': ExpertBankSpec", spec_.name),
                     {known(sdk::bank_extension::kActivationThreshold)});
    if (const double* threshold =
            spec_.extensions.find(sdk::bank_extension::kActivationThreshold)) {
        if (!(*threshold >= 0)) {
            throw sdk::Error(
                fmt::format("expert bank '{}': extension activation_threshold must be "
                            ">= 0, got {}",
                            spec_.name, *threshold));
        }
        activation_threshold_ = *threshold;
    }
    if (spec_.capacity_factor >= 0) policy_.capacity_factor = spec_.capacity_factor;
    std::vector<at::Tensor> w_in_rows, w_out_rows;
    for (std::int64_t e = 0; e < spec_.experts; ++e) {
        at::Generator generator =
            sdk::make_generator(mix_seed(seed, static_cast<std::uint64_t>(e)));
        w_in_rows.push_back(
            sdk::normal_weight({spec_.d_model, 2 * spec_.d_ff_expert}, init_std, generator));
        w_out_rows.push_back(
            sdk::normal_weight({spec_.d_ff_expert, spec_.d_model}, output_init_std, generator));
    }
    w_in = register_parameter("w_in", at::stack(w_in_rows));
    w_out = register_parameter("w_out", at::stack(w_out_rows));
}

at::Tensor HostExpertBank::mix(const at::Tensor& x, const at::Tensor& indices,
                               const at::Tensor& weights) {
    const std::int64_t tokens = x.size(0);
    const std::int64_t experts = spec_.experts;
    if (indices.dim() != 2 || indices.size(0) != tokens || indices.scalar_type() != at::kLong ||
        weights.sizes() != indices.sizes()) {
        throw sdk::Error(fmt::format(
            "expert bank '{}': expected indices (tokens={}, slots) int64 and weights of the same "
            "shape, got indices {} and weights {}",
            spec_.name, tokens, tensor_text(indices), tensor_text(weights)));
    }
    if (switched_off_) return at::zeros_like(x);
    const std::int64_t slots = indices.size(1);
    if (indices.numel() > 0) {
        // The one guard that keeps a bad index from reading outside the expert weights: one
        // reduction, and one synchronisation on CUDA.
        const auto [low, high] = at::aminmax(indices);
        const std::int64_t lowest = low.item<std::int64_t>();
        const std::int64_t highest = high.item<std::int64_t>();
        if (lowest < -1 || highest >= experts) {
            throw sdk::Error(fmt::format(
                "expert bank '{}': expert indices must be in [-1, {}) (-1: empty slot), got "
                "values from {} to {}",
                spec_.name, experts, lowest, highest));
        }
    }

    const RoutingPlan plan = plan_routing(indices, weights, experts, policy_.capacity_factor,
                                          policy_.keep_highest_weight);
    dispatches_.push_back(
        DispatchRecord{plan.processed.detach(), plan.requested, plan.dropped, tokens});
    // Each row's token and routing weight; the weights carry the router's gradient.
    const kernels::RoutedRows routed{at::div(plan.order, slots, "floor"),
                                     weights.reshape({-1}).index_select(0, plan.order),
                                     plan.group_ends};
    // Float32 master weights and float32 x: .to() is the identity. Under CUDA bfloat16 autocast
    // the reference kernel's matrix products cast each expert's slice per call; a bfloat16 copy
    // kept across calls belongs with the CUDA grouped kernels.
    const at::Tensor w_in_x = w_in.to(x.scalar_type());
    const at::Tensor w_out_x = w_out.to(x.scalar_type());
    try {
        return kernels::run_grouped_swiglu(policy_.kernel, x, routed, w_in_x, w_out_x);
    } catch (const std::invalid_argument& refused) {  // no kernel for this case, or a bad plan
        throw sdk::Error(fmt::format("expert bank '{}': {}", spec_.name, refused.what()));
    }
}

at::Tensor HostExpertBank::run_all(const at::Tensor& x) {
    const std::int64_t tokens = x.size(0);
    if (switched_off_) return at::zeros({spec_.experts, tokens, x.size(1)}, x.options());
    const at::TensorOptions counts = at::TensorOptions().dtype(at::kLong).device(x.device());
    DispatchRecord record{at::full({spec_.experts}, tokens, counts),
                          at::full({}, tokens * spec_.experts, counts), at::zeros({}, counts),
                          tokens};
    const at::Tensor activation =
        kernels::reference::swiglu_activation(x.unsqueeze(0), w_in.to(x.scalar_type()));
    if (activation_threshold_) {
        record.probed_active = (activation.detach().abs() > *activation_threshold_).sum();
        record.probed = activation.numel();
    }
    dispatches_.push_back(std::move(record));
    return at::matmul(activation, w_out.to(x.scalar_type()));
}

std::vector<DispatchRecord> HostExpertBank::take_dispatches() {
    std::vector<DispatchRecord> taken;
    taken.swap(dispatches_);
    return taken;
}

ExpertBankFactory local_expert_banks(DispatchPolicy policy, double init_std,
                                     double output_init_std) {
    return
        [policy, init_std, output_init_std](const sdk::ExpertBankSpec& spec, std::uint64_t seed) {
            return std::make_shared<HostExpertBank>(spec, policy, init_std, output_init_std, seed);
        };
}

}  // namespace moelab::core
