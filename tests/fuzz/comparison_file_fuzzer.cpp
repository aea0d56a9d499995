// Fuzzes the comparison-file reader (core/compare/comparison_file.h): TOML parsing, the top-level
// keys, [[run]] and [[perturbation]] tables, the perturbation schema shared with recipes and the
// checks across keys, down to the messages of ConfigError. The input is the file's text, parsed in
// memory (parse_comparison): nothing is read from or written to disk, and paths in it are only
// joined, never opened.

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/compare/comparison_file.h"
#include "core/config/diagnostics.h"
#include "harness.h"

// The toml++ 3.3.0 bugs that end the process are refused by core/config/toml_guard.h inside
// parse_comparison(); regressions/comparison_file/toml-* hold an input of each.

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const moelab::core::Comparison comparison =
            moelab::core::parse_comparison(text, "fuzz/cmp.toml");
        // A comparison that passes has something to compare and valid sweeps.
        MOELAB_FUZZ_CHECK(!comparison.runs.empty());
        MOELAB_FUZZ_CHECK(!comparison.name.empty());
        for (const moelab::core::ComparisonRun& run : comparison.runs) {
            MOELAB_FUZZ_CHECK(run.recipe.empty() != run.directory.empty());
            MOELAB_FUZZ_CHECK(!run.recipe.empty() == !run.seeds.empty());
        }
        for (const moelab::core::PerturbationSweep& sweep : comparison.perturbations) {
            MOELAB_FUZZ_CHECK(!sweep.strengths.empty());
            for (double strength : sweep.strengths) MOELAB_FUZZ_CHECK(strength >= 0);
        }
    } catch (const moelab::core::ConfigError& error) {
        MOELAB_FUZZ_CHECK(!error.issues().empty());
        for (const moelab::core::ConfigIssue& issue : error.issues()) {
            MOELAB_FUZZ_CHECK(!moelab::core::format_issue(issue).empty());
        }
    }
    return 0;
}
