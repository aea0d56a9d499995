#include "core/assembly/trained_model.h"

#include "core/checkpoint/checkpoint.h"
#include "core/system/device.h"
#include "core/system/read_file.h"
#include "core/train/model_state.h"

namespace moelab::core {

namespace fs = std::filesystem;

TrainedModel::TrainedModel(const ResolvedRecipe& resolved, const fs::path& run_dir,
                           const fs::path& step_dir, DeviceChoice device,
                           const std::function<void(const std::string&)>& log)
    : resolved_(resolved) {
    const Recipe& recipe = resolved.recipe;
    dataset_.emplace(Dataset::prepare_with_tokenizer(
        resolved, read_file(run_dir / "tokenizer.txt", kMaxTokenizerBytes, "tokenizer file"), log));
    check_support(resolved, capability_query(recipe, device, dataset_->vocab_size()));
    const Dataset* data = &*dataset_;
    model_ = std::make_shared<LanguageModel>(resolved, data->vocab_size(),
                                             [data] { return data->training_token_counts(); });
    const LoadedCheckpoint checkpoint = load_checkpoint(step_dir, CheckpointParts::kModel);
    load_model_tensors(*model_, checkpoint.model);
    step_ = checkpoint.state.step;
    device_ = torch_device(device);
    model_->to(device_);
    autocast_bf16_ = device == DeviceChoice::kCuda && recipe.model.dtype == ComputeDtype::kBfloat16;
}

SplitEvaluation TrainedModel::evaluate_sources(Split split, std::int64_t max_batches,
                                               const Perturbation& perturbation) const {
    const Recipe& recipe = resolved_.recipe;
    EvalSetup setup;
    setup.device = device_;
    setup.autocast_bf16 = autocast_bf16_;
    setup.perturbation = perturbation;
    setup.step = step_;
    return evaluate_split(*model_, *dataset_, split, recipe.data.seq_len, recipe.eval.batch_size,
                          max_batches, setup);
}

EvalResult TrainedModel::evaluate(Split split, std::int64_t max_batches,
                                  const Perturbation& perturbation) const {
    return evaluate_sources(split, max_batches, perturbation).overall;
}

}  // namespace moelab::core
