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
#include <vector>

#include "core/data/dataset.h"
#include "core/eval/split_evaluation.h"
#include "core/model/language_model.h"
#include "core/moe/perturbation.h"
#include "core/plugin/resolve.h"

namespace moelab::core {

// The run directory a target belongs to: the target itself, or <run>/checkpoints/step-N.
// RunSetupError when neither holds recipe.resolved.toml.
std::filesystem::path run_directory_of(const std::filesystem::path& target,
                                       const std::filesystem::path& step_dir);

// The model of `run_or_checkpoint` (a run directory or <run>/checkpoints/step-N), assembled from
// its own recipe.resolved.toml and loaded on `device`, in evaluation mode; it keeps its recipe and
// plugins alive. The reference model of calibration (RunOptions::load_reference_model).
std::shared_ptr<LanguageModel> load_trained_model(
    const std::string& run_or_checkpoint, DeviceChoice device,
    const std::function<void(const std::string&)>& log);

class TrainedModel {
  public:
    // `run_dir` holds recipe.resolved.toml and tokenizer.txt; `step_dir` is one of its complete
    // checkpoints (resolve_checkpoint). `device` is the resolved device ("cpu" or "cuda"). Only
    // the weights are read: a missing or damaged optimizer state does not matter here.
    // `features`: what the caller needs of the components (feature::kKvCache to decode). The model
    // is the one of the stage that trained the checkpoint's last step, and recipe() is that
    // stage's (its seq_len, its plugin options).
    TrainedModel(const ResolvedRecipe& resolved, const std::filesystem::path& run_dir,
                 const std::filesystem::path& step_dir, DeviceChoice device,
                 const std::function<void(const std::string&)>& log,
                 const std::vector<std::string>& features = {});

    // Loss, perplexity and routing statistics on `split` (at most `max_batches` batches per
    // source; 0: the whole split), under `perturbation` (kind none: plain evaluation). For a
    // mixture the overall loss is the weighted mean (Note [Loss of a mixture]).
    EvalResult evaluate(Split split, std::int64_t max_batches,
                        const Perturbation& perturbation = {}) const;
    // The same evaluation with every source's own result.
    // `routing_tap` (may be null) sees every MoE layer's routing (routing traces).
    SplitEvaluation evaluate_sources(Split split, std::int64_t max_batches,
                                     const Perturbation& perturbation = {},
                                     RoutingTap* routing_tap = nullptr) const;

    std::int64_t step() const { return step_; }
    const Recipe& recipe() const { return resolved_.recipe; }
    const Dataset& dataset() const { return *dataset_; }
    LanguageModel& model() const { return *model_; }
    at::Device device() const { return device_; }
    bool autocast_bf16() const { return autocast_bf16_; }

  private:
    // The recipe of the checkpoint's stage (Note [Stages]): its plugin options and seq_len.
    ResolvedRecipe resolved_;
    std::optional<Dataset> dataset_;
    std::shared_ptr<LanguageModel> model_;
    at::Device device_ = at::kCPU;
    bool autocast_bf16_ = false;
    std::int64_t step_ = 0;
};

}  // namespace moelab::core
