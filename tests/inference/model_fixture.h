#pragma once

// A small LanguageModel assembled from tests/recipes/tiny.toml and the built-in plugins, in this
// process, for tests of decoding and evaluation that need a real model.

#include <memory>
#include <string>
#include <vector>

#include "core/config/recipe_loader.h"
#include "core/model/model_assembly.h"
#include "core/plugin/loader.h"
#include "core/plugin/resolve.h"

namespace moelab::tests {

inline constexpr std::int64_t kTinyVocab = 40;

struct TinyModel {
    core::PluginRegistry registry;  // owns what `resolved` points into
    core::ResolvedRecipe resolved;
    std::shared_ptr<core::LanguageModel> model;
};

// tests/recipes/<file> (tiny.toml: MoE, tiny-dense.toml: dense) with `overrides` (--set syntax);
// the model in evaluation mode on the CPU.
inline std::unique_ptr<TinyModel> tiny_model(const std::vector<std::string>& overrides = {},
                                             const std::string& file = "tiny.toml") {
    auto tiny = std::make_unique<TinyModel>();
    core::Recipe recipe =
        core::load_recipe(std::string(MOELAB_SOURCE_DIR) + "/tests/recipes/" + file, overrides);
    recipe.train.device = core::DeviceChoice::kCpu;
    tiny->registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const sdk::CapabilityQuery query =
        core::capability_query(recipe, core::DeviceChoice::kCpu, kTinyVocab, {});
    tiny->resolved = core::resolve_recipe(std::move(recipe), tiny->registry, query);
    tiny->model = core::assemble_model(tiny->resolved, core::DeviceChoice::kCpu, kTinyVocab,
                                       [] { return at::ones({kTinyVocab}, at::kLong); });
    tiny->model->eval();
    return tiny;
}

}  // namespace moelab::tests
