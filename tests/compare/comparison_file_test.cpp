// Comparison files are read like recipes: every problem at once, each with file:line:column, the
// key and what was expected.

#include <gtest/gtest.h>

#include "core/compare/comparison_file.h"
#include "core/config/diagnostics.h"

namespace moelab::core {
namespace {

std::vector<std::string> problems(const std::string& text) {
    try {
        parse_comparison(text, "dir/cmp.toml");
    } catch (const ConfigError& error) {
        return format_issues(error.issues());
    }
    return {};
}

bool has(const std::vector<std::string>& lines, const std::string& text) {
    for (const std::string& line : lines) {
        if (line.find(text) != std::string::npos) return true;
    }
    return false;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const std::string& line : lines) out += line + "\n";
    return out;
}

TEST(ComparisonFile, ReadsRunsSeedsAndSweepsWithPathsRelativeToTheFile) {
    const Comparison c = parse_comparison(R"(
seeds = [1, 2]
set = ["train.steps=10"]
max_batches = 3

[[run]]
recipe = "../recipes/a.toml"
set = ["router.k=1"]

[[run]]
name = "old"
dir = "runs/x"

[[perturbation]]
kind = "disable_top"
strengths = [1, 2]
routers = [1]

[[perturbation]]
kind = "forced_balance"
)",
                                          "dir/cmp.toml");
    EXPECT_EQ(c.name, "cmp");
    EXPECT_EQ(c.output, std::filesystem::path("runs/compare/cmp"));
    EXPECT_EQ(c.max_batches, 3);
    ASSERT_EQ(c.runs.size(), 2u);
    EXPECT_EQ(c.runs[0].name, "a");
    EXPECT_EQ(c.runs[0].recipe, std::filesystem::path("dir/../recipes/a.toml"));
    EXPECT_EQ(c.runs[0].seeds, (std::vector<std::int64_t>{1, 2}));
    EXPECT_EQ(c.runs[0].overrides, (std::vector<std::string>{"train.steps=10", "router.k=1"}));
    EXPECT_EQ(c.runs[1].directory, std::filesystem::path("dir/runs/x"));
    EXPECT_TRUE(c.runs[1].seeds.empty());
    ASSERT_EQ(c.perturbations.size(), 2u);
    EXPECT_EQ(c.perturbations[0].strengths, (std::vector<double>{1, 2}));
    EXPECT_EQ(c.perturbations[0].options.routers, (std::vector<std::int64_t>{1}));
    EXPECT_EQ(c.perturbations[1].strengths, (std::vector<double>{0}));
}

TEST(ComparisonFile, ReportsEveryProblemWithLineKeyAndExpectation) {
    const auto lines = problems(R"(seeds = [1]
colour = "red"

[[run]]
recipe = "a.toml"
dir = "runs/a"

[[run]]
recipe = "b.toml"
name = "b"

[[run]]
recipe = "c.toml"
name = "b"

[[perturbation]]
kind = "disable_top"
strengths = [1.5]

[[perturbation]]
kind = "expert_dropout"
strength = 0.5

[[perturbation]]
kind = "shuffle"
strengths = [1]
)");
    const std::string all = joined(lines);
    EXPECT_TRUE(has(lines, "dir/cmp.toml:2:1: colour: unknown key")) << all;
    EXPECT_TRUE(has(lines, "run[0]: give exactly one of recipe")) << all;
    EXPECT_TRUE(has(lines, "run[2].name: two runs are named 'b'")) << all;
    EXPECT_TRUE(has(lines,
                    "perturbation[0].strengths: disable_top removes a whole number of "
                    "experts; expected an integer n, got 1.5"))
        << all;
    EXPECT_TRUE(has(lines, "dir/cmp.toml:22:"));
    EXPECT_TRUE(has(lines,
                    "perturbation[1].strength: a comparison sweeps "
                    "strengths"))
        << all;
    EXPECT_TRUE(has(lines, "perturbation[1].strengths: missing key 'strengths'")) << all;
    EXPECT_TRUE(has(lines, "perturbation[2].kind: expected one of")) << all;
}

TEST(ComparisonFile, NeedsRunsAndValidToml) {
    EXPECT_TRUE(has(problems("seeds = [1]\n"), "run: missing [[run]] tables"));
    EXPECT_TRUE(has(problems("run = 3\n"), "run: expected an array of tables [[run]]"));
    EXPECT_TRUE(has(problems("[[run]\n"), "dir/cmp.toml:1:"));
    EXPECT_TRUE(has(problems("seeds = []\n[[run]]\nrecipe = \"a.toml\"\n"),
                    "seeds: expected at least one seed"));
}

}  // namespace
}  // namespace moelab::core
