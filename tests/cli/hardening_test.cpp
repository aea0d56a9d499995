// Regression tests for what a fuzzing campaign found outside the recipe loader's happy path:
// non-files as recipes, unbounded reads, silent device fallbacks, library wording in errors,
// floods of errors, echoes of huge or multi-line values, junk on the plugin path, evaluation that
// needed more than the weights. Each runs the real binary; FIFO cases run under `timeout` so that
// a regression fails instead of hanging.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

std::string tiny_recipe_text() {
    std::ifstream in(fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::size_t line_count(const std::string& text) {
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

class Hardening : public ::testing::Test {
  protected:
    Hardening() : corpus_(2000) { write("tiny.toml", tiny_recipe_text()); }

    // moelab with `arguments` in the corpus directory, killed after 60 s.
    CommandResult moelab(const std::string& arguments, const std::string& environment = "") {
        return run_command("cd " + shell_quote(root().string()) + " && " + environment +
                           " timeout 60 " + shell_quote(MOELAB_BINARY) + " " + arguments);
    }

    fs::path write(const std::string& name, const std::string& text) {
        std::ofstream(root() / name, std::ios::binary) << text;
        return root() / name;
    }

    const fs::path& root() const { return corpus_.root(); }

    TestCorpus corpus_;
};

#define EXPECT_CONTAINS(haystack, needle) \
    EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST_F(Hardening, ARecipeThatIsNotARegularFileIsRefusedByName) {
    CommandResult result = moelab("check /dev/zero");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err,
                    "/dev/zero: is a character device, not a regular file "
                    "(expected a recipe file, TOML)");
    result = moelab("check " + shell_quote(root().string()));
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, root().string() + ": is a directory");
    result = moelab("check ''");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "the recipe path is empty");
    EXPECT_EQ(result.err.find("<recipe>"), std::string::npos) << result.err;
}

TEST_F(Hardening, ExtendsOfADeviceOrAFifoIsRefusedWithoutReadingIt) {
    write("zero.toml", "extends = \"/dev/zero\"\n");
    CommandResult result = moelab("check zero.toml");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "zero.toml:1:11: extends: '/dev/zero' is a character device");

    ASSERT_EQ(::mkfifo((root() / "pipe.toml").c_str(), 0600), 0);
    write("fifo.toml", "extends = \"pipe.toml\"\n");
    result = moelab("check fifo.toml");
    EXPECT_EQ(result.exit_code, 2) << "124 means it hung on the FIFO";
    EXPECT_CONTAINS(result.err, "is a FIFO (named pipe), not a regular file");
    result = moelab("check pipe.toml");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "is a FIFO");
}

TEST_F(Hardening, AnOverlongExtendsPathSaysSoInPlainWords) {
    write("long.toml", "extends = \"" + std::string(300, 'a') + ".toml\"\n");
    const CommandResult result = moelab("check long.toml");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "long.toml:1:11: extends:");
    EXPECT_CONTAINS(result.err, std::strerror(ENAMETOOLONG));
    EXPECT_CONTAINS(result.err, "(305 characters)");
    EXPECT_EQ(result.err.find("filesystem error"), std::string::npos) << result.err;
}

TEST_F(Hardening, PathsThatCannotServeAreCaughtByCheck) {
    CommandResult result = moelab("check tiny.toml --set init.from=/dev/zero");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "init.from: no checkpoint at /dev/zero");
    result = moelab("check tiny.toml --set data.cache_dir=/proc/x");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "data.cache_dir: cannot create the cache directory '/proc/x'");
    write("file", "not a directory");
    result = moelab("check tiny.toml --set data.cache_dir=file/cache");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "data.cache_dir: 'file' is not a directory");
}

TEST_F(Hardening, Bfloat16WithAnAutoDeviceThatResolvesToTheCpuIsAnError) {
    const CommandResult result = moelab("check tiny.toml --set model.dtype=bfloat16");
    if (result.exit_code == 0 && result.err.find("(device cuda)") != std::string::npos) {
        GTEST_SKIP() << "a CUDA device is visible: auto resolves to cuda";
    }
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err,
                    "model.dtype: bfloat16 autocast is supported on CUDA only, and "
                    "train.device = \"auto\" resolved to \"cpu\"");
    // What check prints is the recipe as resolved: the device, not "auto".
    const CommandResult ok = moelab("check tiny.toml");
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_CONTAINS(ok.out, "device = \"cpu\"");
}

TEST_F(Hardening, SetErrorsNameTheArgument) {
    CommandResult result = moelab("check tiny.toml --set nosuch=1");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "--set nosuch=1: nosuch: unknown key");
    result = moelab("check tiny.toml --set train.nosuch=1");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "--set train.nosuch=1: train.nosuch: unknown key");
}

