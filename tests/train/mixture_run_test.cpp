// A recipe with several [[data.source]] tables end to end: it trains, reports every source's
// validation loss with the overall loss their weighted mean, `moelab eval` reproduces them,
// resuming in the middle of the mixture is bit-identical, and a changed source file re-tokenizes
// only that file.

#include <gtest/gtest.h>
#include <zstd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/run_files.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

class MixtureRun : public ::testing::Test {
  protected:
    MixtureRun() : corpus_(6000) {
        // "web": the corpus in capitals (another distribution), as zstd-compressed JSONL with the
        // text in "body"; "ood": held-out text, evaluated only.
        fs::create_directories(dir("web"));
        for (const char* split : {"train", "validation", "test"}) {
            std::string text = read_text(dir("corpus") / (std::string(split) + ".txt"));
            for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            std::string lines;
            for (std::size_t begin = 0; begin < text.size();) {
                std::size_t end = text.find("\n\n", begin);
                end = end == std::string::npos ? text.size() : end + 1;
                lines += nlohmann::json{{"body", text.substr(begin, end - begin)}}.dump() + "\n";
                begin = end + 1;
            }
            std::string packed(ZSTD_compressBound(lines.size()), '\0');
            packed.resize(
                ZSTD_compress(packed.data(), packed.size(), lines.data(), lines.size(), 3));
            std::ofstream(dir("web") / (std::string(split) + ".jsonl.zst"), std::ios::binary)
                << packed;
        }
        std::ofstream(dir("ood-validation.txt"))
            << "Out of domain: numbers 1 2 3 4 5 6 7 8 9 10.\n";
        std::ofstream(dir("ood-test.txt")) << "Another held-out text, 11 12 13 14 15 16 17.\n";
        // tiny.toml with the sources in place of data.corpus.
        std::string recipe =
            read_text(fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml");
        recipe.replace(recipe.find("corpus = \"corpus\"\n"), 18, "");
        const std::string sources =
            "\n[[data.source]]\nname = \"plain\"\ndir = \"corpus\"\nweight = 2.0\n"
            "\n[[data.source]]\nname = \"web\"\ndir = \"web\"\ntext_field = \"body\"\n"
            "\n[[data.source]]\nname = \"ood\"\neval_only = true\nvalidation = "
            "\"ood-validation.txt\"\n"
            "test = \"ood-test.txt\"\n";
        recipe.insert(recipe.find("\n[tokenizer]"), sources);
        std::ofstream(dir("mix.toml")) << recipe;
    }

    CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    fs::path dir(const std::string& name) const { return corpus_.root() / name; }

    std::vector<nlohmann::json> records(const std::string& run, const std::string& type) const {
        return metrics_records(dir(run), type);
    }

    TestCorpus corpus_;
};

TEST_F(MixtureRun, TrainsReportsEverySourceAndResumesExactly) {
    const CommandResult whole = moelab("run mix.toml --out whole");
    ASSERT_EQ(whole.exit_code, 0) << whole.err << whole.out;
    const nlohmann::json summary = read_json_file(dir("whole") / "summary.json");
    const nlohmann::json& validation = summary["validation"];
    ASSERT_TRUE(validation.contains("sources")) << validation.dump(2);
    const nlohmann::json& by_source = validation["sources"];
    ASSERT_EQ(by_source.size(), 3u);
    EXPECT_EQ(by_source["ood"]["weight"], 0.0);
    // The overall loss is the mixture-weighted mean of the training sources' losses.
    const double plain = by_source["plain"]["loss"].get<double>();
    const double web = by_source["web"]["loss"].get<double>();
    EXPECT_NE(plain, web);
    EXPECT_NEAR(validation["loss"].get<double>(), (2 * plain + web) / 3, 1e-12);
    EXPECT_TRUE(validation["weighted"].get<bool>());

    // Per-source records in metrics.jsonl beside the overall one.
    int source_records = 0;
    for (const auto& record : records("whole", "eval")) {
        if (record.contains("source")) ++source_records;
    }
    EXPECT_EQ(source_records, 6);  // three sources, validation and test, at the end

    // moelab eval reproduces every number.
    const CommandResult eval = moelab("eval whole --json");
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    const nlohmann::json report = nlohmann::json::parse(eval.out);
    for (const char* name : {"plain", "web", "ood"}) {
        EXPECT_DOUBLE_EQ(report["sources"][name]["loss"].get<double>(),
                         by_source[name]["loss"].get<double>())
            << name;
    }
    EXPECT_DOUBLE_EQ(report["loss"].get<double>(), validation["loss"].get<double>());

    // Stopped after 5 of 12 steps (mid-epoch for both training sources) and resumed.
    const CommandResult first = moelab("run mix.toml --out parts --stop-after 5");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    const CommandResult second = moelab("run mix.toml --out parts --resume");
    ASSERT_EQ(second.exit_code, 0) << second.err;
    const auto a = records("whole", "train"), b = records("parts", "train");
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        for (const char* key : {"loss", "grad_norm", "tokens"}) {
            EXPECT_EQ(a[i][key].dump(), b[i][key].dump()) << key << " at step " << i + 1;
        }
    }
    const nlohmann::json saved =
        read_json_file(dir("parts") / "checkpoints" / "step-4" / "state.json");
    ASSERT_EQ(saved["data"]["sources"].size(), 2u);  // the training sources
    for (const auto& source : saved["data"]["sources"]) {
        EXPECT_EQ(source["epoch"], 0) << source.dump();  // mid-epoch: the stop is inside one
        EXPECT_GT(source["cursor"].get<std::int64_t>(), 0) << source.dump();
    }
    EXPECT_EQ(saved["data"]["sequences"], 4 * 4);  // 4 steps of 4 sequences
}

