#pragma once

// Hash routing (Roller et al. 2021, the Hash Layer baseline of methods.md §2.3): a fixed table,
// built before training, sends every occurrence of a vocabulary id to the same k experts with
// equal weights 1/k. Nothing in the router is learned; the table is a buffer saved in
// checkpoints, because rebuilding it needs the seed and, for the balanced assignment, the
// training split's token counts.
//
// [INTERPRETATION] The CartesianMoE authors' evaluation code looks the token id up in a
// per-token score table and takes softmax + top-2 of that row; how that table was built is not
// visible. Uniform weights over a fixed assignment is Roller et al.'s original form.

#include <cstdint>

#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/router.h"

namespace moelab::plugins::hash {

struct HashOptions {
    std::int64_t k = 1;
    bool balanced = false;   // else uniformly random
    bool per_layer = false;  // one table per MoE layer, else one shared by all layers

    static HashOptions from(const sdk::Params& params);
};

// (vocab, k) int64: k distinct experts per id, drawn uniformly at random from `seed`.
at::Tensor random_table(std::int64_t vocab, std::int64_t experts, std::int64_t k,
                        std::uint64_t seed);

// (vocab, k) int64: ids in decreasing count order each take the k experts with the fewest tokens
// so far (ties: lower expert index), so that expert loads on the training split are as even as a
// per-id assignment allows (Roller et al.'s "balanced" hash).
at::Tensor balanced_table(const at::Tensor& counts, std::int64_t experts, std::int64_t k);

class HashRouter : public sdk::Router {
  public:
    HashRouter(const sdk::MoeLayerContext& context, const HashOptions& options);

    sdk::RoutingDecision route(const sdk::RouterInput& input) override;

    at::Tensor table;  // (vocab, k) int64 buffer

  private:
    std::int64_t expert_count_;
};

}  // namespace moelab::plugins::hash
