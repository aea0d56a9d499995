#include "core/moe/host_expert_bank.h"

#include <stdexcept>

#include <fmt/format.h>

#include "core/moe/expert_weights.h"
#include "core/moe/routing_plan.h"
#include "core/system/profile_scope.h"
#include "kernels/binding/grouped_swiglu.h"
#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/sdk/error.h"

namespace moelab::core {

HostExpertBank::HostExpertBank(sdk::ExpertBankSpec spec, DispatchPolicy policy, double init_std,
                               double output_init_std, std::uint64_t seed)
    : spec_(std::move(spec)), policy_(policy), activation_threshold_(check_bank_spec(spec_)) {
    if (spec_.capacity_factor >= 0) policy_.capacity_factor = spec_.capacity_factor;
    ExpertWeights weights =
        init_expert_weights(spec_, 0, spec_.experts, init_std, output_init_std, seed);
    w_in = register_parameter("w_in", weights.w_in);
    w_out = register_parameter("w_out", weights.w_out);
}

at::Tensor HostExpertBank::mix(const at::Tensor& x, const at::Tensor& indices,
                               const at::Tensor& weights) {
    const std::int64_t tokens = x.size(0);
    const std::int64_t experts = spec_.experts;
    const at::Tensor checked = check_mix_arguments(spec_, x, indices, weights);
    if (switched_off_) return at::zeros_like(x);
    const std::int64_t slots = indices.size(1);

    ProfileScope plan_scope(OpFamily::kRoutingPlan);
    const RoutingPlan plan = plan_routing(checked, weights, experts, policy_.capacity_factor,
                                          policy_.keep_highest_weight);
    dispatches_.push_back(
        DispatchRecord{plan.processed.detach(), plan.requested, plan.dropped, tokens});
    // Each row's token and routing weight; the weights carry the router's gradient.
    const kernels::RoutedRows routed{at::div(plan.order, slots, "floor"),
                                     weights.reshape({-1}).index_select(0, plan.order),
                                     plan.group_ends};
    // Float32 master weights and float32 x: .to() is the identity. A kernel that multiplies in
    // bfloat16 keeps its copies of the weights in weight_casts_, made again only when they change
    // (grouped_mm; grouped_cuda reads the float32 weights as they are; under autocast the
    // reference kernel's products cast per call, as LibTorch's operators do).
    const at::Tensor w_in_x = weight_casts_.as(w_in, x.scalar_type());
    const at::Tensor w_out_x = weight_casts_.as(w_out, x.scalar_type());
    try {
        ProfileScope scope(OpFamily::kExperts);
        return kernels::run_grouped_swiglu(policy_.kernel, x, routed, w_in_x, w_out_x,
                                           &weight_casts_);
    } catch (const std::invalid_argument& refused) {  // no kernel for this case, or a bad plan
        throw sdk::Error(fmt::format("expert bank '{}': {}", spec_.name, refused.what()));
    }
}

at::Tensor HostExpertBank::run_all(const at::Tensor& x) {
    const std::int64_t tokens = x.size(0);
    if (switched_off_) return at::zeros({spec_.experts, tokens, x.size(1)}, x.options());
    ProfileScope scope(OpFamily::kExperts);
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
