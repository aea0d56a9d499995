#include "core/conformance/conformance_report.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/plugin/plugin_error.h"

namespace moelab::core {

ConformanceCheck run_check(const std::string& name,
                           const std::function<ConformanceCheck()>& check) {
    try {
        ConformanceCheck result = check();
        result.name = name;
        return result;
    } catch (const std::exception& error) {
        return {name, CheckOutcome::kFail, error.what()};
    }
}

ConformanceCheck pass(std::string detail) { return {"", CheckOutcome::kPass, std::move(detail)}; }
std::string describe_component(const char* kind, const std::string& name,
                               const PluginInfo& plugin) {
    return fmt::format("{} '{}' ({} {})", kind, name, describe_plugin(plugin), plugin.version);
}

sdk::Params default_params(const sdk::ParamSchema& schema) {
    std::map<std::string, sdk::ParamValue, std::less<>> values;
    for (const sdk::ParamSpec& spec : schema.specs()) values[spec.name] = spec.default_value;
    return sdk::Params(std::move(values));
}

ConformanceCheck fail(std::string detail) { return {"", CheckOutcome::kFail, std::move(detail)}; }

bool ConformanceReport::passed() const {
    return std::none_of(checks.begin(), checks.end(), [](const ConformanceCheck& check) {
        return check.outcome == CheckOutcome::kFail;
    });
}

std::string ConformanceReport::table() const {
    std::size_t width = 5;
    for (const ConformanceCheck& check : checks) width = std::max(width, check.name.size());
    std::string out =
        fmt::format("{}\n  {:<{}}  {:<6}  {}\n", component, "check", width, "result", "detail");
    for (const ConformanceCheck& check : checks) {
        const char* result = check.outcome == CheckOutcome::kPass   ? "pass"
                             : check.outcome == CheckOutcome::kFail ? "FAIL"
                                                                    : "info";
        out += fmt::format("  {:<{}}  {:<6}  {}\n", check.name, width, result, check.detail);
    }
    return out;
}

}  // namespace moelab::core
