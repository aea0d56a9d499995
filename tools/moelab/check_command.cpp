#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/config/recipe_printer.h"
#include "core/plugin/resolve.h"
#include "core/train/init_from.h"

namespace moelab::cli {

int check_recipe(const CheckArgs& args) {
    const auto loaded = core::load_and_resolve(args.recipe, args.overrides);
    core::check_init_source(loaded->resolved.recipe);
    const core::ResolvedRecipe& resolved = loaded->resolved;
    fmt::print("{}", core::format_recipe(resolved.recipe, resolved.plugin_params()));
    fmt::print(stderr, "recipe '{}' is valid (device {})\n", resolved.recipe.name,
               core::name_of(loaded->device));
    return kExitOk;
}

}  // namespace moelab::cli
