#pragma once

// Since 5.3. The three balance losses behind one call, for a router that offers them as options
// with a coefficient each (the built-in topk and deepseek do):
//   "balance"           Switch/GShard over the micro-batch (switch_balance_loss, routing_ops.h)
//   "sequence_balance"  the same per sequence, averaged (sequence_balance_loss, routing_ops.h)
//   "global_balance"    the same with the optimizer step's loads (global_batch_balance.h)
// All three read the decision's `probs` (scores as a distribution) and `expert_indices`.

#include <cstdint>

#include "moelab/sdk/global_batch_balance.h"
#include "moelab/sdk/router.h"
#include "moelab/sdk/routing.h"
#include "moelab/sdk/routing_ops.h"

namespace moelab::sdk {

struct BalanceCoefficients {
    double micro_batch = 0;   // "balance"
    double sequence = 0;      // "sequence_balance"
    double global_batch = 0;  // "global_balance"
};

class BalanceLosses {
  public:
    BalanceLosses(std::int64_t experts, const BalanceCoefficients& coefficients)
        : experts_(experts), coefficients_(coefficients), global_(experts) {}

    // Appends each loss whose coefficient is not 0 to decision.aux_losses, under its name above,
    // times its coefficient.
    void add(RoutingDecision& decision, const RouterInput& input) {
        const at::Tensor& probs = decision.probs;
        const at::Tensor& indices = decision.expert_indices;
        if (coefficients_.micro_batch > 0) {
            decision.aux_losses.emplace_back(
                "balance", coefficients_.micro_batch *
                               switch_balance_loss(probs, indices, experts_, input.batch));
        }
        if (coefficients_.sequence > 0) {
            decision.aux_losses.emplace_back(
                "sequence_balance",
                coefficients_.sequence *
                    sequence_balance_loss(probs, indices, experts_, input.sequence_length));
        }
        if (coefficients_.global_batch > 0) {
            const WholeBatch whole;
            decision.aux_losses.emplace_back(
                "global_balance",
                coefficients_.global_batch *
                    global_.loss(probs, indices, input.training, input.micro_batch,
                                 input.batch != nullptr ? *input.batch : whole));
        }
    }

  private:
    std::int64_t experts_;
    BalanceCoefficients coefficients_;
    GlobalBatchBalance global_;
};

}  // namespace moelab::sdk
