#pragma once

// Each subcommand adds itself to the CLI11 app; its callback sets the exit code.

#include <string>

#include <CLI/CLI.hpp>

namespace moelab::cli {

std::string version_text();
void add_plugins_command(CLI::App& app, int& exit_code);
void add_check_command(CLI::App& app, int& exit_code);

}  // namespace moelab::cli
