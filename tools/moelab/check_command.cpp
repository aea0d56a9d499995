#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/config/recipe_loader.h"
#include "core/config/recipe_printer.h"
#include "core/data/corpus.h"
#include "core/plugin/resolve.h"
#include "core/system/device.h"

namespace moelab::cli {

int check_recipe(const CheckArgs& args) {
    core::Recipe recipe = core::load_recipe(args.recipe, args.overrides);
    const core::PluginRegistry registry =
        load_registry(recipe.plugins.search_path, /*allow_refusals=*/false);
    const std::string device = core::resolve_device(recipe);
    const sdk::CapabilityQuery query = core::capability_query(recipe, device, /*vocab_size=*/0);
    const core::ResolvedRecipe resolved =
        core::resolve_recipe(std::move(recipe), registry, query);
    core::check_corpus(resolved.recipe);
    fmt::print("{}", core::format_recipe(resolved.recipe, resolved.plugin_params()));
    fmt::print(stderr, "recipe '{}' is valid (device {})\n", resolved.recipe.name, device);
    return kExitOk;
}

}  // namespace moelab::cli
