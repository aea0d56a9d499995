#pragma once

// Plugin resolution: from the recipe's plugin sections to registered components with validated
// options, after each component has confirmed it supports the run. Everything here happens before
// any tensor is allocated.

#include <map>
#include <string>
#include <vector>

#include "core/config/options.h"
#include "core/plugin/registry.h"
#include "moelab/sdk/capability.h"

namespace moelab::core {

struct ResolvedRecipe {
    Recipe recipe;
    const RegisteredTokenizer* tokenizer = nullptr;
    sdk::Params tokenizer_params;
    const RegisteredAttention* attention = nullptr;
    sdk::Params attention_params;
    const RegisteredRouter* router = nullptr;  // null for dense models
    sdk::Params router_params;

    // Note [Stages]: per stage (parallel to recipe.stages), the sections whose options the stage
    // sets ("attention", "router") -> the plugin's whole options in that stage.
    std::vector<std::map<std::string, sdk::Params>> stage_params;

    // Section name -> options, for format_recipe(); a stage's sections as "stage[i].attention".
    std::map<std::string, sdk::Params> plugin_params() const;
};

// The recipe of stage `index`'s model (Note [Stages]): data.seq_len and the attention and router
// options as the stage sets them; the recipe itself where the stage changes neither.
ResolvedRecipe stage_recipe(const ResolvedRecipe& resolved, std::size_t index);

// Whether stages `a` and `b` build the same model: the same seq_len and options of every model
// plugin.
bool same_stage_model(const ResolvedRecipe& resolved, std::size_t a, std::size_t b);

// The stage whose model holds the weights after `steps` optimizer steps: the stage of the last
// step taken (the first stage before any).
std::size_t stage_of_weights(const Recipe& recipe, std::int64_t steps);

// The recipe of a checkpoint's model after `steps` steps, for eval, generate and export: its
// stage's, except that a plugin option given on the command line (--set attention.base=...) is
// asked of it also where the stage sets that option itself.
ResolvedRecipe checkpoint_recipe(const ResolvedRecipe& resolved, std::int64_t steps);

// The query the components of `recipe` are asked. `device` is the resolved device (kCpu or
// kCuda); `vocab_size` is 0 while the tokenizer has not been built yet.
sdk::CapabilityQuery capability_query(const Recipe& recipe, DeviceChoice device,
                                      std::int64_t vocab_size,
                                      std::vector<std::string> features = {});

// Throws ConfigError pointing at the recipe key when a component is unknown (with suggestions and
// the names available), its options are invalid, or it does not support `query`.
ResolvedRecipe resolve_recipe(Recipe recipe, const PluginRegistry& registry,
                              const sdk::CapabilityQuery& query);

// Throws ConfigError at moe.kernel unless the recipe's expert kernel can run its MoE layers on the
// device and dtype of `query` (part of resolve_recipe; separate for callers that change the
// device afterwards).
void check_expert_kernel(const Recipe& recipe, const sdk::CapabilityQuery& query);

// Throws ConfigError unless the router can run split over `processes` processes with the recipe's
// [parallel] expert degree: it must list sdk::feature::kSplitBatch when processes > 1 and
// sdk::feature::kShardedExperts when the degree is > 1 (part of resolve_recipe with the fewest
// processes the degree needs; the trainer asks again with the job's size).
void check_parallel_support(const ResolvedRecipe& resolved, int processes);

// Asks every resolved component again, e.g. once the vocabulary size is known.
void check_support(const ResolvedRecipe& resolved, const sdk::CapabilityQuery& query);

}  // namespace moelab::core
