#pragma once

// The result of `moelab plugins test`: one row per check, with why it failed.

#include <functional>
#include <string>
#include <vector>

namespace moelab::core {

enum class CheckOutcome { kPass, kFail, kInfo };

struct ConformanceCheck {
    std::string name;
    CheckOutcome outcome = CheckOutcome::kPass;
    std::string detail;  // the measurement, or for a failure the reason
};

struct ConformanceReport {
    std::string component;  // "router 'topk' (plugin 'topk' 1.0.0, FILE)"
    std::vector<ConformanceCheck> checks;

    bool passed() const;
    std::string table() const;  // a fixed-width table for the terminal
};

// Runs `check` under `name`; an exception it throws is the check's failure, with its message.
ConformanceCheck run_check(const std::string& name, const std::function<ConformanceCheck()>& check);
ConformanceCheck pass(std::string detail);
ConformanceCheck fail(std::string detail);

}  // namespace moelab::core
