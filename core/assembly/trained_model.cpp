#include "core/assembly/trained_model.h"

#include <fmt/format.h>

#include "core/assembly/loaded_recipe.h"
#include "core/checkpoint/checkpoint.h"
#include "core/model/model_assembly.h"
#include "core/system/device.h"
#include "core/train/model_state.h"
#include "core/train/trainer.h"

namespace moelab::core {

namespace fs = std::filesystem;

fs::path run_directory_of(const fs::path& target, const fs::path& step_dir) {
    if (fs::exists(target / "recipe.resolved.toml")) return target;
    const fs::path run = step_dir.parent_path().parent_path();
    if (fs::exists(run / "recipe.resolved.toml")) return run;
    throw RunSetupError(
        fmt::format("cannot find recipe.resolved.toml for {} (expected a run directory or "
                    "<run>/checkpoints/step-N)",
                    target.string()));
}

std::shared_ptr<LanguageModel> load_trained_model(
    const std::string& run_or_checkpoint, DeviceChoice device,
    const std::function<void(const std::string&)>& log) {
    struct Holder {
        std::unique_ptr<LoadedRecipe> recipe;
        std::unique_ptr<TrainedModel> trained;
    };
    const fs::path step_dir = resolve_checkpoint(run_or_checkpoint);
    const fs::path run_dir = run_directory_of(run_or_checkpoint, step_dir);
    auto holder = std::make_shared<Holder>();
    holder->recipe = load_and_resolve((run_dir / "recipe.resolved.toml").string(),
                                      {"train.device=\"" + std::string(name_of(device)) + "\""});
    holder->trained =
        std::make_unique<TrainedModel>(holder->recipe->resolved, run_dir, step_dir, device, log);
    holder->trained->model().eval();
    return std::shared_ptr<LanguageModel>(holder, &holder->trained->model());
}

TrainedModel::TrainedModel(const ResolvedRecipe& resolved, const fs::path& run_dir,
                           const fs::path& step_dir, DeviceChoice device,
                           const std::function<void(const std::string&)>& log,
                           const std::vector<std::string>& features) {
    const LoadedCheckpoint checkpoint = load_checkpoint(step_dir, CheckpointParts::kModel);
    resolved_ = checkpoint_recipe(resolved, checkpoint.state.step);
    const Recipe& recipe = resolved_.recipe;
    dataset_.emplace(Dataset::prepare_with_tokenizer(resolved_, run_dir / "tokenizer.txt", log));
    const Dataset* data = &*dataset_;
    model_ = assemble_model(
        resolved_, device, data->vocab_size(), [data] { return data->training_token_counts(); },
        features);
    load_model_tensors(*model_, checkpoint.model);
    step_ = checkpoint.state.step;
    device_ = torch_device(device);
    model_->to(device_);
    autocast_bf16_ = device == DeviceChoice::kCuda && recipe.model.dtype == ComputeDtype::kBfloat16;
}

SplitEvaluation TrainedModel::evaluate_sources(Split split, std::int64_t max_batches,
                                               const Perturbation& perturbation,
                                               RoutingTap* routing_tap) const {
    const Recipe& recipe = resolved_.recipe;
    EvalSetup setup;
    setup.device = device_;
    setup.autocast_bf16 = autocast_bf16_;
    setup.perturbation = perturbation;
    setup.step = step_;
    setup.routing_tap = routing_tap;
    return evaluate_split(*model_, *dataset_, split, recipe.data.seq_len, recipe.eval.batch_size,
                          max_batches, setup);
}

EvalResult TrainedModel::evaluate(Split split, std::int64_t max_batches,
                                  const Perturbation& perturbation) const {
    return evaluate_sources(split, max_batches, perturbation).overall;
}

}  // namespace moelab::core
