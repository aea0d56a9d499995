#pragma once

// Where this process stands in a job of several, as the launcher says: torchrun's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT), which `moelab launch` sets the same
// way, plus MOELAB_FILE_STORE (a rendezvous file on a shared file system instead of a TCP store;
// tests use it).

#include <functional>
#include <optional>
#include <string>

namespace moelab::core {

struct LaunchEnvironment {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_world_size = 1;  // processes of the job on this machine (LOCAL_WORLD_SIZE)
    std::string master_addr;
    int master_port = 0;
    // torchrun's agent already serves the TCP store at MASTER_ADDR:MASTER_PORT: every rank is a
    // client. Otherwise rank 0 serves it.
    bool agent_store = false;
    int restart_count = 0;   // torchrun's restarts of the job; keys each attempt's rendezvous
    std::string file_store;  // MOELAB_FILE_STORE; empty: the TCP store
};

// A TCP port the kernel just handed out on 127.0.0.1, for the rendezvous of a job on this machine
// (free unless taken in between, the race torchrun accepts too). Throws std::runtime_error with
// errno's reason when there is none.
int free_loopback_port();

// The job described by the environment `lookup` reads (getenv by default); nullopt when
// WORLD_SIZE is not set (a single process). Throws std::invalid_argument naming the variable
// when a value is malformed or out of range, or the TCP store's address is missing.
std::optional<LaunchEnvironment> launch_environment(
    const std::function<const char*(const char*)>& lookup = {});

}  // namespace moelab::core
