#pragma once

// MaskMoE (methods.md §1): top-k softmax routing behind a fixed per-vocabulary routing mask.
// Before training, every vocabulary id gets a set of visible experts drawn uniformly at random
// from the seed: `visible_frequent` experts for frequent ids, exactly one for rare ids, so that
// all occurrences of a rare token train the same expert (like hash routing) while frequent tokens
// keep dynamic routing among several. Router logits of invisible experts are -inf; a token with
// fewer visible experts than k uses only those (variable experts per token). The table is a
// buffer: saved in checkpoints and applied identically in evaluation.
//
// [INTERPRETATION] (methods.md §1.3-1.4): the frequency split, visible_frequent and the balance
// loss are not published. Frequent = the top `frequent_fraction` of ids by training-split count
// (or count >= frequent_min_count); the Switch balance loss is computed on the masked
// probabilities; one table shared by all MoE layers unless per_layer is set.

#include <cstdint>

#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::plugins::maskmoe {

struct MaskMoeOptions {
    std::int64_t k = 2;
    std::int64_t visible_frequent = 4;
    bool split_by_count = false;  // else by fraction
    double frequent_fraction = 0.2;
    std::int64_t frequent_min_count = 100;
    bool per_layer = false;
    double balance_coef = 0.01;
    double z_loss_coef = 0.0;

    static MaskMoeOptions from(const sdk::Params& params);
};

// (vocab,) bool: which ids are frequent under `options`. Ties in count are broken by lower id.
at::Tensor frequent_ids(const at::Tensor& counts, const MaskMoeOptions& options);

// (vocab, experts) bool: visible experts per id, `visible_frequent` for frequent ids, 1 for the
// others, uniformly at random from `seed`.
at::Tensor build_mask(const at::Tensor& frequent, std::int64_t experts,
                      std::int64_t visible_frequent, std::uint64_t seed);

class MaskMoeRouter : public sdk::Router {
  public:
    MaskMoeRouter(const sdk::MoeLayerContext& context, const MaskMoeOptions& options);

    sdk::RoutingDecision route(const sdk::RouterInput& input) override;

    at::Tensor visible;  // (vocab, experts) bool buffer

  private:
    MaskMoeOptions options_;
    std::int64_t expert_count_;
    at::Tensor weight_;  // (experts, d_model) float32
};

}  // namespace moelab::plugins::maskmoe
