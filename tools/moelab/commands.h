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

struct RunArgs {
    std::string recipe;
    std::vector<std::string> overrides;
    std::string out_dir;
    bool resume = false;
    long long stop_after_steps = 0;
};
int run_recipe(const RunArgs& args);

struct EvalArgs {
    std::string target;  // run directory or checkpoint
    std::string split = "validation";
    long long max_batches = -1;  // -1: the recipe's eval.max_batches
    int disable_top_experts = 0;
    bool json = false;
};
int evaluate_run(const EvalArgs& args);

}  // namespace moelab::cli
