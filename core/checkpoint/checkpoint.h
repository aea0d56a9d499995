#pragma once

// Checkpoints: <run>/checkpoints/step-<N>/{model.safetensors, optimizer.safetensors, state.json}
// and <run>/checkpoints/latest naming the newest complete one.
//
// Note [Atomic checkpoints]: a checkpoint is written into a hidden temporary directory, every file
// and the directory are fsynced, the directory is renamed to step-<N> (atomic within a file
// system), the parent is fsynced, and only then is `latest` replaced (itself atomically). Every
// step-<N> directory is therefore complete, but a crash between the rename and the update of
// `latest` leaves `latest` missing or naming an older step: so `latest` is only a pointer for
// people, and resolve_checkpoint() takes the newest complete step-<N> directory. Leftovers of an
// interrupted save (.tmp-step-*, .latest.tmp.*) are removed by clean_interrupted_saves(), which
// runs when a run starts and with every save. A save that fails removes its temporary directory
// and says why (errno's reason: "No space left on device").
//
// Note [Expert shards]: the processes of an expert-parallel run (docs/parallel.md) write one
// checkpoint together, each its own experts, without gathering them anywhere. Every stacked
// tensor of a routed bank (its parameters and their optimizer state, (experts, ...)) is stored per
// expert as "<name>.<e>" for global expert e, in E files per kind:
// model-0000i-of-0000E.safetensors holds the experts of expert rank i - 1, and file 1 also every
// other tensor; optimizer-0000i-of-0000E.safetensors likewise. model.safetensors.index.json and
// optimizer.safetensors.index.json map every tensor to its file (Hugging Face's "weight_map") and
// name the stacked tensors with their expert count ("moelab_expert_stacks"). Readers put the stacks
// back together, so a checkpoint reads the same whoever wrote it: it loads under any expert degree,
// and the expert count of each bank is checked against the model.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint_state.h"
#include "core/checkpoint/safetensors.h"

namespace moelab::core {

// The stacked tensors of a checkpoint written in expert shards (Note [Expert shards]).
struct ExpertShardLayout {
    int files = 1;  // E; 1: one model.safetensors and one optimizer.safetensors
    // Stacked tensor -> its expert count, of the model's tensors and of the optimizer's.
    std::map<std::string, std::int64_t> model_stacks, optimizer_stacks;
};

struct CheckpointContents {
    // Parameters and buffers; with expert shards, those of file 1: every tensor that is not
    // stacked, and the stacks' experts of expert rank 0 as "<name>.<e>".
    std::vector<NamedTensor> model;
    std::vector<NamedTensor> optimizer;  // optimizer state and RNG states, likewise
    CheckpointState state;               // data position, recipe hash, ... (step is set by save)
    ExpertShardLayout shards;
    // What a reader of the weights needs besides them (model_layout_metadata()): in the metadata
    // of model.safetensors, or of model.safetensors.index.json with expert shards.
    std::map<std::string, std::string> model_metadata;
};

struct LoadedCheckpoint {
    std::filesystem::path directory;
    std::map<std::string, at::Tensor> model;
    std::map<std::string, at::Tensor> optimizer;  // empty unless asked for
    CheckpointState state;
};

struct SaveHooks {
    // Runs after every file is written and synced, before the directory is published, with the
    // temporary directory: the other processes of an expert-parallel run write their shard files
    // into it then (write_checkpoint_shard). Tests make it throw to simulate a crash.
    std::function<void(const std::filesystem::path& directory)> before_publish;
};

// Saves step `step` and keeps the `keep` newest checkpoints. Returns the step directory.
std::filesystem::path save_checkpoint(const std::filesystem::path& checkpoints_dir,
                                      std::int64_t step, const CheckpointContents& contents,
                                      int keep, const SaveHooks& hooks = {});

// Writes file `index` (1-based) of `layout.files` into the temporary `directory` of a save and
// syncs it: the shard of expert rank index - 1 (Note [Expert shards]).
void write_checkpoint_shard(const std::filesystem::path& directory, int index, int files,
                            const std::vector<NamedTensor>& model,
                            const std::vector<NamedTensor>& optimizer);

// The step directory meant by `path`: a step directory itself, or the newest complete step-<N> of
// a checkpoints directory or of a run directory's checkpoints/. CheckpointError if there is none.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& path);

// The newest complete step-<N> directory of `checkpoints_dir`, or nullopt if there is none.
std::optional<std::filesystem::path> newest_checkpoint(
    const std::filesystem::path& checkpoints_dir);

// Removes what interrupted saves left in `checkpoints_dir`; returns how many entries it removed.
int clean_interrupted_saves(const std::filesystem::path& checkpoints_dir);

enum class CheckpointParts { kModel, kModelAndOptimizer };

// Reads a step directory. Evaluation needs only the weights: kModel does not open
// optimizer.safetensors, so a missing or damaged optimizer state does not stop it.
LoadedCheckpoint load_checkpoint(const std::filesystem::path& step_dir,
                                 CheckpointParts parts = CheckpointParts::kModelAndOptimizer);

// state.json of a step directory alone (its step, data position, ...), without the tensors.
CheckpointState load_checkpoint_state(const std::filesystem::path& step_dir);

}  // namespace moelab::core
