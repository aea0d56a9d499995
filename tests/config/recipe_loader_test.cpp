// Recipe loading: defaults, extends chains, overrides, plugin-table switching, plugin option
// validation and printing. Error reporting of bad recipes is covered end to end by
// tests/cli/bad_recipes_test.cpp.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/config/recipe_loader.h"
#include "core/config/recipe_printer.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

class RecipeFiles : public ::testing::Test {
  protected:
    fs::path write(const std::string& name, const std::string& text) {
        const fs::path file = dir_ / name;
        fs::create_directories(file.parent_path());
        std::ofstream(file) << text;
        return file;
    }

    tests::TempDir dir_{"moelab-recipes"};
};

constexpr char kMinimal[] = R"(
[tokenizer]
plugin = "bytes"
[attention]
plugin = "rope"
)";

TEST_F(RecipeFiles, DefaultsComeFromTheOptionDeclarations) {
    const Recipe recipe = load_recipe(write("minimal.toml", kMinimal));
    EXPECT_EQ(recipe.name, "minimal");
    EXPECT_EQ(recipe.model.layers, ModelOptions{}.layers);
    EXPECT_EQ(recipe.train.lr_peak, TrainOptions{}.lr_peak);
    EXPECT_EQ(recipe.model.ffn, FfnKind::kDense);
    EXPECT_FALSE(recipe.router.has_value());
    EXPECT_EQ(recipe.tokenizer.plugin, "bytes");
}

TEST_F(RecipeFiles, ExtendsMergesTablesAndTheIncludingFileWins) {
    write("base/common.toml", "seed = 5\n" + std::string(kMinimal) + R"(
[train]
steps = 100
lr_peak = 0.01
[model]
layers = 6
)");
    const fs::path child = write("child.toml", R"(
extends = "base/common.toml"
[train]
steps = 200
)");
    const Recipe recipe = load_recipe(child);
    EXPECT_EQ(recipe.seed, 5);
    EXPECT_EQ(recipe.train.steps, 200);
    EXPECT_DOUBLE_EQ(recipe.train.lr_peak, 0.01);
    EXPECT_EQ(recipe.model.layers, 6);
    EXPECT_EQ(recipe.name, "child");
    // Locations point at the file that set each key.
    EXPECT_EQ(fs::path(recipe.location_of("train.steps").file).filename(), "child.toml");
    EXPECT_EQ(fs::path(recipe.location_of("model.layers").file).filename(), "common.toml");
    EXPECT_EQ(recipe.location_of("train.steps").line, 4);
    EXPECT_EQ(recipe.location_of("seed").line, 1);
}

TEST_F(RecipeFiles, PluginSearchPathsResolveAgainstTheFileThatSetsThemAndMustExist) {
    fs::create_directories(dir_ / "base" / "my-plugins");
    write("base/common.toml",
          std::string(kMinimal) + "[plugins]\nsearch_path = [\"my-plugins\"]\n");
    const Recipe recipe = load_recipe(write("child.toml", "extends = \"base/common.toml\"\n"));
    ASSERT_EQ(recipe.plugins.search_path.size(), 1u);
    EXPECT_EQ(fs::path(recipe.plugins.search_path[0]),
              (dir_ / "base" / "my-plugins").lexically_normal());

    const fs::path missing =
        write("missing.toml", std::string(kMinimal) + "[plugins]\nsearch_path = [\"nowhere\"]\n");
    try {
        load_recipe(missing);
        FAIL() << "a missing plugin directory was accepted";
    } catch (const ConfigError& error) {
        const std::string text = format_issue(error.issues().at(0));
        EXPECT_NE(text.find("missing.toml:7:"), std::string::npos) << text;
        EXPECT_NE(text.find("plugins.search_path: '" + (dir_ / "nowhere").string() +
                            "' is not a directory: it does not exist"),
                  std::string::npos)
            << text;
    }
}

