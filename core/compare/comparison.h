#pragma once

// Runs a comparison (comparison_file.h): trains each recipe × seed that has no finished run yet
// (a finished run of the same resolved recipe is reused, an interrupted one resumed), evaluates
// every run unperturbed and under every perturbation × strength, and writes
//   results.csv, results.json   one row per run × seed × perturbation × strength
//   results.md                  mean ± sample standard deviation over seeds, ratios to unperturbed
// Each measurement is kept in cells/ as soon as it is made, so an interrupted comparison resumes
// where it stopped and a finished one is rerun without training or evaluating anything, with
// identical results. A router that has not declared a perturbation gets n/a and the reason.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/compare/comparison_file.h"
#include "core/plugin/resolve.h"

namespace moelab::core {

// Loads and resolves a recipe with overrides; the result keeps its plugins loaded.
using RecipeResolver = std::function<std::shared_ptr<const ResolvedRecipe>(
    const std::filesystem::path& recipe, const std::vector<std::string>& overrides)>;

struct ComparisonCell {
    std::string run;
    std::int64_t seed = -1;  // -1: a run directory given as it is
    std::string run_dir;
    std::string kind = "none";  // perturbation kind
    double strength = 0;
    std::string perturbation;  // describe_perturbation(); "none" when unperturbed
    bool measured = false;     // false: n/a, see `reason`
    std::string reason;
    double loss = 0;
    double ppl = 0;
    double ratio = 0;  // ppl / unperturbed ppl of the same run and seed
    std::int64_t tokens = 0;
    std::int64_t step = 0;  // the checkpoint's step
    // Set when the perturbation acted on sigmoid gates (DSMoE, Finedeep), not on a softmax
    // ranking: not the paper's protocol.
    std::string note;

    nlohmann::json to_json() const;
    static ComparisonCell from_json(const nlohmann::json& json);
};

struct ComparisonSummary {
    std::vector<ComparisonCell> cells;  // in plan order: run, seed, then perturbation order
    std::int64_t trained = 0;           // runs trained (or resumed) by this invocation
    std::int64_t evaluated = 0;         // measurements made by this invocation
    bool interrupted = false;
};

ComparisonSummary run_comparison(const Comparison& comparison, const RecipeResolver& resolve,
                                 const std::function<void(const std::string&)>& log);

// The result files for `cells` (also used to rewrite them).
void write_comparison_results(const Comparison& comparison,
                              const std::vector<ComparisonCell>& cells);

// results.md: one row per run, mean ± standard deviation over seeds of the perplexity and of its
// ratio to the unperturbed perplexity, n/a with its reason in a footnote.
std::string comparison_markdown(const Comparison& comparison,
                                const std::vector<ComparisonCell>& cells);

}  // namespace moelab::core
