#pragma once

// Moving model and RNG state in and out of checkpoints, and the identity of a recipe.

#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/model/language_model.h"
#include "core/plugin/resolve.h"

namespace moelab::core {

// Parameters and buffers, by their module path ("layer0.attention.w_query").
std::vector<NamedTensor> model_tensors(const torch::nn::Module& model);

// Copies checkpoint tensors into the model. CheckpointError names every missing, unexpected or
// mis-shaped tensor. Tensors the host has renamed since (model_state.cpp) load under their
// current names.
// Whether a checkpoint tensor is one that earlier versions saved and that is now computed from the
// recipe (rotary frequencies): loading ignores it where the model has no such tensor.
bool no_longer_saved(const std::string& name);

void load_model_tensors(torch::nn::Module& model, const std::map<std::string, at::Tensor>& tensors);

// The random generators a run draws from (CPU, and CUDA when used), as U8 tensors.
std::vector<NamedTensor> rng_state(bool cuda);
void restore_rng_state(const std::map<std::string, at::Tensor>& tensors, bool cuda);

// Hash of the resolved recipe text (without its "# resolved from" line): two runs with the same
// hash train the same model the same way.
std::string recipe_hash(const ResolvedRecipe& resolved);

// {"section", "component", "plugin", "version", "file", "sdk_version", "fingerprint"} per plugin.
nlohmann::json plugin_records(const ResolvedRecipe& resolved);

}  // namespace moelab::core