TEST_F(MixtureRun, AChangedSourceFileRetokenizesOnlyThatFile) {
    const CommandResult cold = moelab("data prepare mix.toml");
    ASSERT_EQ(cold.exit_code, 0) << cold.err;
    auto encoded = [](const std::string& log) {
        int lines = 0;
        for (std::size_t at = log.find("(cached in"); at != std::string::npos;
             at = log.find("(cached in", at + 1)) {
            ++lines;
        }
        return lines;
    };
    EXPECT_EQ(encoded(cold.err), 8) << cold.err;  // 3 + 3 + 2 files
    std::ofstream(dir("ood-validation.txt"), std::ios::app) << "\nOne more held-out line.\n";
    const CommandResult warm = moelab("data prepare mix.toml");
    ASSERT_EQ(warm.exit_code, 0) << warm.err;
    EXPECT_EQ(encoded(warm.err), 1) << warm.err;
    EXPECT_NE(warm.err.find("ood/validation: 2 documents"), std::string::npos) << warm.err;

    // A changed training file retrains the tokenizer; the bytes tokenizer comes out the same, so
    // its token caches stay valid and again only the changed file is encoded.
    std::ofstream(dir("corpus") / "train.txt", std::ios::app) << "\nA new training document.\n";
    const CommandResult retrained = moelab("data prepare mix.toml");
    ASSERT_EQ(retrained.exit_code, 0) << retrained.err;
    EXPECT_NE(retrained.err.find("tokenizer 'bytes': training on"), std::string::npos)
        << retrained.err;
    EXPECT_EQ(encoded(retrained.err), 1) << retrained.err;
    EXPECT_NE(retrained.err.find("plain/train: "), std::string::npos) << retrained.err;

    const CommandResult stats = moelab("data stats mix.toml --json");
    ASSERT_EQ(stats.exit_code, 0) << stats.err;
    const nlohmann::json table = nlohmann::json::parse(stats.out);
    EXPECT_EQ(table["splits"].size(), 8u);
    EXPECT_EQ(table["sources"][2]["weight"], 0.0);
}

TEST_F(MixtureRun, BadSourcesAreConfigurationErrors) {
    std::string recipe = read_text(dir("mix.toml"));
    recipe.replace(recipe.find("weight = 2.0"), 12, "weight = 0.0");
    std::ofstream(dir("zero.toml")) << recipe;
    const CommandResult zero = moelab("check zero.toml");
    EXPECT_EQ(zero.exit_code, 2);
    EXPECT_NE(zero.err.find("data.source[0].weight: must be a finite number > 0, got 0"),
              std::string::npos)
        << zero.err;

    recipe = read_text(dir("mix.toml"));
    recipe.replace(recipe.find("text_field = \"body\""), 19, "text_field = \"text\"");
    std::ofstream(dir("field.toml")) << recipe;
    const CommandResult field = moelab("run field.toml --out f");
    EXPECT_EQ(field.exit_code, 1);
    EXPECT_NE(field.err.find("train.jsonl.zst: line 1: no field \"text\""), std::string::npos)
        << field.err;
}

// The shipped mixture recipe, from the repository root where tools/setup.sh wrote its sources:
// every source resolves, and the printed recipe checks back to the same text.
TEST(ShippedMixture, BrownGenresChecksWithItsThreeSources) {
    const std::string root = shell_quote(MOELAB_SOURCE_DIR);
    const std::string moelab = shell_quote(MOELAB_BINARY);
    ASSERT_TRUE(fs::exists(fs::path(MOELAB_SOURCE_DIR) / "data" / "nlp-corpus" / "test.txt"))
        << "data/nlp-corpus is missing: run `bash tools/setup.sh` first";
    const CommandResult first =
        run_command("cd " + root + " && " + moelab + " check recipes/data/brown-genres.toml");
    ASSERT_EQ(first.exit_code, 0) << first.err;
    std::size_t tables = 0;
    for (std::size_t at = first.out.find("[[data.source]]"); at != std::string::npos;
         at = first.out.find("[[data.source]]", at + 1)) {
        ++tables;
    }
    EXPECT_EQ(tables, 3u) << first.out;
    EXPECT_NE(first.out.find("eval_only = true"), std::string::npos) << first.out;
    EXPECT_EQ(first.out.find("corpus = "), std::string::npos) << first.out;
    const TempDir dir;
    std::ofstream(dir / "resolved.toml") << first.out;
    const CommandResult second = run_command("cd " + root + " && " + moelab + " check " +
                                             shell_quote((dir / "resolved.toml").string()));
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_EQ(first.out.substr(first.out.find('\n')), second.out.substr(second.out.find('\n')));
}

}  // namespace
}  // namespace moelab::tests
