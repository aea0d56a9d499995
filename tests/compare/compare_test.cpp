// `moelab compare` end to end on the tiny recipe: runs trained once per seed, every run evaluated
// unperturbed and under each perturbation, n/a (never a number) for a router that has not
// declared a perturbation, the unperturbed number equal to `moelab eval`, and a rerun that trains
// and evaluates nothing and writes identical files.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class Compare : public ::testing::Test {
  protected:
    Compare() : corpus_(6000) {}

    CommandResult moelab(const std::string& arguments) {
        // The fixture router lists no perturbation feature.
        const std::string env =
            "MOELAB_PLUGIN_PATH=" + shell_quote((fs::path(MOELAB_FIXTURE_DIR) / "good").string());
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " + env + " " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    fs::path dir(const std::string& name) const { return corpus_.root() / name; }
    std::string read(const fs::path& file) const {
        std::ifstream in(file);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }
    void write_comparison() const {
        const std::string tiny =
            (fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml").string();
        std::ofstream(dir("cmp.toml"))
            << "output = \"cmp\"\n"
               "max_batches = 2\n"
               "seeds = [3, 4]\n"
               "set = [\"train.steps=8\"]\n"
               "[[run]]\nname = \"topk\"\nrecipe = \""
            << tiny
            << "\"\n"
               "[[run]]\nname = \"fixture\"\nrecipe = \""
            << tiny
            << "\"\n"
               "set = [\"router.plugin=\\\"fixture-router\\\"\"]\n"
               "[[perturbation]]\nkind = \"disable_top\"\nstrengths = [1]\n"
               "[[perturbation]]\nkind = \"forced_balance\"\n";
    }
    TestCorpus corpus_;
};

TEST_F(Compare, MeasuresWhatEachRouterDeclaresAndSaysNaForTheRest) {
    write_comparison();
    const CommandResult first = moelab("compare cmp.toml");
    ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
    EXPECT_NE(first.out.find("trained 4 run(s), made 8 measurement(s) (12 cells in all)"),
              std::string::npos)
        << first.out;
    EXPECT_NE(first.out.find("ETA"), std::string::npos) << first.out;

    const nlohmann::json results = nlohmann::json::parse(read(dir("cmp") / "results.json"));
    ASSERT_EQ(results["cells"].size(), 12u);
    for (const nlohmann::json& cell : results["cells"]) {
        const bool perturbed = cell["perturbation"] != "none";
        if (cell["run"] == "fixture" && perturbed) {
            EXPECT_FALSE(cell["measured"].get<bool>()) << cell.dump();
            EXPECT_FALSE(cell.contains("ppl")) << "a number for an undeclared perturbation";
            EXPECT_NE(cell["reason"].get<std::string>().find("router 'fixture-router'"),
                      std::string::npos);
            EXPECT_NE(cell["reason"].get<std::string>().find("does not list the feature "
                                                             "perturbation."),
                      std::string::npos)
                << cell["reason"];
        } else {
            ASSERT_TRUE(cell["measured"].get<bool>()) << cell.dump();
            EXPECT_EQ(cell["tokens"].get<std::int64_t>(), 2 * 8 * 16);  // batches x rows x seq_len
        }
        if (cell["run"] == "topk" && perturbed) {
            EXPECT_NE(cell["ratio"].get<double>(), 1.0) << cell.dump();
        }
    }
    const std::string markdown = read(dir("cmp") / "results.md");
    EXPECT_NE(markdown.find("| fixture | 2 |"), std::string::npos) << markdown;
    EXPECT_NE(markdown.find("n/a [1]"), std::string::npos) << markdown;

    // Unperturbed through compare equals `moelab eval` of the same run.
    const CommandResult eval = moelab("eval cmp/runs/topk-seed3 --json --max-batches 2");
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    const double eval_ppl = nlohmann::json::parse(eval.out)["ppl"].get<double>();
    EXPECT_DOUBLE_EQ(results["cells"][0]["ppl"].get<double>(), eval_ppl);
    const CommandResult probe = moelab(
        "eval cmp/runs/topk-seed3 --json --max-batches 2 "
        "--perturb disable_top=1");
    ASSERT_EQ(probe.exit_code, 0) << probe.err;
    EXPECT_DOUBLE_EQ(results["cells"][1]["ppl"].get<double>(),
                     nlohmann::json::parse(probe.out)["ppl"].get<double>());
    // `eval` of an undeclared perturbation is refused with the reason, never a number.
    const CommandResult refused = moelab("eval cmp/runs/fixture-seed3 --perturb disable_top=1");
    EXPECT_EQ(refused.exit_code, 2);
    EXPECT_NE(refused.err.find("n/a: router 'fixture-router'"), std::string::npos) << refused.err;

    // A rerun trains and evaluates nothing and writes the same files.
    const std::string csv = read(dir("cmp") / "results.csv");
    const std::string json = read(dir("cmp") / "results.json");
    const CommandResult again = moelab("compare cmp.toml");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_NE(again.out.find("trained 0 run(s), made 0 measurement(s)"), std::string::npos)
        << again.out;
    EXPECT_EQ(read(dir("cmp") / "results.csv"), csv);
    EXPECT_EQ(read(dir("cmp") / "results.json"), json);
    EXPECT_EQ(read(dir("cmp") / "results.md"), markdown);

    // An interrupted comparison (a measurement missing) makes exactly the missing measurement.
    std::vector<fs::path> cells;
    for (const auto& entry : fs::directory_iterator(dir("cmp") / "cells"))
        cells.push_back(entry.path());
    ASSERT_EQ(cells.size(), 12u);
    fs::remove(cells.front());
    const CommandResult resumed = moelab("compare cmp.toml");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_NE(resumed.out.find("trained 0 run(s), made"), std::string::npos) << resumed.out;
    EXPECT_EQ(read(dir("cmp") / "results.json"), json);

    // A run trained before its router gained an option (topk's z_loss_coef taken out of its
    // stored recipe and its summary's hash changed, as an older topk would have left them) is
    // still reused: its recipe with today's defaults is the requested one (Note [Recipe hash
    // across plugin versions]).
    const fs::path stored = dir("cmp") / "runs" / "topk-seed3" / "recipe.resolved.toml";
    std::string recipe = read(stored);
    const std::string option = "z_loss_coef = 0.0\n";
    ASSERT_NE(recipe.find(option), std::string::npos);
    recipe.erase(recipe.find(option), option.size());
    std::ofstream(stored) << recipe;
    const fs::path summary_file = dir("cmp") / "runs" / "topk-seed3" / "summary.json";
    nlohmann::json summary = nlohmann::json::parse(read(summary_file));
    summary["recipe_hash"] = "0123456789abcdef";
    std::ofstream(summary_file) << summary.dump(2);
    const CommandResult older = moelab("compare cmp.toml");
    ASSERT_EQ(older.exit_code, 0) << older.err;
    EXPECT_NE(older.out.find("trained 0 run(s), made 0 measurement(s)"), std::string::npos)
        << older.out;
}

TEST_F(Compare, ABadComparisonFileIsAUsageErrorWithLineAndKey) {
    std::ofstream(dir("bad.toml"))
        << "seeds = [1]\n[[run]]\nrecipe = \"a.toml\"\n"
           "[[perturbation]]\nkind = \"logit_noise\"\nstrengths = \"big\"\n";
    const CommandResult bad = moelab("compare bad.toml");
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_NE(bad.err.find("bad.toml:6:13: perturbation[0].strengths: expected a non-empty list of "
                           "numbers >= 0, got string"),
              std::string::npos)
        << bad.err;
}

}  // namespace
}  // namespace moelab::tests
