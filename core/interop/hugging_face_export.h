#pragma once

// A trained model in Hugging Face's layout (`moelab export --format hf`, docs/checkpoints.md):
// LlamaForCausalLM for a dense model, MixtralForCausalLM for one with a Mixtral router in every
// layer. The mapping is the host's for its own tensors (embedding, norms, dense FFN, expert banks)
// and the components' promise for theirs: the attention lists sdk::feature::kHfLlamaAttention,
// the router sdk::feature::kHfMixtralGate (capability.h). Both promises are checked on the built
// model (Note [Checking export claims]) before anything is written.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/checkpoint/safetensors.h"
#include "core/model/language_model.h"
#include "core/plugin/resolve.h"
#include "moelab/sdk/tokenizer.h"

namespace moelab::core {

// The features an export asks of the components (a dense model's are only the attention's); ask for
// them when resolving the run's recipe, so that a component can refuse the options that have no
// equivalent with its own reason.
std::vector<std::string> hugging_face_export_features();

// ConfigError at the recipe's <section>.plugin unless the attention, and the router of an MoE
// model, list their feature (capability.h); before the model is built.
void require_hugging_face_features(const ResolvedRecipe& resolved);

struct HuggingFaceModel {
    nlohmann::json config;             // config.json
    std::vector<NamedTensor> tensors;  // in Hugging Face's names, float32 on the CPU
};

// The model in Hugging Face's layout. ConfigError at the run's recipe key when the model has no
// equivalent (dense layers between MoE layers, shared experts, a capacity, a component without
// the feature); PluginError when a component's promise does not hold for the built model.
HuggingFaceModel hugging_face_model(const ResolvedRecipe& resolved, const LanguageModel& model,
                                    const sdk::Tokenizer& tokenizer);

struct HuggingFaceFiles {
    std::vector<std::string> files;  // names written into the directory
    std::int64_t tensor_bytes = 0;
};

// Writes config.json, model.safetensors (above `max_shard_bytes`, model-0000i-of-0000N.safetensors
// with model.safetensors.index.json), tokenizer.json and tokenizer_config.json into `directory`,
// which must not exist or be empty (nor be the working directory or above it). Files are written
// into a temporary sibling and renamed into place together, so an interrupted export leaves no
// half-written directory. Tensors are stored as `dtype`.
HuggingFaceFiles write_hugging_face_model(const HuggingFaceModel& model,
                                          const std::string& tokenizer_json,
                                          const std::filesystem::path& directory,
                                          std::int64_t max_shard_bytes, at::ScalarType dtype);

}  // namespace moelab::core
