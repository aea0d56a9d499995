#pragma once

// Checkpoints: <run>/checkpoints/step-<N>/{model.safetensors, optimizer.safetensors, state.json}
// and <run>/checkpoints/latest naming the newest complete one.
//
// Note [Atomic checkpoints]: a checkpoint is written into a hidden temporary directory, every file
// and the directory are fsynced, the directory is renamed to step-<N> (atomic within a file
// system), the parent is fsynced, and only then is `latest` replaced (itself atomically). A crash
// at any point leaves `latest` naming a complete checkpoint; leftover temporary directories are
// removed by the next save.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/checkpoint/safetensors.h"

namespace moelab::core {

struct CheckpointContents {
    std::vector<NamedTensor> model;      // parameters and buffers
    std::vector<NamedTensor> optimizer;  // optimizer state and RNG states
    nlohmann::json state;                // step, data position, recipe hash, ...
};

struct LoadedCheckpoint {
    std::filesystem::path directory;
    std::map<std::string, at::Tensor> model;
    std::map<std::string, at::Tensor> optimizer;
    nlohmann::json state;
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

// The step directory meant by `path`: a step directory itself, a checkpoints directory (its
// `latest`) or a run directory (its checkpoints/latest). CheckpointError if there is none.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& path);

LoadedCheckpoint load_checkpoint(const std::filesystem::path& step_dir);

}  // namespace moelab::core
