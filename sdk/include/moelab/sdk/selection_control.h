#pragma once

// The host's say in a router's choice. Every router hands the scores it is about to choose from to
// the host exactly once per forward, through SelectionControl::selectable_scores(), and chooses
// from what comes back. That single call is how the host runs its routing-robustness
// perturbations (disable the top experts, noise, expert dropout, random or forced-balance routing:
// docs/robustness.md) on every router without a line of perturbation code in any plugin.
// Outside a perturbation the call returns its input unchanged.
//
// Note [Selection contract]:
//  * Call it with the scores the selection reads, after any masks of the method's own (MaskMoE's
//    invisible experts are already 0), and before top-k / top-p / thresholding.
//  * Choose only from the returned scores. An expert whose returned score is 0 must not be chosen:
//    its slot is -1, or its combine weight is 0 (dense gates). The host checks this on every
//    decision while it disables experts; a decision that uses a disabled expert is an error naming
//    the plugin, layer and batch.
//  * Keep computing auxiliary losses and RoutingDecision::probs from the clean scores.
//  * `router` numbers the routers of one block in execution order, 0-based, and must equal the
//    position of the matching decision in BlockOutput::routing. The standard block's gate is 0.
//  * A component advertises which perturbations it honours in its `features`
//    (capability.h: feature::kDisableTop, ...). The host reports `n/a` for any other.

#include <ATen/core/Tensor.h>

namespace moelab::sdk {

enum class ScoreKind {
    // A distribution over the experts (a softmax): rows sum to 1. The host may renormalise what
    // remains after it removes experts, and adds logit noise as softmax(log p + noise).
    kSoftmax,
    // Independent per-expert gates in [0, 1] (sigmoid scores compared with a threshold, dense
    // gates). Never renormalised; logit noise is sigmoid(logit q + noise).
    kSigmoid,
};

class SelectionControl {
  public:
    // scores:   (tokens, experts) float32, non-negative; kind says what they are.
    // router:   which router of the block is choosing (see above).
    // fallback: optional (tokens, experts) scores of the same kind for tokens left with no
    //           selectable expert (MaskMoE's unmasked distribution); empty when there is none.
    // Returns (tokens, experts) float32 scores to choose from, same kind; 0 = not selectable.
    virtual at::Tensor selectable_scores(const at::Tensor& scores, ScoreKind kind, int router,
                                         const at::Tensor& fallback) = 0;

  protected:
    ~SelectionControl() = default;
};

// The control outside any perturbation: returns the scores unchanged. For plugin unit tests and
// for code that calls a router outside the host.
class UnperturbedSelection final : public SelectionControl {
  public:
    at::Tensor selectable_scores(const at::Tensor& scores, ScoreKind /*kind*/, int /*router*/,
                                 const at::Tensor& /*fallback*/) override {
        return scores;
    }
};

}  // namespace moelab::sdk
