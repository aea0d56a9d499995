#include "finedeep_block.h"

#include <string>

#include "moelab/sdk/init.h"
#include "moelab/sdk/no_autocast.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::plugins::finedeep {

FinedeepOptions FinedeepOptions::from(const sdk::Params& params) {
    FinedeepOptions options;
    options.sublayers = params.get_int("sublayers");
    options.experts_per_sublayer = params.get_int("experts_per_sublayer");
    options.output_guided = params.get_string("gate_input") == "output";
    options.nsar_epsilon = params.get_float("nsar_epsilon");
    return options;
}

FinedeepBlock::FinedeepBlock(const sdk::MoeLayerContext& context, const FinedeepOptions& options)
    : options_(options) {
    const std::int64_t d_model = context.model.d_model;
    const std::int64_t k = options.experts_per_sublayer;
    const std::int64_t d_ff = context.model.d_ff / (options.sublayers * k);
    at::Generator generator = sdk::make_generator(context.seed);
    for (std::int64_t m = 0; m < options.sublayers; ++m) {
        const std::string index = std::to_string(m);
        norms_.push_back(register_module(
            "norm" + index, std::make_shared<sdk::RmsNorm>(d_model, context.model.norm_eps)));
        sdk::ExpertBankSpec spec{"sublayer" + index, k, d_model, d_ff, 0.0};
        spec.extensions.set(sdk::bank_extension::kActivationThreshold, options.nsar_epsilon);
        banks_.push_back(register_module("experts" + index, context.host->make_expert_bank(spec)));
        const std::vector<std::int64_t> shape = options.output_guided
                                                    ? std::vector<std::int64_t>{d_model}
                                                    : std::vector<std::int64_t>{k, d_model};
        gates_.push_back(register_parameter(
            "gate" + index, sdk::normal_weight(shape, context.init_std, generator)));
    }
}

sdk::BlockOutput FinedeepBlock::forward(const sdk::BlockInput& input) {
    sdk::BlockOutput output;
    at::Tensor z = input.hidden;
    const std::int64_t tokens = z.size(0);
    const std::int64_t k = options_.experts_per_sublayer;
    for (std::size_t m = 0; m < banks_.size(); ++m) {
        const at::Tensor x = norms_[m]->forward(z);
        const at::Tensor experts = banks_[m]->run_all(x);  // (K, tokens, d_model)
        at::Tensor gates;                                  // (tokens, K)
        {
            sdk::NoAutocast fp32_routing;
            const at::Tensor logits =
                options_.output_guided
                    ? at::einsum("ktd,d->tk", {experts.to(at::kFloat), gates_[m]})
                    : x.to(at::kFloat).matmul(gates_[m].t());
            // Dense gates: every expert is used with its gate; the selection control may zero
            // some (router m of the block is sub-layer m).
            gates = input.selection->selectable_scores(
                at::sigmoid(logits), sdk::ScoreKind::kSigmoid, static_cast<int>(m), {});
        }
        z = z + at::einsum("tk,ktd->td", {gates.to(experts.scalar_type()), experts})
                    .to(z.scalar_type());

        sdk::RoutingDecision decision;
        decision.expert_indices =
            at::arange(k, x.options().dtype(at::kLong)).expand({tokens, k}).contiguous();
        decision.combine_weights = gates.detach();
        decision.probs = gates.detach();
        output.stats.emplace_back("gate_mean_" + std::to_string(m), gates.mean().detach());
        output.routing.push_back(std::move(decision));
    }
    output.hidden = z;
    return output;
}

}  // namespace moelab::plugins::finedeep
