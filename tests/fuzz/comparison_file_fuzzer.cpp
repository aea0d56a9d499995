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

namespace {

// The toml++ 3.3.0 bugs the recipe fuzzer filters (recipe_fuzzer.cpp) are reachable here too; the
// same over-approximation keeps the fuzzer on moelab's own code.
bool is_bare_key_character(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

bool may_hit_toml_bug(const std::string& text) {
    for (std::size_t line = 0; line < text.size();) {
        std::size_t at = text.find_first_not_of(" \t", line);
        if (at != std::string::npos && text[at] == '[') {
            ++at;
            if (at < text.size() && text[at] == '[') ++at;
            at = text.find_first_not_of(" \t", at);
            if (at != std::string::npos && !is_bare_key_character(text[at]) && text[at] != '"' &&
                text[at] != '\'' && text[at] != ']') {
                return true;
            }
        }
        const std::size_t end = text.find('\n', line);
        line = end == std::string::npos ? text.size() : end + 1;
    }
    for (unsigned char c : text) {
        if (c >= 0x80) return true;  // the whitespace table bug: any non-ASCII byte, simply
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    if (may_hit_toml_bug(text)) return -1;
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
