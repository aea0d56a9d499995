#include "core/moe/sharded_expert_bank.h"

#include <stdexcept>

#include <fmt/format.h>

#include "core/dist/differentiable_all_to_all.h"
#include "core/moe/expert_weights.h"
#include "core/moe/routing_plan.h"
#include "core/system/profile_scope.h"
#include "kernels/binding/grouped_swiglu.h"
#include "moelab/sdk/error.h"

namespace moelab::core {

ShardedExpertBank::ShardedExpertBank(sdk::ExpertBankSpec spec, DispatchPolicy policy,
                                     double init_std, double output_init_std, std::uint64_t seed,
                                     std::shared_ptr<ProcessGroup> group)
    : spec_(std::move(spec)), policy_(std::move(policy)), group_(std::move(group)) {
    check_bank_spec(spec_);
    if (spec_.capacity_factor >= 0) policy_.capacity_factor = spec_.capacity_factor;
    const int processes = group_->size();
    if (spec_.experts % processes != 0) {
        throw sdk::Error(fmt::format(
            "expert bank '{}': {} experts cannot be split evenly over {} processes ([parallel] "
            "expert must divide the experts of every routed bank)",
            spec_.name, spec_.experts, processes));
    }
    count_ = spec_.experts / processes;
    first_ = group_->rank() * count_;
    ExpertWeights weights =
        init_expert_weights(spec_, first_, count_, init_std, output_init_std, seed);
    w_in = register_parameter("w_in", weights.w_in);
    w_out = register_parameter("w_out", weights.w_out);
}

at::Tensor ShardedExpertBank::mix(const at::Tensor& x, const at::Tensor& indices,
                                  const at::Tensor& weights) {
    const at::Tensor checked = check_mix_arguments(spec_, x, indices, weights);
    // Every process must take part in the exchange, so a switched-off bank still sends nothing
    // and serves the others; robustness studies switch off shared banks only, which are whole.
    const std::int64_t tokens = x.size(0);
    const std::int64_t slots = indices.size(1);
    const std::int64_t experts = spec_.experts;
    const int processes = group_->size();
    const int me = group_->rank();

    // Planning and counting are the routing plan's; the exchanges and the kernel take theirs.
    ProfileScope plan_scope(OpFamily::kRoutingPlan);
    // This process's assignments grouped by expert, hence by the process holding the expert.
    const RoutingPlan mine = plan_routing(checked, weights, experts, 0.0, false);
    at::Tensor local_counts = mine.processed;
    if (switched_off_) local_counts = at::zeros_like(local_counts);
    const at::Tensor counts =
        group_->all_gather(local_counts).to(at::kCPU);  // (processes, experts)
    const auto count = counts.accessor<std::int64_t, 2>();
    std::vector<std::int64_t> send(processes, 0), receive(processes, 0);
    for (int p = 0; p < processes; ++p) {
        for (std::int64_t e = p * count_; e < (p + 1) * count_; ++e) send[p] += count[me][e];
        for (std::int64_t e = first_; e < first_ + count_; ++e) receive[p] += count[p][e];
    }
    std::int64_t sent = 0, received_rows = 0;
    for (int p = 0; p < processes; ++p) {
        sent += send[p];
        received_rows += receive[p];
    }
    const at::Tensor rows = mine.order.narrow(0, 0, sent);  // assignment ids, by expert
    const at::Tensor row_token = at::div(rows, slots, "floor");
    const at::Tensor received = [&] {
        ProfileScope scope(OpFamily::kExpertExchange);
        return differentiable_all_to_all(*group_, x.index_select(0, row_token), send, receive);
    }();

    // The local expert of each received row: sources in rank order, each grouped by expert.
    const at::Tensor local_expert_ids = at::arange(count_, at::TensorOptions().dtype(at::kLong));
    const at::Tensor received_expert =
        local_expert_ids.repeat({processes})
            .repeat_interleave(counts.narrow(1, first_, count_).reshape({-1}))
            .to(x.device());
    const bool capped = policy_.capacity_factor > 0;
    at::Tensor received_weight = at::zeros({received_rows}, x.options().dtype(at::kFloat));
    at::Tensor capacity;
    if (capped) {
        if (policy_.keep_highest_weight) {
            const at::Tensor sent_weight =
                weights.detach().reshape({-1}).index_select(0, rows).to(at::kFloat);
            received_weight = group_->all_to_all(sent_weight, send, receive);
        }
        capacity = at::ceil(counts.sum().to(at::kDouble) * policy_.capacity_factor /
                            static_cast<double>(experts))
                       .to(at::kLong)
                       .to(x.device());
    }
    const RoutingPlan theirs =
        plan_routing(received_expert.unsqueeze(1), received_weight.unsqueeze(1), count_,
                     policy_.capacity_factor, policy_.keep_highest_weight, capacity);
    at::Tensor per_expert = at::zeros({experts}, theirs.processed.options());
    per_expert.narrow(0, first_, count_).copy_(theirs.processed);
    dispatches_.push_back(
        DispatchRecord{per_expert, switched_off_ ? at::zeros_like(mine.requested) : mine.requested,
                       theirs.dropped, switched_off_ ? 0 : tokens});

    // Each received row is its own token with weight 1: the kernel returns every row's expert
    // output (zero for rows dropped for capacity), and the sender applies the routing weights.
    const kernels::RoutedRows routed{
        theirs.order, at::ones({received_rows}, x.options().dtype(at::kFloat)), theirs.group_ends};
    at::Tensor outputs;
    try {
        ProfileScope scope(OpFamily::kExperts);
        outputs = kernels::run_grouped_swiglu(
            policy_.kernel, received, routed, weight_casts_.as(w_in, x.scalar_type()),
            weight_casts_.as(w_out, x.scalar_type()), &weight_casts_);
    } catch (const std::invalid_argument& refused) {
        throw sdk::Error(fmt::format("expert bank '{}': {}", spec_.name, refused.what()));
    }
    // The reverse exchange must be in the autograd graph on every process, or the backward
    // exchanges run on some processes only and wait forever: a kernel that received no rows may
    // return a fresh zero tensor, which is tied back to the received rows here, and to the expert
    // weights, whose gradient is then zero as in one process holding the whole bank (AdamW
    // skips a parameter without a gradient, but applies weight decay to one with a zero one).
    // Frozen layers below (a stage training only the experts) leave `received` without a
    // gradient while the weights need one: that case needs the tie as well.
    if (!outputs.requires_grad() &&
        (received.requires_grad() || w_in.requires_grad() || w_out.requires_grad())) {
        outputs = outputs + (received.sum() + w_in.sum() + w_out.sum()) * 0;
    }
    const at::Tensor returned = [&] {
        ProfileScope scope(OpFamily::kExpertExchange);
        return differentiable_all_to_all(*group_, outputs, receive, send);
    }();
    const at::Tensor row_weight =
        weights.reshape({-1}).index_select(0, rows).to(returned.scalar_type()).unsqueeze(1);
    at::Tensor out = at::zeros_like(x).index_add(0, row_token, returned * row_weight);
    return switched_off_ ? at::zeros_like(x) : out;
}

at::Tensor ShardedExpertBank::run_all(const at::Tensor&) {
    throw sdk::Error(fmt::format(
        "expert bank '{}' holds experts {}..{} of {} in this process ([parallel] expert = {}): "
        "run_all needs every expert in every process; a block that calls it must not list the "
        "feature parallel.sharded_experts",
        spec_.name, first_, first_ + count_ - 1, spec_.experts, group_->size()));
}

std::vector<DispatchRecord> ShardedExpertBank::take_dispatches() {
    std::vector<DispatchRecord> taken;
    taken.swap(dispatches_);
    return taken;
}

ExpertBankFactory sharded_expert_banks(DispatchPolicy policy, double init_std,
                                       double output_init_std,
                                       std::shared_ptr<ProcessGroup> group) {
    const ExpertBankFactory whole = local_expert_banks(policy, init_std, output_init_std);
    return [=](const sdk::ExpertBankSpec& spec,
               std::uint64_t seed) -> std::shared_ptr<ManagedExpertBank> {
        if (spec.shared || group->size() == 1) return whole(spec, seed);
        return std::make_shared<ShardedExpertBank>(spec, policy, init_std, output_init_std, seed,
                                                   group);
    };
}

}  // namespace moelab::core
