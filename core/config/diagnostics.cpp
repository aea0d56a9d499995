#include "core/config/diagnostics.h"

#include <algorithm>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "core/system/printable.h"

namespace moelab::core {

namespace {

std::string join_issues(const std::vector<ConfigIssue>& issues) {
    std::string text;
    for (const std::string& line : format_issues(issues)) {
        if (!text.empty()) text += '\n';
        text += line;
    }
    return text;
}

}  // namespace

std::string format_issue(const ConfigIssue& issue) {
    // Everything quoted from a user's file is made printable: one line, escaped, shortened.
    std::string where =
        issue.location.file.empty() ? std::string("<recipe>") : printable(issue.location.file, 160);
    // Command-line overrides are one line of their own: their position adds nothing.
    const bool from_command_line = where.rfind("--set ", 0) == 0;
    if (issue.location.line > 0 && !from_command_line) {
        where += fmt::format(":{}:{}", issue.location.line, issue.location.column);
    }
    const std::string message = printable(issue.message, 600);
    if (issue.key.empty()) return fmt::format("{}: {}", where, message);
    return fmt::format("{}: {}: {}", where, printable(issue.key, 120), message);
}

std::vector<std::string> format_issues(const std::vector<ConfigIssue>& issues,
                                       std::size_t max_issues) {
    std::vector<std::string> lines;
    for (std::size_t i = 0; i < issues.size() && i < max_issues; ++i) {
        lines.push_back(format_issue(issues[i]));
    }
    if (issues.size() > max_issues) {
        lines.push_back(fmt::format("... and {} more error{} (the first {} are shown)",
                                    issues.size() - max_issues,
                                    issues.size() - max_issues == 1 ? "" : "s", max_issues));
    }
    return lines;
}

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error(join_issues(issues)), issues_(std::move(issues)) {}

void Diagnostics::throw_if_any() const {
    if (issues_.empty()) return;
    // In reading order within each file, files in the order their first issue was found.
    std::map<std::string, std::size_t> file_rank;
    for (const ConfigIssue& issue : issues_)
        file_rank.emplace(issue.location.file, file_rank.size());
    std::vector<ConfigIssue> sorted = issues_;
    std::stable_sort(sorted.begin(), sorted.end(), [&](const ConfigIssue& a, const ConfigIssue& b) {
        return std::make_tuple(file_rank.at(a.location.file), a.location.line, a.location.column) <
               std::make_tuple(file_rank.at(b.location.file), b.location.line, b.location.column);
    });
    throw ConfigError(std::move(sorted));
}

}  // namespace moelab::core
