// kill -9 at random moments of a run that saves a checkpoint after every step, then --resume,
// again and again: every interrupted run resumes (from its newest complete checkpoint, or from
// step 0 when it died before the first one), leftovers of interrupted saves are cleaned, and the
// finished run's losses equal an uninterrupted run's bit for bit.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

constexpr int kInterruptions = 14;
constexpr int kSteps = 400;

std::string run_arguments(const std::string& out) {
    return "run " +
           shell_quote((fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml").string()) +
           " --out " + out + " --set train.steps=" + std::to_string(kSteps) +
           " --set train.checkpoint_every=1 --set train.keep_checkpoints=2"
           " --set train.eval_every=0";
}

// Starts `command` in `dir` through the shell (exec'd, so the pid is moelab's own).
pid_t start(const fs::path& dir, const std::string& command) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (!std::freopen("/dev/null", "w", stdout) || !std::freopen("/dev/null", "w", stderr)) {
            ::_exit(126);
        }
        const std::string line = "cd " + shell_quote(dir.string()) + " && exec " + command;
        ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    return pid;
}

std::vector<double> train_losses(const fs::path& metrics) {
    std::vector<double> losses;
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) {
        const nlohmann::json record = nlohmann::json::parse(line);
        if (record.value("type", "") == "train") losses.push_back(record.at("loss").get<double>());
    }
    return losses;
}

bool has_leftovers(const fs::path& checkpoints) {
    std::error_code error;
    for (fs::directory_iterator it(checkpoints, error), end; !error && it != end;
         it.increment(error)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(".tmp-", 0) == 0 || name.rfind(".latest.tmp.", 0) == 0) return true;
    }
    return false;
}

TEST(KillResume, EveryInterruptedRunResumesAndFinishesLikeAnUninterruptedOne) {
    const TestCorpus corpus(6000);
    const std::string binary = shell_quote(MOELAB_BINARY);
    const CommandResult reference = run_command("cd " + shell_quote(corpus.root().string()) +
                                                " && " + binary + " " + run_arguments("ref"));
    ASSERT_EQ(reference.exit_code, 0) << reference.err;
    const std::vector<double> expected = train_losses(corpus.root() / "ref" / "metrics.jsonl");
    ASSERT_EQ(expected.size(), static_cast<std::size_t>(kSteps));

    std::mt19937 random(20261201);
    // Start-up (LibTorch, data) takes most of a second; kills land from then to past the end of
    // training, so some hit the first checkpoint and many hit saves (one after every step).
    std::uniform_int_distribution<int> delay_ms(300, 2500);
    const fs::path run = corpus.root() / "killed";
    int killed = 0, resumed = 0, leftovers_seen = 0, before_first_checkpoint = 0;
    for (int attempt = 0; attempt < 3 * kInterruptions && killed < kInterruptions; ++attempt) {
        const bool resume = fs::exists(run / "metrics.jsonl");
        resumed += resume;
        const pid_t pid = start(
            corpus.root(), binary + " " + run_arguments("killed") + (resume ? " --resume" : ""));
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
        const bool still_running = ::waitpid(pid, nullptr, WNOHANG) == 0;
        if (still_running) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            ++killed;
            leftovers_seen += has_leftovers(run / "checkpoints");
            before_first_checkpoint += !fs::exists(run / "checkpoints" / "latest");
        } else if (fs::exists(run / "summary.json")) {
            break;  // finished before the kill: nothing left to interrupt
        }
    }
    const CommandResult finish = run_command("cd " + shell_quote(corpus.root().string()) + " && " +
                                             binary + " " + run_arguments("killed") + " --resume");
    ASSERT_EQ(finish.exit_code, 0) << finish.err;
    EXPECT_FALSE(has_leftovers(run / "checkpoints"));
    std::printf(
        "[ kill -9 ] %d runs killed (%d before the first checkpoint was published, %d "
        "with a save in progress), %d resumed, all finished\n",
        killed, before_first_checkpoint, leftovers_seen, resumed + 1);
    EXPECT_GE(killed, kInterruptions / 2) << "too few kills landed while training";

    const std::vector<double> losses = train_losses(run / "metrics.jsonl");
    ASSERT_EQ(losses.size(), expected.size());
    for (std::size_t i = 0; i < losses.size(); ++i) {
        EXPECT_EQ(losses[i], expected[i]) << "step " << i + 1;
    }
}

}  // namespace
}  // namespace moelab::tests
