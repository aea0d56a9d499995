#pragma once

// The resolved recipe as TOML: every host key with its effective value (defaults included) and
// every plugin's validated options. Loading the printed text gives the same run.

#include <map>
#include <string>

#include "core/config/options.h"
#include "moelab/sdk/params.h"

namespace moelab::core {

// TOML literal of one value: 3, 0.001, "text", [1, 2], true.
std::string format_param_value(const sdk::ParamValue& value);

// `plugin_params` maps a plugin section ("tokenizer", "attention", "router") to its resolved
// options; a section missing from the map prints only its plugin name.
std::string format_recipe(const Recipe& recipe,
                          const std::map<std::string, sdk::Params>& plugin_params);

}  // namespace moelab::core
