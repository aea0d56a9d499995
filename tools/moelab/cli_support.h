#pragma once

// Exit codes and error reporting shared by all subcommands:
//   0 success, 1 runtime error (including errors raised by plugins), 2 usage or configuration
//   error (bad command line, bad recipe, refused plugins).

#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace moelab::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;
inline constexpr int kExitUsageError = 2;

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Runs `command`, printing any error to stderr and mapping it to its exit code.
int run_guarded(const std::function<int()>& command);

// A trained run named on the command line (eval, generate): its directory and the checkpoint to
// load, the run directory itself or <run>/checkpoints/step-N. UsageError when it does not exist.
struct TrainedTarget {
    std::filesystem::path run_dir;
    std::filesystem::path step_dir;
};
TrainedTarget trained_target(const std::string& target);

// `--device` as recipe overrides: the run's recorded device unless given; on the CPU a bfloat16
// run computes in float32 (said on stderr).
void add_device_overrides(const std::string& device, std::vector<std::string>& overrides);

}  // namespace moelab::cli
