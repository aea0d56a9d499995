#pragma once

// Routing statistics of the MoE layers over an interval (a logging window or an evaluation):
// tokens per expert, load imbalance (max/mean), coefficient of variation, dead-expert fraction,
// dropped-assignment fraction per expert bank; routing entropy and experts per token per routed
// sub-layer; the mean of every auxiliary loss and router statistic. Accumulates on the device and
// synchronises only when summarised.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dist/process_group.h"
#include "core/moe/managed_expert_bank.h"
#include "moelab/sdk/routing.h"

namespace moelab::core {

class LayerRoutingStats {
  public:
    void add_dispatch(const std::string& bank, const DispatchRecord& record);
    void add_decision(std::size_t sublayer, const sdk::RoutingDecision& decision);
    // `counted` false: a call without tokens (a process holding none of an evaluation batch's
    // rows) whose values do not count, but whose names must exist in every process for sum_over.
    void add_scalars(const std::string& kind, const sdk::NamedScalars& scalars,
                     bool counted = true);
    // Adds up the statistics of every process of `group`, which saw the other parts of the batch
    // (a collective: every process calls it with the same layers and banks).
    void sum_over(ProcessGroup& group);

    // A perturbation was applied to sigmoid gates (ScoreKind::kSigmoid) rather than to a softmax
    // ranking: the result is not the CartesianMoE paper's protocol (docs/robustness.md).
    void note_perturbed_gates() { perturbed_gates_ = true; }
    bool perturbed_gates() const { return perturbed_gates_; }

    // {"banks": {"experts": {"tokens_per_expert": [...], "load_imbalance": .., "cv": ..,
    //   "dead_fraction": .., "dropped_fraction": .., "active_fraction": ..,
    //   "nsar": .. (only with the activation probe)}},
    //  "routers": [{"entropy": .., "experts_per_token": ..}], "aux": {..}, "stats": {..}}
    nlohmann::json summary() const;

    // Per bank: processed assignments / (tokens x experts), the fraction of the bank's expert
    // parameters an average token uses.
    std::map<std::string, double> active_fractions() const;

  private:
    struct BankTotals {
        at::Tensor tokens_per_expert;  // (experts,) int64
        at::Tensor assignments;        // ()
        at::Tensor dropped;            // ()
        std::int64_t tokens = 0;
        at::Tensor probed_active;  // () int64, activation probe
        std::int64_t probed = 0;
    };
    struct DecisionTotals {
        at::Tensor entropy_sum;  // () float: sum over tokens
        at::Tensor experts_sum;  // () float: sum over tokens of used slots
        std::int64_t tokens = 0;
        bool has_probs = false;
    };
    struct ScalarTotals {
        at::Tensor sum;
        std::int64_t count = 0;
    };
    std::map<std::string, BankTotals> banks_;
    std::vector<DecisionTotals> decisions_;
    std::map<std::string, std::map<std::string, ScalarTotals>> scalars_;  // kind -> name -> totals
    bool perturbed_gates_ = false;
};

// Statistics of every MoE layer, keyed by layer index.
class RoutingStats {
  public:
    LayerRoutingStats& layer(int layer_index) { return layers_[layer_index]; }
    // The layer's statistics, or empty ones if it reported none.
    const LayerRoutingStats& layer_or_empty(int layer_index) const;
    bool empty() const { return layers_.empty(); }
    nlohmann::json summary() const;  // {"layer1": {...}, ...}
    // LayerRoutingStats::sum_over for every layer.
    void sum_over(ProcessGroup& group);

    // Whether some layer perturbed sigmoid gates (LayerRoutingStats::note_perturbed_gates).
    bool perturbed_gates() const;

  private:
    std::map<int, LayerRoutingStats> layers_;
};

}  // namespace moelab::core
