#pragma once

// Binds the fields of a typed options struct to recipe keys. The binding produces an
// sdk::ParamSchema (the same schema type plugins declare, so host options and plugin options are
// read, validated, documented and printed by one mechanism) and copies validated values back into
// the struct. Defaults come from a default-constructed struct: they are declared exactly once.

#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/config/choices.h"
#include "moelab/sdk/params.h"

namespace moelab::core {

template <class Options>
class OptionsBinding {
  public:
    sdk::ParamSpec& bind(std::string key, bool Options::*member, std::string doc) {
        add_setter(key, member);
        return schema_.add_bool(std::move(key), defaults_.*member, std::move(doc));
    }
    sdk::ParamSpec& bind(std::string key, std::int64_t Options::*member, std::string doc) {
        add_setter(key, member);
        return schema_.add_int(std::move(key), defaults_.*member, std::move(doc));
    }
    sdk::ParamSpec& bind(std::string key, double Options::*member, std::string doc) {
        add_setter(key, member);
        return schema_.add_float(std::move(key), defaults_.*member, std::move(doc));
    }
    sdk::ParamSpec& bind(std::string key, std::string Options::*member, std::string doc) {
        add_setter(key, member);
        return schema_.add_string(std::move(key), defaults_.*member, std::move(doc));
    }
    sdk::ParamSpec& bind(std::string key, std::vector<std::string> Options::*member,
                         std::string doc) {
        add_setter(key, member);
        return schema_.add_string_list(std::move(key), defaults_.*member, std::move(doc));
    }
    sdk::ParamSpec& bind(std::string key, std::vector<std::int64_t> Options::*member,
                         std::string doc) {
        add_setter(key, member);
        return schema_.add_int_list(std::move(key), defaults_.*member, std::move(doc));
    }
    sdk::ParamSpec& bind_choice(std::string key, std::string Options::*member,
                                std::vector<std::string> choices, std::string doc) {
        add_setter(key, member);
        return schema_.add_choice(std::move(key), defaults_.*member, std::move(choices),
                                  std::move(doc));
    }

    // An enum choice (choices.h): the recipe writes one of ChoiceNames<Choice>::names.
    template <class Choice>
    sdk::ParamSpec& bind_choice(std::string key, Choice Options::*member, std::string doc) {
        const auto& names = ChoiceNames<Choice>::names;
        setters_.push_back([key, member](const sdk::Params& values, Options& target) {
            const std::string& text = std::get<std::string>(values.values().find(key)->second);
            for (std::size_t i = 0; i < std::size(names); ++i) {
                if (names[i] == text) target.*member = static_cast<Choice>(i);
            }
        });
        getters_.push_back([key, member](const Options& source) {
            return std::pair<std::string, sdk::ParamValue>(key,
                                                           std::string(name_of(source.*member)));
        });
        return schema_.add_choice(std::move(key), std::string(name_of(defaults_.*member)),
                                  std::vector<std::string>(std::begin(names), std::end(names)),
                                  std::move(doc));
    }

    const sdk::ParamSchema& schema() const { return schema_; }

    // Copies every bound value from `values` (validated against schema()) into `target`.
    void assign(const sdk::Params& values, Options& target) const {
        for (const auto& setter : setters_) setter(values, target);
    }

    // The current values of `source`, keyed like schema(): for printing a resolved recipe.
    sdk::Params read(const Options& source) const {
        std::map<std::string, sdk::ParamValue, std::less<>> values;
        for (const auto& getter : getters_) values.insert(getter(source));
        return sdk::Params(std::move(values));
    }

  private:
    template <class Value>
    void add_setter(const std::string& key, Value Options::*member) {
        setters_.push_back([key, member](const sdk::Params& values, Options& target) {
            target.*member = std::get<Value>(values.values().find(key)->second);
        });
        getters_.push_back([key, member](const Options& source) {
            return std::pair<std::string, sdk::ParamValue>(key, source.*member);
        });
    }

    Options defaults_{};
    sdk::ParamSchema schema_;
    std::vector<std::function<void(const sdk::Params&, Options&)>> setters_;
    std::vector<std::function<std::pair<std::string, sdk::ParamValue>(const Options&)>> getters_;
};

}  // namespace moelab::core
