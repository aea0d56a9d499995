#include "core/plugin/fingerprint_check.h"

#include <map>

#include <fmt/format.h>

namespace moelab::core {

namespace {

std::map<std::string, std::string> split_fields(std::string_view text) {
    std::map<std::string, std::string> fields;
    while (!text.empty()) {
        const auto end = text.find(';');
        const std::string_view field = text.substr(0, end);
        const auto equals = field.find('=');
        if (equals == std::string_view::npos) {
            fields[std::string(field)] = "";
        } else {
            fields[std::string(field.substr(0, equals))] = std::string(field.substr(equals + 1));
        }
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
    return fields;
}

}  // namespace

std::optional<std::string> fingerprint_mismatch(std::string_view plugin, std::string_view host) {
    if (plugin == host) return std::nullopt;
    const auto plugin_fields = split_fields(plugin);
    const auto host_fields = split_fields(host);
    std::string differences;
    auto note = [&](const std::string& key, const std::string& p, const std::string& h) {
        if (!differences.empty()) differences += "; ";
        differences += fmt::format("{}: plugin {}, host {}", key, p.empty() ? "(none)" : p,
                                   h.empty() ? "(none)" : h);
    };
    for (const auto& [key, value] : host_fields) {
        auto it = plugin_fields.find(key);
        const std::string theirs = it == plugin_fields.end() ? "" : it->second;
        if (theirs != value) note(key, theirs, value);
    }
    for (const auto& [key, value] : plugin_fields) {
        if (host_fields.find(key) == host_fields.end()) note(key, value, "");
    }
    if (differences.empty()) differences = "fields in a different order";
    return differences;
}

}  // namespace moelab::core
