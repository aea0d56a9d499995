#pragma once

// One way to bring a trained model back from a run directory: the run's resolved recipe (already
// resolved by the caller, with any overrides), its tokenizer and data, and the weights of one
// checkpoint, on the evaluation device. `moelab eval` and `moelab compare` both use it.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/data/dataset.h"
#include "core/eval/split_evaluation.h"
#include "core/model/language_model.h"
#include "core/moe/perturbation.h"
#include "core/plugin/resolve.h"

namespace moelab::core {

class TrainedModel {
  public:
    // `run_dir` holds recipe.resolved.toml and tokenizer.txt; `step_dir` is one of its complete
    // checkpoints (resolve_checkpoint). `device` is the resolved device ("cpu" or "cuda"). Only
    // the weights are read: a missing or damaged optimizer state does not matter here.
    TrainedModel(const ResolvedRecipe& resolved, const std::filesystem::path& run_dir,
                 const std::filesystem::path& step_dir, DeviceChoice device,
                 const std::function<void(const std::string&)>& log);

    // Loss, perplexity and routing statistics on `split` (at most `max_batches` batches per
    // source; 0: the whole split), under `perturbation` (kind none: plain evaluation). For a
    // mixture the overall loss is the weighted mean (Note [Loss of a mixture]).
    EvalResult evaluate(Split split, std::int64_t max_batches,
                        const Perturbation& perturbation = {}) const;
    // The same evaluation with every source's own result.
    SplitEvaluation evaluate_sources(Split split, std::int64_t max_batches,
                                     const Perturbation& perturbation = {}) const;

    std::int64_t step() const { return step_; }
    const Dataset& dataset() const { return *dataset_; }
    LanguageModel& model() const { return *model_; }

  private:
    const ResolvedRecipe& resolved_;
    std::optional<Dataset> dataset_;
    std::shared_ptr<LanguageModel> model_;
    at::Device device_ = at::kCPU;
    bool autocast_bf16_ = false;
    std::int64_t step_ = 0;
};

}  // namespace moelab::core