TEST_F(RecipeFiles, SwitchingPluginDropsTheBasePluginsOptions) {
    write("base.toml", std::string(kMinimal) + R"(
[model]
ffn = "moe"
[router]
plugin = "topk"
k = 3
)");
    const Recipe merged = load_recipe(write("same.toml", R"(
extends = "base.toml"
[router]
balance_coef = 0.1
)"));
    ASSERT_TRUE(merged.router.has_value());
    const Recipe switched = load_recipe(write("other.toml", R"(
extends = "base.toml"
[router]
plugin = "other-router"
)"));
    ASSERT_TRUE(switched.router.has_value());
    EXPECT_EQ(switched.router->plugin, "other-router");

    sdk::ParamSchema schema;
    schema.add_int("k", 2, "experts per token");
    schema.add_float("balance_coef", 0.01, "coefficient");
    // Same plugin: k from the base and balance_coef from the child both arrive.
    const sdk::Params params = resolve_plugin_params(*merged.router, schema);
    EXPECT_EQ(params.get_int("k"), 3);
    EXPECT_DOUBLE_EQ(params.get_float("balance_coef"), 0.1);
    // Other plugin: the base's k is gone, the default applies.
    EXPECT_EQ(resolve_plugin_params(*switched.router, schema).get_int("k"), 2);
}

TEST_F(RecipeFiles, OverridesApplyInOrderAndParseTomlValues) {
    const fs::path file = write("r.toml", kMinimal);
    // Plugin directories must exist; absolute ones are taken as they are.
    const std::string a = (dir_ / "a").string(), b = (dir_ / "b").string();
    fs::create_directories(a);
    fs::create_directories(b);
    const Recipe recipe =
        load_recipe(file, {"train.steps=42", "train.device=cpu", "model.tie_embeddings=false",
                           "train.lr_peak=1e-4", "train.lr_min=0", "train.warmup_steps=5",
                           "plugins.search_path=[\"" + a + "\", \"" + b + "\"]", "train.steps=43"});
    EXPECT_EQ(recipe.train.steps, 43);
    EXPECT_EQ(recipe.train.device, DeviceChoice::kCpu);  // bare word taken as a string
    EXPECT_FALSE(recipe.model.tie_embeddings);
    EXPECT_DOUBLE_EQ(recipe.train.lr_peak, 1e-4);
    EXPECT_EQ(recipe.plugins.search_path, (std::vector<std::string>{a, b}));
}

TEST_F(RecipeFiles, OverridingThePluginFirstKeepsLaterPluginOptions) {
    write("base.toml", std::string(kMinimal) + R"(
[model]
ffn = "moe"
[router]
plugin = "topk"
k = 3
)");
    const fs::path file = write("r.toml", "extends = \"base.toml\"\n");
    // Given in the "wrong" order, the plugin switch still happens first.
    const Recipe recipe = load_recipe(file, {"router.p=0.5", "router.plugin=topp"});
    sdk::ParamSchema schema;
    schema.add_float("p", 0.4, "threshold");
    schema.add_int("k", 2, "unused");
    const sdk::Params params = resolve_plugin_params(*recipe.router, schema);
    EXPECT_DOUBLE_EQ(params.get_float("p"), 0.5);
    EXPECT_EQ(params.get_int("k"), 2);
}

TEST_F(RecipeFiles, PluginOptionErrorsNameTheKeyAndLocation) {
    const fs::path file = write("r.toml", std::string(kMinimal) + R"(
[model]
ffn = "moe"
[router]
plugin = "topk"
temprature = 0.5
)");
    const Recipe recipe = load_recipe(file);
    sdk::ParamSchema schema;
    schema.add_float("temperature", 1.0, "softmax temperature").between(0.01, 100);
    try {
        resolve_plugin_params(*recipe.router, schema);
        FAIL() << "expected a ConfigError";
    } catch (const ConfigError& error) {
        ASSERT_EQ(error.issues().size(), 1u);
        const ConfigIssue& issue = error.issues()[0];
        EXPECT_EQ(issue.key, "router.temprature");
        EXPECT_EQ(issue.location.line, 11);
        EXPECT_EQ(issue.location.column, 1);
        EXPECT_NE(issue.message.find("did you mean 'temperature'?"), std::string::npos);
    }
}

TEST_F(RecipeFiles, PrintedRecipeLoadsBackToTheSameOptions) {
    const fs::path file = write("r.toml", R"(description = "quote \" and backslash \\ survive")" +
                                              std::string(kMinimal) + R"(
[model]
layers = 3
norm_eps = 1e-6
[train]
lr_peak = 0.000123456789
lr_min = 0.0
)");
    const Recipe recipe = load_recipe(file);
    const std::string printed = format_recipe(recipe, {});
    const Recipe reloaded = load_recipe(write("printed.toml", printed));
    EXPECT_EQ(recipe.description, "quote \" and backslash \\ survive");
    EXPECT_EQ(reloaded.description, recipe.description);
    EXPECT_EQ(reloaded.model.layers, 3);
    EXPECT_DOUBLE_EQ(reloaded.model.norm_eps, 1e-6);
    EXPECT_DOUBLE_EQ(reloaded.train.lr_peak, 0.000123456789);  // shortest round-trip formatting
    const std::string reprinted = format_recipe(reloaded, {});
    EXPECT_EQ(reprinted.substr(reprinted.find('\n')), printed.substr(printed.find('\n')));
}

// [router] shared_gate moved to [moe] shared_gate in SDK 4 (the host mixes shared experts for
// every gate router): the old spelling keeps working with a deprecation naming the new key.
TEST_F(RecipeFiles, DeprecatedRouterSharedGateMovesToMoeWithAWarning) {
    const std::string moe = std::string(kMinimal) + R"(
[model]
ffn = "moe"
[moe]
shared_experts = 1
[router]
plugin = "topk"
k = 2
shared_gate = true
)";
    const Recipe recipe = load_recipe(write("old.toml", moe));
    EXPECT_TRUE(recipe.moe.shared_gate);
    ASSERT_EQ(recipe.deprecations.size(), 1u);
    const std::string warning = format_issue(recipe.deprecations[0]);
    EXPECT_NE(warning.find("old.toml:14:"), std::string::npos) << warning;
    EXPECT_NE(warning.find("router.shared_gate"), std::string::npos) << warning;
    EXPECT_NE(warning.find("write moe.shared_gate instead"), std::string::npos) << warning;

    // Written both ways: an error, not a silent choice.
    try {
        load_recipe(write("both.toml", moe), {"moe.shared_gate=false"});
        FAIL() << "both spellings were accepted";
    } catch (const ConfigError& error) {
        EXPECT_NE(std::string(error.what()).find("keep only moe.shared_gate"), std::string::npos)
            << error.what();
    }
}

