// [[data.source]] in recipes: files found by name in a source's directory or named one by one,
// formats and compression from the extension, evaluation-only sources, and every mistake reported
// at the recipe line with what was expected.

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/config/recipe_loader.h"
#include "core/config/recipe_printer.h"
#include "core/data/corpus.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

class Sources : public ::testing::Test {
  protected:
    Sources() {
        fs::create_directories(dir_ / "books");
        fs::create_directories(dir_ / "web");
        for (const char* split : {"train.txt", "validation.txt", "test.txt"}) {
            std::ofstream(dir_ / "books" / split) << "a document\n";
        }
        std::ofstream(dir_ / "web" / "train.jsonl.zst") << "compressed bytes";
        std::ofstream(dir_ / "web" / "validation.ndjson") << "{\"body\": \"x\"}\n";
        std::ofstream(dir_ / "web" / "test.jsonl.gz") << "compressed bytes";
        std::ofstream(dir_ / "ood.txt") << "held out\n";
    }

    // A recipe with `data` as its [data] section and what follows.
    fs::path recipe(const std::string& data) const {
        const fs::path file = dir_ / "r.toml";
        std::ofstream(file) << "[data]\ncache_dir = \"" << (dir_ / "cache").string() << "\"\n"
                            << data << "\n[tokenizer]\nplugin = \"bytes\"\n"
                            << "[attention]\nplugin = \"rope\"\n";
        return file;
    }

    std::string path(const std::string& child) const { return (dir_ / child).string(); }

    // The first issue, formatted, of loading and resolving the sources of `data`.
    std::string error_of(const std::string& data) const {
        try {
            corpus_sources(load_recipe(recipe(data)));
        } catch (const ConfigError& error) {
            return format_issue(error.issues().at(0));
        }
        return "no error";
    }

    tests::TempDir dir_;
};

TEST_F(Sources, FilesAreFoundByNameAndDescribedByExtension) {
    const Recipe loaded = load_recipe(recipe(
        "[[data.source]]\nname = \"books\"\ndir = \"" + path("books") + "\"\nweight = 3.0\n" +
        "[[data.source]]\nname = \"web\"\ndir = \"" + path("web") + "\"\ntext_field = \"body\"\n" +
        "[[data.source]]\nname = \"ood\"\neval_only = true\nvalidation = \"" + path("ood.txt") +
        "\"\ntest = \"" + path("ood.txt") + "\"\n"));
    const std::vector<CorpusSource> sources = corpus_sources(loaded);
    ASSERT_EQ(sources.size(), 3u);
    EXPECT_EQ(sources[0].name, "books");
    EXPECT_EQ(sources[0].weight, 3.0);
    EXPECT_TRUE(sources[0].file(Split::kTrain).plain_text());
    EXPECT_EQ(sources[1].weight, 1.0);  // the default
    const CorpusFile& web_train = sources[1].file(Split::kTrain);
    EXPECT_EQ(web_train.format, DocumentFormat::kJsonl);
    EXPECT_EQ(web_train.compression, Compression::kZstd);
    EXPECT_EQ(web_train.text_field, "body");
    EXPECT_EQ(web_train.decoding_tag(), "jsonl:body+zstd");
    EXPECT_EQ(sources[1].file(Split::kTest).compression, Compression::kGzip);
    EXPECT_EQ(sources[1].file(Split::kValidation).format, DocumentFormat::kJsonl);
    EXPECT_FALSE(sources[2].training());
    EXPECT_EQ(sources[2].weight, 0.0);

    // The printed recipe reads back to the same sources (and writes no data.corpus beside them).
    const std::string printed = format_recipe(loaded, {});
    EXPECT_EQ(printed.find("corpus ="), std::string::npos) << printed;
    const fs::path again = dir_ / "printed.toml";
    std::ofstream(again) << printed;
    const Recipe reloaded = load_recipe(again);
    ASSERT_EQ(reloaded.data.sources.size(), 3u);
    EXPECT_EQ(reloaded.data.sources[1].text_field, "body");
    EXPECT_EQ(reloaded.data.sources[0].weight, 3.0);
}