TEST_F(Hardening, AFloodOfErrorsIsCapped) {
    std::string text = tiny_recipe_text();
    text.insert(text.find("[data]") + 7, [] {
        std::string keys;
        for (int i = 0; i < 200000; ++i) keys += "k" + std::to_string(i) + "=1\n";
        return keys;
    }());
    write("flood.toml", text);
    const CommandResult result = moelab("check flood.toml");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_LE(line_count(result.err), 51u);
    EXPECT_CONTAINS(result.err, "... and 199950 more errors (the first 50 are shown)");
}

TEST_F(Hardening, EchoedValuesAreEscapedAndShortened) {
    CommandResult result = moelab("check tiny.toml --set 'model.ffn=\"\"\"first\nsecond\"\"\"'");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_EQ(line_count(result.err), 1u) << result.err;
    EXPECT_CONTAINS(result.err, "first\\nsecond");

    std::string text = tiny_recipe_text();
    text.replace(text.find("ffn = \"moe\""), 11, "ffn = \"" + std::string(70000, 'x') + "\"");
    write("huge.toml", text);
    result = moelab("check huge.toml");
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_EQ(line_count(result.err), 1u);
    EXPECT_LT(result.err.size(), 1000u);
    EXPECT_CONTAINS(result.err, "…(70000 characters)…");
}

TEST_F(Hardening, JunkOnThePluginPathIsAWarningUnlessTheRecipeNeedsIt) {
    fs::create_directories(root() / "junk");
    write("junk/moelab-plugin-junk.so", "this is not a shared library\n");
    const std::string env = "MOELAB_PLUGIN_PATH=junk";
    CommandResult result = moelab("check tiny.toml", env);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_CONTAINS(result.err, "warning: 1 plugin library on the search path could not be loaded");
    EXPECT_CONTAINS(
        result.err,
        "moelab-plugin-junk.so: cannot be loaded: it is not a shared library (no ELF header)");
    EXPECT_EQ(result.err.find("shared_library::load"), std::string::npos) << result.err;

    result = moelab("check tiny.toml --set router.plugin=junk", env);
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_CONTAINS(result.err, "no router component named 'junk'");
    EXPECT_CONTAINS(result.err, "1 plugin libraries were refused");

    result = moelab("plugins", env);
    EXPECT_EQ(result.exit_code, 2) << "listing plugins reports the broken environment";
}

TEST_F(Hardening, EvalNeedsOnlyTheWeightsAndSurvivesADamagedSummary) {
    const CommandResult run = moelab(
        "run tiny.toml --out r --set train.steps=4 "
        "--set train.checkpoint_every=4 --set train.log_every=2");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const fs::path step = root() / "r" / "checkpoints" / "step-4";
    ASSERT_TRUE(fs::exists(step / "model.safetensors"));
    const CommandResult clean = moelab("eval r --json");
    ASSERT_EQ(clean.exit_code, 0) << clean.err;

    fs::remove(step / "optimizer.safetensors");
    write("r/summary.json", "{\"steps\": \"four\"");
    const CommandResult result = moelab("eval r --json");
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_CONTAINS(result.err,
                    "summary.json: not valid JSON; no comparison with the run's summary");
    nlohmann::json with_summary = nlohmann::json::parse(clean.out);
    with_summary.erase("summary_ppl");
    EXPECT_EQ(nlohmann::json::parse(result.out), with_summary)
        << "the same evaluation, without the summary comparison";

    write("r/checkpoints/step-4/state.json",
          "{\"format\": \"moelab-checkpoint-1\", \"step\": [4]}");
    const CommandResult damaged = moelab("eval r");
    EXPECT_EQ(damaged.exit_code, 1);
    EXPECT_CONTAINS(damaged.err, "state.json: step: expected a non-negative integer, got an array");
    EXPECT_EQ(damaged.err.find("json.exception"), std::string::npos) << damaged.err;
}

TEST_F(Hardening, ADamagedRunTokenizerIsNamedInOneLineWithThePluginsReason) {
    const CommandResult run = moelab(
        "run tiny.toml --out r --set train.steps=2 --set train.checkpoint_every=2 "
        "--set train.log_every=2");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    write("r/tokenizer.txt", "{\"tokenizer\": \"words\"}");

    // Said once: the file, the plugin's own words, which component read it and from where; not
    // "plugin ...: loading tokenizer 'bytes' failed: ..." around it.
    const std::string expected =
        "r/tokenizer.txt: not a serialized bytes tokenizer (read as a 'bytes' tokenizer by plugin "
        "'bytes' (";
    for (const std::string command : {"eval r", "run tiny.toml --out r --resume"}) {
        const CommandResult result = moelab(command);
        EXPECT_EQ(result.exit_code, 1) << command << "\n" << result.err;
        EXPECT_CONTAINS(result.err, expected);
        EXPECT_EQ(result.err.find("loading tokenizer"), std::string::npos) << result.err;
    }
    const CommandResult encode = moelab("tokenizer encode r/tokenizer.txt tiny.toml --as bytes");
    EXPECT_EQ(encode.exit_code, 2) << "the file is the command's own argument: a usage error";
    EXPECT_CONTAINS(encode.err, expected);
}

}  // namespace
}  // namespace moelab::tests
