#pragma once

// Recipe files to typed options. Errors (syntax, unknown keys, wrong types, out-of-range values,
// inconsistent combinations) throw ConfigError listing every problem found with file:line:column.

#include <filesystem>
#include <string>
#include <vector>

#include "core/config/options.h"
#include "moelab/sdk/params.h"

namespace moelab::core {

// Reads `file`, following `extends = "base.toml"` chains (paths relative to the including file;
// the including file's keys win; a table that switches to another `plugin` replaces the base's
// table instead of merging with it), then applies `overrides` ("section.key=value", value in TOML
// syntax; a bare word is taken as a string) in the order given.
Recipe load_recipe(const std::filesystem::path& file,
                   const std::vector<std::string>& overrides = {});

// Validates a plugin's options table against the plugin's schema: unknown keys (with suggestions),
// types, ranges; fills defaults. Throws ConfigError.
sdk::Params resolve_plugin_params(const PluginSelection& selection, const sdk::ParamSchema& schema);

// The options of `run`'s plugin in stage `stage` (Note [Stages]): the stage's table
// (stage.plugin_options) over the run's, validated as the table stage[i].<section>. Throws
// ConfigError.
sdk::Params resolve_stage_plugin_params(const PluginSelection& run, const StageOptions& stage,
                                        std::size_t stage_index, const sdk::ParamSchema& schema);

// The keys a stage's table sets for `section` (empty when it has none).
std::vector<std::string> stage_plugin_keys(const StageOptions& stage, const std::string& section);

// The options of a plugin section that a command-line override (--set) gave.
std::vector<std::string> command_line_keys(const PluginSelection& selection);

// Reads command-line "key=value" assignments (value in TOML syntax; a bare word is a string)
// against a plugin's schema, as if they were the recipe table `section`: the same checks and
// messages as a recipe, each naming the assignment. Throws ConfigError.
sdk::Params params_from_assignments(const std::vector<std::string>& assignments,
                                    const sdk::ParamSchema& schema, const std::string& section);

}  // namespace moelab::core
