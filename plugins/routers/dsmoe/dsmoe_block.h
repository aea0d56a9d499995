#pragma once

// DSMoE (methods.md §3): the FFN as n matrix-partitioned experts behind sigmoid gates with a hard
// threshold and a straight-through estimator.
//
//   q = sigmoid(x Y)                  x = RMSNorm(h), Y (d_model, n): the gates, in fp32
//   G(q) = q if q > tau else 0        active experts; any number from 0 to n per token
//   S(q) = sg(G(q)) + q - sg(q)       forward G(q), d/dq 1: every gate learns, active or not
//   y = h + n / #active * sum_i S(q_i) o_i          (0 when no expert is active)
//
// The bank is dropless whatever the recipe's capacity factor: Eq. 7 has no capacity.
// Training computes all n experts (the gates' gradient needs every o_i, Eq. 16) and multiplies
// by S, so an inactive expert's weights get exactly zero gradient. Inference computes only the
// active (token, expert) pairs through the bank's sparse mix(). The sparsity loss is the L1 of
// the thresholded gates, averaged over tokens, experts and MoE layers (Eq. 17-19), by default
// with G (the paper's form: only active gates get its gradient) or with S.
//
// The block follows the SDK's convention for dense conversion (its input norm is "norm", its
// bank "experts"), so init.partition_ffn can start it from a trained dense model.

#include <cstdint>
#include <memory>

#include "moelab/sdk/expert_bank.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/rms_norm.h"

namespace moelab::plugins::dsmoe {

struct DsMoeOptions {
    double tau = 0.5;
    bool rescale = true;         // n / #active (Eq. 8)
    double sparsity_coef = 1.0;  // the paper has no coefficient (1)
    bool sparsity_ste = false;   // sparsity loss on S instead of G
    bool force_open = false;     // diagnostic: every expert active with weight 1

    static DsMoeOptions from(const sdk::Params& params);
};

class DsMoeBlock : public sdk::MoeBlock {
  public:
    DsMoeBlock(const sdk::MoeLayerContext& context, const DsMoeOptions& options);

    sdk::BlockOutput forward(const sdk::BlockInput& input) override;

  private:
    DsMoeOptions options_;
    std::int64_t expert_count_;
    int moe_layer_count_;
    std::shared_ptr<sdk::RmsNorm> norm_;
    std::shared_ptr<sdk::ExpertBank> experts_;
    at::Tensor gate_;  // (experts, d_model) float32: Y transposed
};

}  // namespace moelab::plugins::dsmoe
