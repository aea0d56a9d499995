// `moelab launch -n N -- run RECIPE ...`: starts N processes of this moelab on this machine with
// the environment torchrun gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT), and supervises them:
//   - every line a process writes to stderr is relayed with its rank in front;
//   - Ctrl-C or SIGTERM to the launcher is forwarded once to every process (a run then agrees
//     on a step, writes a checkpoint and stops);
//   - when a process fails, the others are stopped (SIGTERM, SIGKILL after a grace period): a
//     dead rank never leaves the others waiting in a collective. The job fails with the message
//     and exit status of the process whose error is the cause: the first error that is not the
//     loss of a peer ("Connection closed by peer": the others' errors follow from the failing
//     process closing its connections, which it may do before it prints its own error).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/dist/launch_environment.h"

namespace moelab::cli {

namespace {

volatile sig_atomic_t g_forward_signal = 0;
volatile sig_atomic_t g_signals = 0;

void remember_signal(int signal) {
    g_forward_signal = signal;
    g_signals = g_signals + 1;
}

struct Rank {
    pid_t pid = -1;
    int stderr_fd = -1;
    std::string partial;    // stderr text after the last newline
    std::string last_line;  // the last complete stderr line
    std::string error;      // its first "error: ..." line, as moelab's commands report failures
    int error_order = -1;   // when that line came, counted over every process's errors
    bool running = false;
    int status = 0;  // exit status once it stopped
};

int exit_status(int wait_status) {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return 1;
}

int g_errors_seen = 0;

void relay(Rank& rank, int index, const char* data, std::size_t size) {
    rank.partial.append(data, size);
    std::size_t start = 0;
    for (std::size_t newline; (newline = rank.partial.find('\n', start)) != std::string::npos;
         start = newline + 1) {
        const std::string line = rank.partial.substr(start, newline - start);
        std::fprintf(stderr, "[rank %d] %s\n", index, line.c_str());
        if (!line.empty()) rank.last_line = line;
        if (rank.error_order < 0 && line.rfind("error: ", 0) == 0) {
            rank.error = line;
            rank.error_order = g_errors_seen++;
        }
    }
    rank.partial.erase(0, start);
}

void drain(Rank& rank, int index) {
    if (rank.stderr_fd < 0) return;
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(rank.stderr_fd, buffer, sizeof buffer);
        if (n > 0) {
            relay(rank, index, buffer, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            ::close(rank.stderr_fd);  // the process closed stderr: stop polling it
            rank.stderr_fd = -1;
        }
        break;  // nothing more now
    }
}

}  // namespace

int launch_job(const LaunchArgs& args) {
    if (args.processes < 1) throw UsageError("launch: -n must be at least 1");
    if (args.command.empty()) {
        throw UsageError(
            "launch: name the moelab command to start after `--`, e.g. "
            "moelab launch -n 2 -- run recipes/quickstart.toml");
    }
    char self[4096];
    const ssize_t self_length = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (self_length <= 0) throw std::runtime_error("launch: cannot find this moelab executable");
    self[self_length] = '\0';
    const int port = args.port > 0 ? args.port : core::free_loopback_port();

    struct sigaction forward {};
    forward.sa_handler = remember_signal;
    sigemptyset(&forward.sa_mask);
    struct sigaction old_int {
    }, old_term{};
    ::sigaction(SIGINT, &forward, &old_int);
    ::sigaction(SIGTERM, &forward, &old_term);

    std::vector<Rank> ranks(static_cast<std::size_t>(args.processes));
    pid_t group = 0;  // the processes' own process group: signals reach them through us only
    for (int r = 0; r < args.processes; ++r) {
        int pipe_fds[2];
        if (::pipe(pipe_fds) != 0) throw std::runtime_error("launch: pipe failed");
        const pid_t pid = ::fork();
        if (pid < 0)
            throw std::runtime_error(fmt::format("launch: fork: {}", std::strerror(errno)));
        if (pid == 0) {
            ::setpgid(0, group);
            ::signal(SIGINT, SIG_DFL);
            ::signal(SIGTERM, SIG_DFL);
            ::dup2(pipe_fds[1], STDERR_FILENO);
            ::close(pipe_fds[0]);
            ::close(pipe_fds[1]);
            const std::string world = std::to_string(args.processes);
            ::setenv("RANK", std::to_string(r).c_str(), 1);
            ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
            ::setenv("WORLD_SIZE", world.c_str(), 1);
            ::setenv("LOCAL_WORLD_SIZE", world.c_str(), 1);
            ::setenv("MASTER_ADDR", "127.0.0.1", 1);
            ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
            ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
            std::vector<char*> argv{self};
            for (const std::string& word : args.command)
                argv.push_back(const_cast<char*>(word.c_str()));
            argv.push_back(nullptr);
            ::execv(self, argv.data());
            std::fprintf(stderr, "launch: cannot start %s: %s\n", self, std::strerror(errno));
            ::_exit(127);
        }
        if (group == 0) group = pid;
        ::setpgid(pid, group);  // also here: whichever of the two runs first
        ::close(pipe_fds[1]);
        ::fcntl(pipe_fds[0], F_SETFL, ::fcntl(pipe_fds[0], F_GETFL) | O_NONBLOCK);
        Rank& rank = ranks[static_cast<std::size_t>(r)];
        rank.pid = pid;
        rank.stderr_fd = pipe_fds[0];
        rank.running = true;
    }

    using Clock = std::chrono::steady_clock;
    int failed_rank = -1;
    bool forwarded = false;
    Clock::time_point kill_at = Clock::time_point::max();
    int running = args.processes;
    while (running > 0) {
        if (g_forward_signal != 0 && !forwarded) {
            ::kill(-group, g_forward_signal);
            forwarded = true;
        }
        if (g_signals > 1) {
            ::kill(-group, SIGKILL);  // a second Ctrl-C: stop now, without checkpoints
            kill_at = Clock::time_point::max();
        }
        std::vector<pollfd> fds;
        for (const Rank& rank : ranks) {
            if (rank.stderr_fd >= 0) fds.push_back({rank.stderr_fd, POLLIN, 0});
        }
        ::poll(fds.data(), fds.size(), 100);
        for (std::size_t i = 0; i < ranks.size(); ++i) {
            if (ranks[i].stderr_fd >= 0) drain(ranks[i], static_cast<int>(i));
        }
        int wait_status = 0;
        pid_t done;
        while ((done = ::waitpid(-group, &wait_status, WNOHANG)) > 0) {
            for (std::size_t i = 0; i < ranks.size(); ++i) {
                Rank& rank = ranks[i];
                if (rank.pid != done) continue;
                rank.running = false;
                rank.status = exit_status(wait_status);
                --running;
                drain(rank, static_cast<int>(i));
                // After a forwarded Ctrl-C, 130 is how a run says it stopped with a checkpoint.
                const bool stopped = forwarded && rank.status == 130;
                if (rank.status != 0 && !stopped && failed_rank < 0) {
                    failed_rank = static_cast<int>(i);
                    std::fprintf(stderr,
                                 "moelab launch: rank %zu failed (exit status %d); stopping the "
                                 "other %d\n",
                                 i, rank.status, running);
                    ::kill(-group, SIGTERM);
                    kill_at = Clock::now() + std::chrono::seconds(10);
                }
            }
        }
        if (Clock::now() >= kill_at) {
            ::kill(-group, SIGKILL);
            kill_at = Clock::time_point::max();
        }
    }
    for (std::size_t i = 0; i < ranks.size(); ++i) {
        Rank& rank = ranks[i];
        if (rank.stderr_fd >= 0) drain(rank, static_cast<int>(i));
        if (!rank.partial.empty()) relay(rank, static_cast<int>(i), "\n", 1);
        if (rank.stderr_fd >= 0) ::close(rank.stderr_fd);
    }
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);