TEST_F(Sources, MistakesAreReportedAtTheRecipeLine) {
    const std::string books =
        "[[data.source]]\nname = \"books\"\ndir = \"" + path("books") + "\"\n";
    EXPECT_NE(error_of(books + "weight = 0.0\n")
                  .find("r.toml:6:10: data.source[0].weight: must be a finite number > 0"),
              std::string::npos)
        << error_of(books + "weight = 0.0\n");
    EXPECT_NE(error_of(books + "weight = -2.0\n").find("> 0, got -2"), std::string::npos);
    EXPECT_NE(error_of(books + "weight = inf\n").find("must be a finite number > 0, got inf"),
              std::string::npos)
        << error_of(books + "weight = inf\n");
    EXPECT_NE(error_of(books + books).find("data.source[1].name: \"books\" names two sources"),
              std::string::npos)
        << error_of(books + books);
    EXPECT_NE(error_of("corpus = \"x\"\n" + books)
                  .find("data.corpus: data.corpus and "
                        "[[data.source]] both name the corpus"),
              std::string::npos);
    EXPECT_NE(error_of("[[data.source]]\nname = \"a b\"\ndir = \"" + path("books") + "\"\n")
                  .find("expected a name of letters"),
              std::string::npos);
    EXPECT_NE(error_of("[[data.source]]\nname = \"x\"\ndir = \"" + path("nowhere") + "\"\n")
                  .find("data.source[0].dir: source directory"),
              std::string::npos);
    // Evaluation-only is said, never inferred: a source without a train file is an error unless
    // eval_only = true, which takes no weight and no train file; and a mixture needs something to
    // train on.
    const std::string ood = "[[data.source]]\nname = \"ood\"\neval_only = true\nvalidation = \"" +
                            path("ood.txt") + "\"\ntest = \"" + path("ood.txt") + "\"\n";
    EXPECT_NE(error_of(books + ood + "weight = 1.0\n").find("takes no weight"), std::string::npos);
    EXPECT_NE(
        error_of(books + ood + "train = \"" + path("ood.txt") + "\"\n").find("takes no train"),
        std::string::npos);
    EXPECT_NE(error_of(ood).find("every source is eval_only"), std::string::npos);
    fs::create_directories(dir_ / "evaluated");
    std::ofstream(dir_ / "evaluated" / "validation.txt") << "v\n";
    std::ofstream(dir_ / "evaluated" / "test.txt") << "t\n";
    const std::string no_train =
        books + "[[data.source]]\nname = \"e\"\ndir = \"" + path("evaluated") + "\"\n";
    EXPECT_NE(error_of(no_train).find("data.source[1].dir: no train file in"), std::string::npos)
        << error_of(no_train);
    EXPECT_NE(error_of(no_train).find("eval_only = true"), std::string::npos);
    EXPECT_EQ(error_of(no_train + "eval_only = true\n"), "no error");
    EXPECT_NE(error_of("[[data.source]]\nname = \"x\"\ntrain = \"" + path("ood.txt") + "\"\n")
                  .find("data.source[0]: no validation file"),
              std::string::npos);
    // Two candidates for one split are ambiguous, never a silent choice.
    std::ofstream(dir_ / "books" / "train.jsonl") << "{}\n";
    EXPECT_NE(error_of(books).find("holds 2 train files"), std::string::npos) << error_of(books);
    std::ofstream(dir_ / "empty.txt").flush();  // exists, 0 bytes
    ASSERT_TRUE(fs::exists(dir_ / "empty.txt"));
    EXPECT_NE(
        error_of("[[data.source]]\nname = \"x\"\ntrain = \"" + path("empty.txt") + "\"\n" +
                 "validation = \"" + path("ood.txt") + "\"\ntest = \"" + path("ood.txt") + "\"\n")
            .find("data.source[0].train: train file"),
        std::string::npos);
}

// The including file wins, as for any key: sources replace a base's corpus and a corpus replaces
// a base's sources.
TEST_F(Sources, TheIncludingFileWinsBetweenCorpusAndSources) {
    const fs::path base = recipe("corpus = \"" + path("books") + "\"\n");
    fs::rename(base, dir_ / "base.toml");
    std::ofstream(dir_ / "mix.toml") << "extends = \"base.toml\"\n[[data.source]]\nname = \"web\"\n"
                                     << "dir = \"" << path("web") << "\"\n";
    const Recipe mix = load_recipe(dir_ / "mix.toml");
    ASSERT_EQ(mix.data.sources.size(), 1u);
    EXPECT_EQ(corpus_sources(mix)[0].name, "web");

    std::ofstream(dir_ / "back.toml")
        << "extends = \"mix.toml\"\n[data]\ncorpus = \"" << path("books") << "\"\n";
    const Recipe back = load_recipe(dir_ / "back.toml");
    EXPECT_TRUE(back.data.sources.empty());
    EXPECT_EQ(corpus_sources(back)[0].name, "books");
    // Nearer wins down the chain too: a recipe that extends the mixture (which extends the
    // corpus) has the mixture's sources.
    std::ofstream(dir_ / "longer.toml") << "extends = \"mix.toml\"\n[train]\nsteps = 500\n";
    EXPECT_EQ(load_recipe(dir_ / "longer.toml").data.sources.size(), 1u);
    // --set data.corpus is the command line's word: it wins over the recipe's sources.
    EXPECT_TRUE(load_recipe(dir_ / "mix.toml", {"data.corpus=\"" + path("books") + "\""})
                    .data.sources.empty());
}

}  // namespace
}  // namespace moelab::core
