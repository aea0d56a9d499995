#pragma once

// `moelab run`: trains the model a resolved recipe describes and leaves a run directory:
//   recipe.resolved.toml   the recipe with every default filled in (reloadable)
//   tokenizer.txt          the serialized tokenizer
//   metrics.jsonl          run / train / eval records (metrics_log.h)
//   checkpoints/           step-N directories and `latest` (checkpoint.h)
//   summary.json           final validation and test loss/perplexity, tokens, wall time,
//                          parameter counts (total and active), unigram baseline
//   profile.json           with RunOptions::profile: where a step's time goes
//   operators.json         with RunOptions::profile_operators: time per LibTorch operator
//   calibration.json       with init.calibration_samples: each calibrated layer's error before
//                          and after (Note [Calibration] in the SDK's calibration.h)
// A run can be resumed from its latest checkpoint with identical results on the CPU.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/plugin/resolve.h"

namespace moelab::core {

class LanguageModel;

struct RunOptions {
    std::filesystem::path out_dir;  // empty: runs/<recipe name>-<timestamp>
    bool resume = false;
    // Stop after this many optimizer steps of this invocation, with a checkpoint (0: run to the
    // end). For jobs cut into time slices; continue with resume.
    std::int64_t stop_after_steps = 0;
    // Profile the steps after the first kProfileWarmupSteps of this invocation: per phase and
    // operator family, into profile.json and the terminal (Note [Step profile]).
    bool profile = false;
    // With profile: also the self time of every LibTorch operator of the profiled steps, into
    // operators.json and the terminal (Note [Operator profile]).
    bool profile_operators = false;
    // The hash (recipe_hash) of a stored recipe.resolved.toml resolved with today's plugins: the
    // second look of --resume when the checkpoint's recipe hash differs (Note [Recipe hash across
    // plugin versions] in model_state.h). Empty: a differing hash is refused outright.
    std::function<std::string(const std::filesystem::path& resolved_recipe)> rehash_stored_recipe;
    // The model a run directory or checkpoint holds, assembled with its own recipe and loaded on
    // `device`: the reference of calibration (init.calibration_samples), which sits above this
    // layer (core/assembly). Empty: a recipe that calibrates is refused.
    std::function<std::shared_ptr<LanguageModel>(const std::string& run_or_checkpoint,
                                                 DeviceChoice device)>
        load_reference_model;
};

inline constexpr std::int64_t kProfileWarmupSteps = 2;  // allocator and caches settle

enum class RunOutcome { kCompleted, kStopped, kInterrupted };

struct RunResult {
    std::filesystem::path run_dir;
    RunOutcome outcome = RunOutcome::kCompleted;
    std::int64_t step = 0;
};

// A run directory that cannot be used as asked (exists without --resume, nothing to resume, recipe
// changed since the checkpoint): a usage error.
class RunSetupError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The loss became NaN or infinite: training stopped; the last good checkpoint is kept.
class TrainingDiverged : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

RunResult run_training(const ResolvedRecipe& resolved, const RunOptions& options);

}  // namespace moelab::core