    if (failed_rank >= 0) {
        auto lost_peer = [](const std::string& error) {
            for (const char* symptom : {"closed by peer", "reset by peer", "Broken pipe"}) {
                if (error.find(symptom) != std::string::npos) return true;
            }
            return false;
        };
        // Ordered by (an effect of a lost peer, when it came): causes first, earliest first.
        auto rank_of_error = [&](const Rank& rank) {
            return std::pair{lost_peer(rank.error), rank.error_order};
        };
        int cause = failed_rank;
        for (std::size_t i = 0; i < ranks.size(); ++i) {
            const Rank& rank = ranks[i];
            const Rank& best = ranks[static_cast<std::size_t>(cause)];
            if (rank.error_order >= 0 &&
                (best.error_order < 0 || rank_of_error(rank) < rank_of_error(best))) {
                cause = static_cast<int>(i);
            }
        }
        const Rank& rank = ranks[static_cast<std::size_t>(cause)];
        const std::string& message = rank.error.empty() ? rank.last_line : rank.error;
        std::fprintf(stderr, "moelab launch: the job failed because rank %d failed%s%s\n", cause,
                     message.empty() ? "" : ": ", message.c_str());
        // Its own exit status, unless our SIGTERM ended it while it was exiting.
        const bool own = rank.status > 0 && rank.status < 128;
        return own ? rank.status : ranks[static_cast<std::size_t>(failed_rank)].status;
    }
    int status = 0;
    for (const Rank& rank : ranks) status = std::max(status, rank.status);
    return status;
}

}  // namespace moelab::cli
