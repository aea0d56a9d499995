#pragma once

// The subcommands, as plain functions returning an exit code (cli_support.h). main.cpp maps the
// command line onto them; only it sees CLI11.

#include <string>
#include <vector>

namespace moelab::cli {

std::string version_text();

int list_plugins();
int show_plugin_info(const std::string& name);

struct CheckArgs {
    std::string recipe;
    std::vector<std::string> overrides;  // --set key=value
};
int check_recipe(const CheckArgs& args);

}  // namespace moelab::cli
