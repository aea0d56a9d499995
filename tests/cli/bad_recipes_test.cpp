// Every file in tests/recipes/bad/ is a broken recipe whose header says what `moelab check` must
// report:
//   # expect: <text that must appear in stderr>        (one or more)
//   # expect-at: <line>:<column>                       (the error points into this file there)
//   # set: key=value                                   (optional --set arguments)
// Each must exit with code 2, never crash, and print the expected text.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

struct BadRecipe {
    fs::path file;
    std::vector<std::string> expected;
    std::string location;  // "line:column"
    std::vector<std::string> overrides;
};

std::vector<BadRecipe> bad_recipes() {
    std::vector<BadRecipe> recipes;
    const fs::path dir = fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "bad";
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".toml") continue;
        BadRecipe recipe{entry.path(), {}, "", {}};
        std::ifstream in(entry.path());
        for (std::string line; std::getline(in, line);) {
            auto value_of = [&](const std::string& tag) -> std::optional<std::string> {
                if (line.rfind(tag, 0) != 0) return std::nullopt;
                return line.substr(tag.size());
            };
            if (auto v = value_of("# expect: ")) recipe.expected.push_back(*v);
            if (auto v = value_of("# expect-at: ")) recipe.location = *v;
            if (auto v = value_of("# set: ")) recipe.overrides.push_back(*v);
        }
        recipes.push_back(std::move(recipe));
    }
    std::sort(recipes.begin(), recipes.end(),
              [](const BadRecipe& a, const BadRecipe& b) { return a.file < b.file; });
    return recipes;
}

void PrintTo(const BadRecipe& recipe, std::ostream* out) { *out << recipe.file.filename(); }

class BadRecipeTest : public ::testing::TestWithParam<BadRecipe> {};

TEST_P(BadRecipeTest, ExitsWithTwoAndExplains) {
    const BadRecipe& recipe = GetParam();
    ASSERT_FALSE(recipe.expected.empty()) << recipe.file << " has no '# expect:' line";
    const TestCorpus corpus;
    std::string command = "cd " + shell_quote(corpus.root().string()) + " && " +
                          shell_quote(MOELAB_BINARY) + " check " +
                          shell_quote(recipe.file.string());
    for (const std::string& set : recipe.overrides) command += " --set " + shell_quote(set);
    const CommandResult result = run_command(command);
    EXPECT_EQ(result.signal, 0) << "crashed: " << result.err;
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_TRUE(result.out.empty()) << "nothing on stdout for a bad recipe: " << result.out;
    for (const std::string& text : recipe.expected) {
        EXPECT_NE(result.err.find(text), std::string::npos)
            << "expected \"" << text << "\" in:\n" << result.err;
    }
    if (!recipe.location.empty()) {
        const std::string where = recipe.file.filename().string() + ":" + recipe.location + ":";
        EXPECT_NE(result.err.find(where), std::string::npos)
            << "expected the location " << where << " in:\n" << result.err;
    }
}

INSTANTIATE_TEST_SUITE_P(Recipes, BadRecipeTest, ::testing::ValuesIn(bad_recipes()),
                         [](const ::testing::TestParamInfo<BadRecipe>& info) {
                             std::string name = info.param.file.stem().string();
                             for (char& c : name) {
                                 if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                             }
                             return name;
                         });

TEST(BadRecipeSet, HasAtLeastTwentyDistinctCases) { EXPECT_GE(bad_recipes().size(), 20u); }

}  // namespace
}  // namespace moelab::tests
