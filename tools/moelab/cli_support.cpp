#include "cli_support.h"

#include <cstdlib>
#include <filesystem>
#include <new>
#include <string_view>

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "core/config/diagnostics.h"
#include "core/config/recipe_loader.h"
#include "core/data/corpus.h"
#include "core/plugin/loader.h"
#include "core/plugin/plugin_error.h"
#include "core/system/device.h"
#include "core/system/file_error.h"
#include "core/system/printable.h"
#include "core/train/trainer.h"

namespace moelab::cli {

namespace {

// One error for the terminal: escaped, long lines shortened, at most a screenful of lines.
void print_error(std::string_view text) {
    fmt::print(stderr, "error: {}\n", core::printable_lines(text));
}

}  // namespace

int run_guarded(const std::function<int()>& command) {
    // Backtraces that LibTorch appends to its messages are for developers; MOELAB_BACKTRACE=1
    // keeps them.
    try {
        return command();
    } catch (const core::ConfigError& error) {
        for (const std::string& line : core::format_issues(error.issues())) {
            fmt::print(stderr, "error: {}\n", line);
        }
        return kExitUsageError;
    } catch (const core::RunSetupError& error) {
        print_error(error.what());
        return kExitUsageError;
    } catch (const UsageError& error) {
        print_error(error.what());
        return kExitUsageError;
    } catch (const core::PluginError& error) {
        print_error(error.what());
        return kExitRuntimeError;
    } catch (const std::filesystem::filesystem_error& error) {
        // The library's wording ("filesystem error: status: ...") is not for users: the path and
        // the system's reason are.
        print_error(
            fmt::format("{}: {}", core::printable_path(error.path1()), error.code().message()));
        return kExitRuntimeError;
    } catch (const c10::Error& error) {
        const char* backtrace = std::getenv("MOELAB_BACKTRACE");
        const bool keep = backtrace != nullptr && std::string_view(backtrace) == "1";
        print_error(keep ? error.what() : error.what_without_backtrace());
        return kExitRuntimeError;
    } catch (const std::bad_alloc&) {
        print_error("out of memory");
        return kExitRuntimeError;
    } catch (const std::exception& error) {
        print_error(error.what());
        return kExitRuntimeError;
    } catch (...) {
        print_error("unknown exception");
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
                        registry.refusals().size(), registry.refusals().size() == 1 ? "y" : "ies",
                        format_refusals(registry));
        if (!allow_refusals) throw UsageError(message);
        fmt::print(stderr, "warning: {}\n", core::printable_lines(message));
    }
    return registry;
}

std::unique_ptr<LoadedRecipe> load_and_resolve(const std::string& recipe_file,
                                               const std::vector<std::string>& overrides,
                                               const std::vector<std::string>& features) {
    core::Recipe recipe = core::load_recipe(recipe_file, overrides);
    for (const core::ConfigIssue& deprecation : recipe.deprecations) {
        fmt::print(stderr, "warning: {}\n", core::format_issue(deprecation));
    }
    auto loaded = std::make_unique<LoadedRecipe>();
    // A library on the search path that cannot be loaded is reported, but only fatal when the
    // recipe needs a component nobody provides (resolution then points at the refusals).
    loaded->registry = load_registry(recipe.plugins.search_path, /*allow_refusals=*/true);
    loaded->device = core::resolve_device(recipe);
    recipe.train.device = loaded->device;  // resolved once; recorded as resolved
    const sdk::CapabilityQuery query =
        core::capability_query(recipe, loaded->device, /*vocab_size=*/0, features);
    loaded->resolved = core::resolve_recipe(std::move(recipe), loaded->registry, query);
    core::check_corpus(loaded->resolved.recipe);
    core::check_cache_dir(loaded->resolved.recipe);
    return loaded;
}

}  // namespace moelab::cli
