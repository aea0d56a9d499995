#pragma once

// A plugin's parameters: the schema it declares when registering a component, and the read-only,
// already validated values the host hands to its factory. The host reads the plugin's table of the
// recipe, rejects unknown keys ("did you mean ..."), wrong types and out-of-range values against
// the schema, fills in defaults, and only then calls the plugin. A plugin never sees TOML.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "moelab/sdk/error.h"

namespace moelab::sdk {

enum class ParamType { kBool, kInt, kFloat, kString, kIntList, kFloatList, kStringList };

// Order matches ParamType.
using ParamValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::int64_t>,
                                std::vector<double>, std::vector<std::string>>;

inline const char* param_type_name(ParamType type) {
    switch (type) {
        case ParamType::kBool:
            return "boolean";
        case ParamType::kInt:
            return "integer";
        case ParamType::kFloat:
            return "float";
        case ParamType::kString:
            return "string";
        case ParamType::kIntList:
            return "array of integers";
        case ParamType::kFloatList:
            return "array of floats";
        case ParamType::kStringList:
            return "array of strings";
    }
    return "?";
}

struct ParamSpec {
    std::string name;
    ParamType type = ParamType::kInt;
    ParamValue default_value;
    std::optional<double> min;         // inclusive; numbers and list elements
    std::optional<double> max;         // inclusive
    std::vector<std::string> choices;  // strings only; empty means any string
    std::string doc;

    // Chainable refinements, used right after ParamSchema::add_*(). Do not keep the reference:
    // the next add_*() may move the spec.
    ParamSpec& at_least(double value) {
        min = value;
        return *this;
    }
    ParamSpec& at_most(double value) {
        max = value;
        return *this;
    }
    ParamSpec& between(double lo, double hi) {
        min = lo;
        max = hi;
        return *this;
    }
};

class ParamSchema {
  public:
    ParamSpec& add_bool(std::string name, bool fallback, std::string doc) {
        return add(std::move(name), ParamType::kBool, fallback, std::move(doc));
    }
    ParamSpec& add_int(std::string name, std::int64_t fallback, std::string doc) {
        return add(std::move(name), ParamType::kInt, fallback, std::move(doc));
    }
    ParamSpec& add_float(std::string name, double fallback, std::string doc) {
        return add(std::move(name), ParamType::kFloat, fallback, std::move(doc));
    }
    ParamSpec& add_string(std::string name, std::string fallback, std::string doc) {
        return add(std::move(name), ParamType::kString, std::move(fallback), std::move(doc));
    }
    // A string restricted to `choices`; `fallback` must be one of them.
    ParamSpec& add_choice(std::string name, std::string fallback, std::vector<std::string> choices,
                          std::string doc) {
        ParamSpec& spec =
            add(std::move(name), ParamType::kString, std::move(fallback), std::move(doc));
        spec.choices = std::move(choices);
        return spec;
    }
    ParamSpec& add_int_list(std::string name, std::vector<std::int64_t> fallback, std::string doc) {
        return add(std::move(name), ParamType::kIntList, std::move(fallback), std::move(doc));
    }
    ParamSpec& add_float_list(std::string name, std::vector<double> fallback, std::string doc) {
        return add(std::move(name), ParamType::kFloatList, std::move(fallback), std::move(doc));
    }
    ParamSpec& add_string_list(std::string name, std::vector<std::string> fallback,
                               std::string doc) {
        return add(std::move(name), ParamType::kStringList, std::move(fallback), std::move(doc));
    }

    const std::vector<ParamSpec>& specs() const { return specs_; }

    const ParamSpec* find(std::string_view name) const {
        for (const ParamSpec& spec : specs_) {
            if (spec.name == name) return &spec;
        }
        return nullptr;
    }

  private:
    ParamSpec& add(std::string name, ParamType type, ParamValue fallback, std::string doc) {
        if (find(name) != nullptr) throw Error("parameter '" + name + "' declared twice");
        specs_.push_back(ParamSpec{std::move(name),
                                   type,
                                   std::move(fallback),
                                   std::nullopt,
                                   std::nullopt,
                                   {},
                                   std::move(doc)});
        return specs_.back();
    }

    std::vector<ParamSpec> specs_;
};

// Validated values, one per declared parameter. Asking for an undeclared name or with the wrong
// type is a programming error in the plugin and throws sdk::Error.
class Params {
  public:
    Params() = default;
    explicit Params(std::map<std::string, ParamValue, std::less<>> values)
        : values_(std::move(values)) {}

    bool get_bool(std::string_view name) const { return get<bool>(name); }
    std::int64_t get_int(std::string_view name) const { return get<std::int64_t>(name); }
    double get_float(std::string_view name) const { return get<double>(name); }
    const std::string& get_string(std::string_view name) const { return get<std::string>(name); }
    const std::vector<std::int64_t>& get_int_list(std::string_view name) const {
        return get<std::vector<std::int64_t>>(name);
    }
    const std::vector<double>& get_float_list(std::string_view name) const {
        return get<std::vector<double>>(name);
    }
    const std::vector<std::string>& get_string_list(std::string_view name) const {
        return get<std::vector<std::string>>(name);
    }

    const std::map<std::string, ParamValue, std::less<>>& values() const { return values_; }

  private:
    template <class T>
    const T& get(std::string_view name) const {
        auto it = values_.find(name);
        if (it == values_.end()) {
            throw Error("parameter '" + std::string(name) + "' is not declared in the schema");
        }
        if (const T* value = std::get_if<T>(&it->second)) return *value;
        throw Error("parameter '" + std::string(name) + "' read with the wrong type");
    }

    std::map<std::string, ParamValue, std::less<>> values_;
};

}  // namespace moelab::sdk
