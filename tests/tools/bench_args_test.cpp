// The benchmarks' command lines (tools/bench/bench_args.h): hand-worked cases, and the built
// benchmarks answering --help and bad arguments without running or crashing.

#include "tools/bench/bench_args.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/subprocess.h"

namespace moelab::bench {
namespace {

BenchArgs parse(std::vector<const char*> argv, int positionals) {
    argv.insert(argv.begin(), "bench");
    return BenchArgs(static_cast<int>(argv.size()), argv.data(), positionals,
                     {"--rounds", "--set", "--device"});
}

std::string usage_error(std::vector<const char*> argv, int positionals) {
    try {
        parse(std::move(argv), positionals);
    } catch (const BenchUsageError& error) {
        return error.what();
    }
    return "accepted";
}

TEST(BenchArgs, ReadsPositionalsFlagsAndRepeatsAndRefusesTheRest) {
    const BenchArgs args =
        parse({"recipe.toml", "--rounds", "12", "--set", "a=1", "--set", "b=2"}, 1);
    EXPECT_FALSE(args.help());
    EXPECT_EQ(args.positional(0), "recipe.toml");
    EXPECT_EQ(args.integer("--rounds", 3, 1), 12);
    EXPECT_EQ(args.integer("--missing", 3, 1), 3);  // not given: the default
    EXPECT_EQ(args.text("--device", "cpu"), "cpu");
    EXPECT_EQ(args.all("--set"), (std::vector<std::string>{"a=1", "b=2"}));
    EXPECT_TRUE(parse({"x", "--bogus", "1", "--help"}, 1).help());  // help wins over everything

    EXPECT_EQ(usage_error({"--bogus", "1"}, 0),
              "unknown argument '--bogus' (expected one of --rounds, --set, --device)");
    EXPECT_EQ(usage_error({"--rounds"}, 0), "--rounds needs a value");
    EXPECT_EQ(usage_error({}, 1),
              "expected 1 positional argument(s) before the flags, got 0 argument(s)");
    EXPECT_EQ(usage_error({"--rounds", "4"}, 1),
              "expected a positional argument before the flags, got '--rounds'");
    for (const char* bad : {"x", "7x", "0", "-3", ""}) {
        try {
            parse({"--rounds", bad}, 0).integer("--rounds", 3, 1);
            ADD_FAILURE() << "accepted --rounds '" << bad << "'";
        } catch (const BenchUsageError& error) {
            EXPECT_EQ(
                std::string(error.what()),
                "--rounds: expected a whole number of at least 1, got '" + std::string(bad) + "'");
        }
    }
}

TEST(BenchArgs, TheBenchmarksAnswerHelpAndBadArgumentsWithoutRunning) {
    using tests::run_command;
    using tests::shell_quote;
    struct Case {
        std::string command;
        int exit_code;
        std::string says;
    };
    const std::string moe = shell_quote(MOELAB_BENCH_MOE);
    const std::string threads = shell_quote(MOELAB_BENCH_THREADS);
    const std::string encode = shell_quote(MOELAB_BENCH_ENCODE);
    const std::vector<Case> cases = {
        {moe + " --help", 0, "moelab_bench_moe [--tokens 8192]"},
        {moe + " --bogus 1", 2, "unknown argument '--bogus'"},
        {moe + " --rounds x", 2, "--rounds: expected a whole number of at least 1, got 'x'"},
        {moe + " --only everything", 2, "--only: expected moe, experts, dense or naive"},
        {threads + " --help", 0, "moelab_bench_threads RECIPE"},
        {threads + " /nonexistent/recipe.toml", 2, "/nonexistent/recipe.toml: does not exist"},
        {threads, 2, "expected 1 positional argument(s)"},
        {encode + " --help", 0, "moelab_bench_encode CORPUS_FILE"},
        {encode + " /nonexistent/corpus.txt", 2, "/nonexistent/corpus.txt: not a file"},
    };
    for (const Case& c : cases) {
        const tests::CommandResult result = run_command("timeout 60 " + c.command);
        EXPECT_EQ(result.signal, 0) << c.command;
        EXPECT_EQ(result.exit_code, c.exit_code) << c.command << "\n" << result.err;
        EXPECT_NE((result.out + result.err).find(c.says), std::string::npos)
            << c.command << "\n"
            << result.out << result.err;
    }
}

}  // namespace
}  // namespace moelab::bench
