#pragma once

// CartesianMoE (methods.md §2.2, from the authors' model code): the MoE FFN becomes two routed
// sub-layers in sequence, each with its own fp32 softmax router, top-k with renormalisation, and
// optionally a shared sub-expert mixed by a per-token 2-way softmax:
//
//   u_A = c_A0 * sum_{i in topk} w_i A_i(x_A) + c_A1 * S_A(x_A),   x_A = RMSNorm_A(h)
//   h'  = h + u_A
//   u_B = (the same with router B, experts B_i, S_B)(x_B),          x_B = RMSNorm_B(h')
//   y   = h' + u_B
//
// Every token thus runs through one of experts x experts composite experts A_i o B_j. Sub-experts
// (and shared sub-experts) have d_ff_expert / grain_level. One Switch balance loss per router
// ([INTERPRETATION], methods.md §2.4: the training loss is not published).

#include <cstdint>
#include <memory>
#include <string>

#include "moelab/sdk/expert_bank.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/rms_norm.h"

namespace moelab::plugins::cartesian {

struct CartesianOptions {
    std::int64_t k = 2;
    std::int64_t grain_level = 2;
    bool shared = true;
    double balance_coef = 0.01;

    static CartesianOptions from(const sdk::Params& params);
};

// One routed sub-layer: norm, router, sub-experts, optional shared sub-expert. Returns the
// update to add to the residual stream and fills `decision` (balance loss included).
class RoutedSublayer : public torch::nn::Module {
  public:
    RoutedSublayer(const sdk::MoeLayerContext& context, const CartesianOptions& options,
                   const std::string& suffix, std::uint64_t seed);

    // `router` is this sub-layer's number for the selection control (0: first, 1: second).
    at::Tensor forward(const at::Tensor& hidden, sdk::SelectionControl& selection,
                       const sdk::BatchReduction* batch, int router,
                       sdk::RoutingDecision& decision);

  private:
    CartesianOptions options_;
    std::int64_t expert_count_;
    std::shared_ptr<sdk::RmsNorm> norm_;
    at::Tensor router_;  // (experts, d_model) float32
    std::shared_ptr<sdk::ExpertBank> experts_;
    std::shared_ptr<sdk::ExpertBank> shared_;  // null without a shared sub-expert
    at::Tensor mixing_weight_;                 // (2, d_model)
    at::Tensor mixing_bias_;                   // (2,)
};

class CartesianBlock : public sdk::MoeBlock {
  public:
    CartesianBlock(const sdk::MoeLayerContext& context, const CartesianOptions& options);

    sdk::BlockOutput forward(const sdk::BlockInput& input) override;

  private:
    std::shared_ptr<RoutedSublayer> first_;
    std::shared_ptr<RoutedSublayer> second_;
};

}  // namespace moelab::plugins::cartesian
