#pragma once

// Private to core/config: reading TOML tables against a ParamSchema.

#include <map>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "core/config/diagnostics.h"
#include "core/config/options.h"
#include "moelab/sdk/params.h"

namespace moelab::core::detail {

SourceLocation location_of(const toml::source_region& region);

// "integer 3", "string \"abc\"", "table", ...
std::string describe_node(const toml::node& node);

// Reads `table` against `schema`. Unknown keys, wrong types and out-of-range values become issues
// in `diagnostics` (with "did you mean" for near misses); missing keys take the schema default.
// `prefix` is the table's dotted path; keys in `skip_keys` are handled by the caller. The location
// of every key read is recorded in `locations`.
sdk::Params read_params(const toml::table& table, const sdk::ParamSchema& schema,
                        const std::string& prefix, const std::vector<std::string>& skip_keys,
                        Diagnostics& diagnostics, std::map<std::string, SourceLocation>& locations);

std::string join_key(const std::string& prefix, const std::string& key);

}  // namespace moelab::core::detail

namespace moelab::core {

struct PluginTable::Impl {
    toml::table table;  // the plugin's options, without the "plugin" key
};

}  // namespace moelab::core