TEST_F(RecipeFiles, SharedGateNeedsSharedExperts) {
    try {
        load_recipe(write("gate.toml", std::string(kMinimal) + R"(
[model]
ffn = "moe"
[moe]
shared_gate = true
[router]
plugin = "topk"
)"));
        FAIL() << "a shared gate without shared experts was accepted";
    } catch (const ConfigError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("gate.toml:10:"), std::string::npos) << message;
        EXPECT_NE(message.find("moe.shared_experts >= 1"), std::string::npos) << message;
    }
}

TEST(FormatParamValue, WritesTomlLiterals) {
    EXPECT_EQ(format_param_value(sdk::ParamValue(true)), "true");
    EXPECT_EQ(format_param_value(sdk::ParamValue(std::int64_t{-3})), "-3");
    EXPECT_EQ(format_param_value(sdk::ParamValue(2.0)), "2.0");
    EXPECT_EQ(format_param_value(sdk::ParamValue(0.1)), "0.1");
    EXPECT_EQ(format_param_value(sdk::ParamValue(std::string("a\"b"))), "\"a\\\"b\"");
    EXPECT_EQ(format_param_value(sdk::ParamValue(std::vector<std::int64_t>{1, 2})), "[1, 2]");
    EXPECT_EQ(format_param_value(sdk::ParamValue(std::vector<double>{0.5})), "[0.5]");
}

}  // namespace
}  // namespace moelab::core
