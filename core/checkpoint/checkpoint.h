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

struct CheckpointContents {
    std::vector<NamedTensor> model;      // parameters and buffers
    std::vector<NamedTensor> optimizer;  // optimizer state and RNG states
    CheckpointState state;               // data position, recipe hash, ... (step is set by save)
};

struct LoadedCheckpoint {
    std::filesystem::path directory;
    std::map<std::string, at::Tensor> model;
    std::map<std::string, at::Tensor> optimizer;  // empty unless asked for
    CheckpointState state;
};

struct SaveHooks {
    // Runs after every file is written and synced, before the directory is published; tests make
    // it throw to simulate a crash.
    std::function<void()> before_publish;
};

// Saves step `step` and keeps the `keep` newest checkpoints. Returns the step directory.
std::filesystem::path save_checkpoint(const std::filesystem::path& checkpoints_dir,
                                      std::int64_t step, const CheckpointContents& contents,
                                      int keep, const SaveHooks& hooks = {});

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

}  // namespace moelab::core
