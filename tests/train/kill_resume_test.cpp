// kill -9 at random moments of a run that saves a checkpoint after every step, then --resume,
// again and again: every interrupted run resumes (from its newest complete checkpoint, or from
// step 0 when it died before the first one), leftovers of interrupted saves are cleaned, and the
// finished run's losses equal an uninterrupted run's bit for bit.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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

// Training records in the metrics file so far (a partly written last line does not count, nor
// does the "run" header each start writes).
int finished_lines(const fs::path& metrics) {
    std::ifstream in(metrics);
    int lines = 0;
    for (std::string line; std::getline(in, line);) {
        lines += !in.eof() && line.find("\"type\":\"train\"") != std::string::npos;
    }
    return lines;
}

// Step at which the n-th (0-based) interruption after the first is aimed: evenly spread.
int target_step(int n, int jitter) {
    const int step = (n * kSteps) / kInterruptions + jitter;
    return std::clamp(step, 1, kSteps - 1);
}

bool exited(pid_t pid) {
    siginfo_t info{};
    // WNOWAIT leaves the child waitable: the caller still reaps it below.
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return true;
    return info.si_pid != 0;
}

// Waits until the run has written `step` training records or has exited; true when it exited.
// Bounded so a stuck run fails instead of hanging.
bool wait_for_step(pid_t pid, const fs::path& metrics, int step) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (std::chrono::steady_clock::now() < deadline) {
        if (exited(pid)) return true;
        if (finished_lines(metrics) >= step) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return exited(pid);
}

// The first interruption: somewhere in the start-up, before the first step is written.
bool wait_for_start_up(pid_t pid) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    return exited(pid);
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
    // Kills are placed by the run's progress, not by wall time: a fixed delay lands past the end
    // of training on a fast machine and before start-up on a slow one. Each interruption has a
    // target step spread evenly over the run; the kill comes 0-15 ms after that step's metrics
    // line appears, which is while its checkpoint is being written (one save after every step).
    // The first run is killed during start-up, before any checkpoint exists.
    std::uniform_int_distribution<int> jitter_ms(0, 15);
    std::uniform_int_distribution<int> target_jitter(-kSteps / (4 * kInterruptions),
                                                     kSteps / (4 * kInterruptions));
    const fs::path run = corpus.root() / "killed";
    int killed = 0, resumed = 0, leftovers_seen = 0, before_first_checkpoint = 0;
    for (int attempt = 0; attempt < 3 * kInterruptions && killed < kInterruptions; ++attempt) {
        const bool resume = fs::exists(run / "metrics.jsonl");
        resumed += resume;
        const pid_t pid = start(
            corpus.root(), binary + " " + run_arguments("killed") + (resume ? " --resume" : ""));
        const bool exited_early = killed == 0
                                      ? wait_for_start_up(pid)
                                      : wait_for_step(pid, run / "metrics.jsonl",
                                                      target_step(killed, target_jitter(random)));
        if (!exited_early) {
            std::this_thread::sleep_for(std::chrono::milliseconds(jitter_ms(random)));
        }
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
