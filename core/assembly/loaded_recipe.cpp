#include "core/assembly/loaded_recipe.h"

#include <fmt/format.h>

#include "core/config/diagnostics.h"
#include "core/config/recipe_loader.h"
#include "core/data/corpus.h"
#include "core/plugin/loader.h"
#include "core/system/device.h"
#include "core/system/printable.h"
#include "core/train/trainer.h"

namespace moelab::core {

std::string format_refusals(const PluginRegistry& registry) {
    std::string text;
    for (const PluginRefusal& refusal : registry.refusals()) {
        text += fmt::format("\n  refused {}: {}", refusal.file.string(), refusal.reason);
    }
    return text;
}

PluginRegistry load_plugin_registry(const std::vector<std::string>& extra, bool allow_refusals) {
    PluginRegistry registry = load_plugins(plugin_search_path(extra));
    if (!registry.refusals().empty()) {
        const std::string message =
            fmt::format("{} plugin librar{} on the search path could not be loaded:{}",
                        registry.refusals().size(), registry.refusals().size() == 1 ? "y" : "ies",
                        format_refusals(registry));
        if (!allow_refusals) throw RunSetupError(message);
        fmt::print(stderr, "warning: {}\n", printable_lines(message));
    }
    return registry;
}

std::unique_ptr<LoadedRecipe> load_and_resolve(const std::string& recipe_file,
                                               const std::vector<std::string>& overrides,
                                               const std::vector<std::string>& features) {
    Recipe recipe = load_recipe(recipe_file, overrides);
    for (const ConfigIssue& deprecation : recipe.deprecations) {
        fmt::print(stderr, "warning: {}\n", format_issue(deprecation));
    }
    auto loaded = std::make_unique<LoadedRecipe>();
    // A library on the search path that cannot be loaded is reported, but only fatal when the
    // recipe needs a component nobody provides (resolution then points at the refusals).
    loaded->registry = load_plugin_registry(recipe.plugins.search_path, /*allow_refusals=*/true);
    loaded->device = resolve_device(recipe);
    recipe.train.device = loaded->device;  // resolved once; recorded as resolved
    const sdk::CapabilityQuery query =
        capability_query(recipe, loaded->device, /*vocab_size=*/0, features);
    loaded->resolved = resolve_recipe(std::move(recipe), loaded->registry, query);
    check_corpus(loaded->resolved.recipe);
    check_cache_dir(loaded->resolved.recipe);
    return loaded;
}

}  // namespace moelab::core
