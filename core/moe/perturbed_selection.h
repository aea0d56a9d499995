#pragma once

// The host's SelectionControl for one MoE layer and one forward: applies the evaluation's
// perturbation to the scores each router hands over, records which experts it made unavailable,
// and afterwards checks that the block kept the selection contract (Note [Selection contract] in
// sdk/selection_control.h).

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/moe/perturbation.h"
#include "core/plugin/plugin_info.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/selection_control.h"

namespace moelab::core {

// What a perturbation did to one router's scores.
struct PerturbedScores {
    at::Tensor scores;    // (tokens, experts) float32 to choose from
    at::Tensor disabled;  // (tokens, experts) bool, experts made unavailable; undefined if none
};

// The perturbation applied to scores (tokens, experts), drawing from a generator seeded by
// `seed`. Pure: the same arguments give the same result on every device.
PerturbedScores perturb_scores(const at::Tensor& scores, sdk::ScoreKind kind,
                               const at::Tensor& fallback, const Perturbation& perturbation,
                               std::uint64_t seed);

// Which batch of an evaluation a forward belongs to; seeds every draw of the perturbation.
struct SelectionSite {
    std::int64_t layer = 0;
    std::int64_t batch = 0;
    std::int64_t step = 0;  // training step of the model, for messages
};

class PerturbedSelection final : public sdk::SelectionControl {
  public:
    // `perturbation` may be null (plain evaluation and training: scores pass unchanged).
    PerturbedSelection(const Perturbation* perturbation, SelectionSite site);

    at::Tensor selectable_scores(const at::Tensor& scores, sdk::ScoreKind kind, int router,
                                 const at::Tensor& fallback) override;

    // Throws PluginError naming the plugin, layer and batch when a perturbed router never handed
    // over its scores, handed them twice, or chose an expert this control disabled.
    void check(const sdk::BlockOutput& output, const PluginInfo& plugin) const;

    // Whether a perturbation was applied to sigmoid gates in this forward.
    bool perturbed_gates() const { return perturbed_gates_; }

  private:
    struct Call {
        int router = 0;
        bool perturbed = false;
        at::Tensor disabled;
    };
    const Perturbation* perturbation_;
    SelectionSite site_;
    bool layer_perturbed_;
    bool perturbed_gates_ = false;
    std::vector<Call> calls_;
};

}  // namespace moelab::core
