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
//
// Note [Recipe hash across plugin versions]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A plugin that gains an option writes it, at its default, into every recipe it resolves, so a run
// trained before then has another hash although nothing about it changed. The rule for plugin
// authors (sdk/README.md) is that a new option's default keeps the old behaviour. Then the run's
// stored recipe.resolved.toml, resolved again with today's plugins, is the run's recipe in today's
// terms, and when its hash is the requested recipe's, --resume and comparisons accept the run.
std::string recipe_hash(const ResolvedRecipe& resolved);

// The metadata of a checkpoint's weights (docs/checkpoints.md): "moelab.model", the shape as JSON
// (with the tokenizer's end-of-document id, -1 for none); "moelab.output_head", "embedding" when
// the output head is tied to the embedding, else "head"; "moelab.orientation" and
// "moelab.swiglu", how the matrices multiply and how w_in fuses the gate and up projections.
std::map<std::string, std::string> model_layout_metadata(const Recipe& recipe,
                                                         std::int64_t vocab_size,
                                                         std::int32_t end_of_document_id);

// {"section", "component", "plugin", "version", "file", "sdk_version", "fingerprint"} per plugin.
nlohmann::json plugin_records(const ResolvedRecipe& resolved);

}  // namespace moelab::core
