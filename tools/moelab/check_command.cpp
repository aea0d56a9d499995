#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/config/recipe_printer.h"
#include "core/plugin/resolve.h"

namespace moelab::cli {

int check_recipe(const CheckArgs& args) {
    const auto loaded = load_and_resolve(args.recipe, args.overrides);
    const core::ResolvedRecipe& resolved = loaded->resolved;
    fmt::print("{}", core::format_recipe(resolved.recipe, resolved.plugin_params()));
    fmt::print(stderr, "recipe '{}' is valid (device {})\n", resolved.recipe.name,
               loaded->device);
    return kExitOk;
}

}  // namespace moelab::cli
