#include "core/config/toml_params.h"

#include "core/system/printable.h"

#include <cmath>

#include <fmt/format.h>

#include "core/config/options.h"
#include "core/config/suggest.h"

namespace moelab::core::detail {

namespace {

std::string format_number(double value) {
    if (std::floor(value) == value && std::fabs(value) < 1e15) {
        return fmt::format("{}", static_cast<long long>(value));
    }
    return fmt::format("{}", value);
}

// "an integer >= 1", "a float in [0, 1]", "one of \"a\", \"b\""
std::string expectation(const sdk::ParamSpec& spec) {
    if (!spec.choices.empty()) {
        std::string text = "one of ";
        for (std::size_t i = 0; i < spec.choices.size(); ++i) {
            text += (i ? ", \"" : "\"") + spec.choices[i] + "\"";
        }
        return text;
    }
    std::string text;
    switch (spec.type) {
        case sdk::ParamType::kBool:
            return "a boolean (true or false)";
        case sdk::ParamType::kInt:
            text = "an integer";
            break;
        case sdk::ParamType::kFloat:
            text = "a number";
            break;
        case sdk::ParamType::kString:
            return "a string";
        case sdk::ParamType::kIntList:
            text = "an array of integers";
            break;
        case sdk::ParamType::kFloatList:
            text = "an array of numbers";
            break;
        case sdk::ParamType::kStringList:
            return "an array of strings";
    }
    const bool list =
        spec.type == sdk::ParamType::kIntList || spec.type == sdk::ParamType::kFloatList;
    const std::string each = list ? " with every element" : "";
    if (spec.min && spec.max) {
        text +=
            fmt::format("{} in [{}, {}]", each, format_number(*spec.min), format_number(*spec.max));
    } else if (spec.min) {
        text += fmt::format("{} >= {}", each, format_number(*spec.min));
    } else if (spec.max) {
        text += fmt::format("{} <= {}", each, format_number(*spec.max));
    }
    return text;
}

bool in_range(const sdk::ParamSpec& spec, double value) {
    return !(spec.min && value < *spec.min) && !(spec.max && value > *spec.max) &&
           !std::isnan(value);
}

std::optional<std::int64_t> as_int(const toml::node& node) {
    if (const auto* v = node.as_integer()) return v->get();
    return std::nullopt;
}

std::optional<double> as_number(const toml::node& node) {
    if (const auto* v = node.as_floating_point()) return v->get();
    if (const auto* v = node.as_integer()) return static_cast<double>(v->get());
    return std::nullopt;
}

// Converts `node` to the spec's type, or explains why not.
std::optional<sdk::ParamValue> convert(const toml::node& node, const sdk::ParamSpec& spec,
                                       std::string& why) {
    const std::string got = describe_node(node);
    auto fail = [&](std::string message) -> std::optional<sdk::ParamValue> {
        why = std::move(message);
        return std::nullopt;
    };
    switch (spec.type) {
        case sdk::ParamType::kBool:
            if (const auto* v = node.as_boolean()) return sdk::ParamValue(v->get());
            return fail(fmt::format("expected {}, got {}", expectation(spec), got));
        case sdk::ParamType::kInt: {
            auto v = as_int(node);
            if (!v || !in_range(spec, static_cast<double>(*v))) {
                return fail(fmt::format("expected {}, got {}", expectation(spec), got));
            }
            return sdk::ParamValue(*v);
        }
        case sdk::ParamType::kFloat: {
            auto v = as_number(node);
            if (!v || !in_range(spec, *v)) {
                return fail(fmt::format("expected {}, got {}", expectation(spec), got));
            }
            return sdk::ParamValue(*v);
        }
        case sdk::ParamType::kString: {
            const auto* v = node.as_string();
            if (!v) return fail(fmt::format("expected {}, got {}", expectation(spec), got));
            const std::string& text = v->get();
            if (!spec.choices.empty() &&
                std::find(spec.choices.begin(), spec.choices.end(), text) == spec.choices.end()) {
                return fail(fmt::format("expected {}, got \"{}\"{}", expectation(spec),
                                        printable(text, 80), did_you_mean(text, spec.choices)));
            }
            return sdk::ParamValue(text);
        }
        case sdk::ParamType::kIntList:
        case sdk::ParamType::kFloatList:
        case sdk::ParamType::kStringList: {
            const auto* array = node.as_array();
            if (!array) return fail(fmt::format("expected {}, got {}", expectation(spec), got));
            std::vector<std::int64_t> ints;
            std::vector<double> floats;
            std::vector<std::string> strings;
            std::size_t index = 0;
            for (const toml::node& element : *array) {
                const std::string element_got = describe_node(element);
                if (spec.type == sdk::ParamType::kStringList) {
                    const auto* s = element.as_string();
                    if (!s) {
                        return fail(fmt::format("expected {}, element {} is {}", expectation(spec),
                                                index, element_got));
                    }
                    strings.push_back(s->get());
                } else if (spec.type == sdk::ParamType::kIntList) {
                    auto v = as_int(element);
                    if (!v || !in_range(spec, static_cast<double>(*v))) {
                        return fail(fmt::format("expected {}, element {} is {}", expectation(spec),
                                                index, element_got));
                    }
                    ints.push_back(*v);
                } else {
                    auto v = as_number(element);
                    if (!v || !in_range(spec, *v)) {
                        return fail(fmt::format("expected {}, element {} is {}", expectation(spec),
                                                index, element_got));
                    }
                    floats.push_back(*v);
                }
                ++index;
            }
            if (spec.type == sdk::ParamType::kStringList) return sdk::ParamValue(strings);
            if (spec.type == sdk::ParamType::kIntList) return sdk::ParamValue(ints);
            return sdk::ParamValue(floats);
        }
    }
    return fail("unsupported parameter type");
}

}  // namespace

SourceLocation location_of(const toml::source_region& region) {
    SourceLocation location;
    if (region.path) location.file = *region.path;
    location.line = static_cast<int>(region.begin.line);
    location.column = static_cast<int>(region.begin.column);
    return location;
}

std::string describe_node(const toml::node& node) {
    switch (node.type()) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return fmt::format("string \"{}\"", printable(node.as_string()->get(), 80));
        case toml::node_type::integer:
            return fmt::format("integer {}", node.as_integer()->get());
        case toml::node_type::floating_point:
            return fmt::format("float {}", node.as_floating_point()->get());
        case toml::node_type::boolean:
            return fmt::format("boolean {}", node.as_boolean()->get());
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

std::string join_key(const std::string& prefix, const std::string& key) {
    return prefix.empty() ? key : prefix + "." + key;
}

sdk::Params read_params(const toml::table& table, const sdk::ParamSchema& schema,
                        const std::string& prefix, const std::vector<std::string>& skip_keys,
                        Diagnostics& diagnostics,
                        std::map<std::string, SourceLocation>& locations) {
    std::map<std::string, sdk::ParamValue, std::less<>> values;
    std::vector<std::string> known;
    for (const sdk::ParamSpec& spec : schema.specs()) known.push_back(spec.name);
    known.insert(known.end(), skip_keys.begin(), skip_keys.end());

    for (const auto& [key, node] : table) {
        const std::string name(key.str());
        if (std::find(skip_keys.begin(), skip_keys.end(), name) != skip_keys.end()) continue;
        const std::string path = join_key(prefix, name);
        const sdk::ParamSpec* spec = schema.find(name);
        if (spec == nullptr) {
            const std::string where = prefix.empty() ? "at the top level" : "in [" + prefix + "]";
            // A key made by --set may lose its own position in toml++'s tables; its value keeps
            // the --set that made it.
            const SourceLocation at =
                key.source().path ? location_of(key.source()) : location_of(node.source());
            diagnostics.add(at, path,
                            fmt::format("unknown key {}{}", where, did_you_mean(name, known)));
            continue;
        }
        locations[path] = location_of(node.source());
        std::string why;
        if (auto value = convert(node, *spec, why)) {
            values.emplace(name, std::move(*value));
        } else {
            diagnostics.add(location_of(node.source()), path, why);
        }
    }
    for (const sdk::ParamSpec& spec : schema.specs()) {
        if (values.find(spec.name) == values.end()) values.emplace(spec.name, spec.default_value);
    }
    return sdk::Params(std::move(values));
}

}  // namespace moelab::core::detail
