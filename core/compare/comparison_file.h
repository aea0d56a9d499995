#pragma once

// `moelab compare` files: which runs to compare (existing run directories, or recipes to train
// first, each with one or more seeds), on which split, under which routing perturbations and
// strengths. Read and validated like recipes: every problem is reported with file:line:column, the
// key and what was expected (ConfigError, exit 2). Torch-free.
//
//   name = "robustness"                  # default: the file's stem
//   output = "runs/compare/robustness"   # default: runs/compare/<name>
//   split = "validation"                 # or "test"
//   max_batches = 0                      # 0: each run's eval.max_batches
//   seeds = [1, 2]                       # for every [[run]] given by a recipe
//   set = ["train.device=\"cpu\""]       # overrides applied to every recipe
//
//   [[run]]
//   name = "smoe-share"                  # label; default: the recipe's or directory's stem
//   recipe = "../moe/smoe_share.toml"    # relative to this file; or dir = "runs/x"
//   set = ["train.steps=200"]            # this run's own overrides
//
//   [[perturbation]]                     # the keys of [eval.perturbation], with `strengths`
//   kind = "disable_top"
//   strengths = [1, 2]

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/config/options.h"

namespace moelab::core {

struct ComparisonRun {
    std::string name;
    std::filesystem::path recipe;        // absolute or relative to the working directory; or empty
    std::filesystem::path directory;     // an existing run directory; or empty
    std::vector<std::string> overrides;  // the file's `set`, then the run's own
    std::vector<std::int64_t> seeds;     // empty for a run directory
};

struct PerturbationSweep {
    PerturbationOptions options;  // strength unused: one evaluation per entry of `strengths`
    std::vector<double> strengths;
};

struct Comparison {
    std::filesystem::path file;
    std::string name;
    std::filesystem::path output;
    std::string split = "validation";
    std::int64_t max_batches = 0;
    std::vector<ComparisonRun> runs;
    std::vector<PerturbationSweep> perturbations;
};

// Throws ConfigError (every problem, with file:line:column) or FileError-derived ConfigError when
// the file cannot be read.
Comparison load_comparison(const std::filesystem::path& file);

// The same, from text already in memory (`origin` names it in messages): for tests and fuzzing.
Comparison parse_comparison(const std::string& text, const std::filesystem::path& origin);

}  // namespace moelab::core
