#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/compare/comparison.h"
#include "core/compare/comparison_file.h"
#include "core/report/comparison_report.h"
#include "core/system/threads.h"

namespace moelab::cli {

int compare_runs(const CompareArgs& args) {
    core::Comparison comparison = core::load_comparison(args.file);
    if (!args.output.empty()) comparison.output = args.output;
    // Every recipe is resolved once per seed; the loaded plugins live as long as the comparison
    // holds the resolved recipe.
    const core::RecipeResolver resolve = [](const std::filesystem::path& recipe,
                                            const std::vector<std::string>& overrides) {
        std::shared_ptr<core::LoadedRecipe> loaded =
            core::load_and_resolve(recipe.string(), overrides);
        core::apply_threads(core::recipe_threads(loaded->resolved.recipe.train.intra_op_threads,
                                                 loaded->resolved.recipe.train.blas_threads));
        return std::shared_ptr<const core::ResolvedRecipe>(loaded, &loaded->resolved);
    };
    fmt::print("comparison {}: {} run(s), {} perturbation sweep(s); results in {}\n",
               comparison.name, comparison.runs.size(), comparison.perturbations.size(),
               comparison.output.string());
    const core::ComparisonSummary summary = core::run_comparison(
        comparison, resolve, [](const std::string& line) { fmt::print("{}\n", line); });
    if (summary.interrupted) {
        fmt::print("interrupted: rerun the same command to continue where it stopped\n");
        return 130;
    }
    fmt::print("trained {} run(s), made {} measurement(s) ({} cells in all)\n", summary.trained,
               summary.evaluated, summary.cells.size());
    fmt::print("{}", core::comparison_markdown(comparison, summary.cells));
    // The numbers are written; a report that cannot be drawn (chart libraries missing) is a
    // warning, not a failed comparison.
    try {
        for (const std::string& problem : core::write_comparison_report(comparison.output)) {
            fmt::print(stderr, "warning: {}\n", problem);
        }
    } catch (const std::exception& error) {
        fmt::print(stderr, "warning: report.html not written: {}\n", error.what());
    }
    fmt::print("results: {} and {}\n", (comparison.output / "results.md").string(),
               (comparison.output / "report.html").string());
    return kExitOk;
}

}  // namespace moelab::cli
