#pragma once

// Errors in recipes and plugin options, with the place they came from. Every config error moelab
// reports says file:line:column, the key path, what was expected and what was found; the CLI
// prints them all and exits with code 2.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace moelab::core {

struct SourceLocation {
    std::string file;  // recipe path, or "--set key=value" for command-line overrides
    int line = 0;      // 1-based; 0 when unknown
    int column = 0;
};

struct ConfigIssue {
    SourceLocation location;
    std::string key;  // dotted key path, e.g. "train.steps"
    std::string message;
};

// "recipes/a.toml:12:3: train.steps: expected an integer >= 1, got -3". File, key and message
// are escaped and shortened (core/system/printable.h): one line, whatever the recipe holds.
std::string format_issue(const ConfigIssue& issue);

// The issues as lines, at most `max_issues` of them, then "... and N more errors": a recipe with
// 200,000 unknown keys gets a screenful, not 200,000 lines.
inline constexpr std::size_t kMaxReportedIssues = 50;
std::vector<std::string> format_issues(const std::vector<ConfigIssue>& issues,
                                       std::size_t max_issues = kMaxReportedIssues);

class ConfigError : public std::runtime_error {
  public:
    explicit ConfigError(std::vector<ConfigIssue> issues);
    explicit ConfigError(ConfigIssue issue) : ConfigError(std::vector<ConfigIssue>{issue}) {}

    const std::vector<ConfigIssue>& issues() const { return issues_; }

  private:
    std::vector<ConfigIssue> issues_;
};

// Collects issues so that one run reports every problem of a recipe, not just the first.
class Diagnostics {
  public:
    void add(SourceLocation location, std::string key, std::string message) {
        issues_.push_back({std::move(location), std::move(key), std::move(message)});
    }
    bool empty() const { return issues_.empty(); }
    // Throws ConfigError with everything collected so far, if anything was.
    void throw_if_any() const;

  private:
    std::vector<ConfigIssue> issues_;
};

}  // namespace moelab::core
