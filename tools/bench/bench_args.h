#pragma once

// The benchmarks' command lines: fixed positional arguments, then `--flag value` pairs. Every flag
// must be one the benchmark knows and have a value, numbers must be whole numbers in range, and
// -h/--help asks for the usage. Anything else is a usage error naming the argument, never a
// silent default.

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace moelab::bench {

struct BenchUsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class BenchArgs {
  public:
    // Throws BenchUsageError. `flags`: the flags the benchmark knows, with their leading "--".
    BenchArgs(int argc, const char* const* argv, int positionals, std::vector<std::string> flags);

    bool help() const { return help_; }
    const std::string& positional(int i) const { return positionals_.at(i); }
    // The flag's last value, or `fallback` when it was not given.
    std::string text(const std::string& flag, const std::string& fallback) const;
    // The same as a whole number of at least `min`; throws BenchUsageError otherwise.
    std::int64_t integer(const std::string& flag, std::int64_t fallback, std::int64_t min) const;
    // Every value of a flag that may repeat (--set), in order.
    std::vector<std::string> all(const std::string& flag) const;

  private:
    bool help_ = false;
    std::vector<std::string> positionals_;
    std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace moelab::bench
