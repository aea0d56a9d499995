#include "cli_support.h"

#include <fmt/format.h>

#include "core/config/diagnostics.h"
#include "core/plugin/loader.h"
#include "core/config/recipe_loader.h"
#include "core/data/corpus.h"
#include "core/plugin/plugin_error.h"
#include "core/system/device.h"
#include "core/train/trainer.h"

namespace moelab::cli {

int run_guarded(const std::function<int()>& command) {
    try {
        return command();
    } catch (const core::ConfigError& error) {
        for (const core::ConfigIssue& issue : error.issues()) {
            fmt::print(stderr, "error: {}\n", core::format_issue(issue));
        }
        return kExitUsageError;
    } catch (const core::RunSetupError& error) {
        fmt::print(stderr, "error: {}\n", error.what());
        return kExitUsageError;
    } catch (const UsageError& error) {
        fmt::print(stderr, "error: {}\n", error.what());
        return kExitUsageError;
    } catch (const core::PluginError& error) {
        fmt::print(stderr, "error: {}\n", error.what());
        return kExitRuntimeError;
    } catch (const std::exception& error) {
        fmt::print(stderr, "error: {}\n", error.what());
        return kExitRuntimeError;
    } catch (...) {
        fmt::print(stderr, "error: unknown exception\n");
        return kExitRuntimeError;
    }
}

std::string format_refusals(const core::PluginRegistry& registry) {
    std::string text;
    for (const core::PluginRefusal& refusal : registry.refusals()) {
        text += fmt::format("\n  refused {}: {}", refusal.file.string(), refusal.reason);
    }
    return text;
}

core::PluginRegistry load_registry(const std::vector<std::string>& extra, bool allow_refusals) {
    core::PluginRegistry registry = core::load_plugins(core::plugin_search_path(extra));
    if (!registry.refusals().empty()) {
        const std::string message =
            fmt::format("{} plugin librar{} on the search path could not be loaded:{}",
                        registry.refusals().size(),
                        registry.refusals().size() == 1 ? "y" : "ies", format_refusals(registry));
        if (!allow_refusals) throw UsageError(message);
        fmt::print(stderr, "error: {}\n", message);
    }
    return registry;
}

std::unique_ptr<LoadedRecipe> load_and_resolve(const std::string& recipe_file,
                                               const std::vector<std::string>& overrides,
                                               const std::vector<std::string>& features) {
    core::Recipe recipe = core::load_recipe(recipe_file, overrides);
    auto loaded = std::make_unique<LoadedRecipe>();
    loaded->registry = load_registry(recipe.plugins.search_path, /*allow_refusals=*/false);
    loaded->device = core::resolve_device(recipe);
    const sdk::CapabilityQuery query =
        core::capability_query(recipe, loaded->device, /*vocab_size=*/0, features);
    loaded->resolved = core::resolve_recipe(std::move(recipe), loaded->registry, query);
    core::check_corpus(loaded->resolved.recipe);
    return loaded;
}

}  // namespace moelab::cli
