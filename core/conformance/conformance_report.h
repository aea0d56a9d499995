#pragma once

// The result of `moelab plugins test`: one row per check, with why it failed.

#include <functional>
#include <string>
#include <vector>

#include "core/plugin/plugin_info.h"
#include "moelab/sdk/params.h"

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
// "router 'topk' (plugin 'topk' (FILE) 1.0.0)": the title of a component's report.
std::string describe_component(const char* kind, const std::string& name, const PluginInfo& plugin);
// Every option of `schema` at its default: the settings the kit tests a component with.
sdk::Params default_params(const sdk::ParamSchema& schema);
ConformanceCheck fail(std::string detail);

}  // namespace moelab::core
