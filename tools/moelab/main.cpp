// moelab: the command-line entry point. This file maps the command line onto the subcommand
// functions of commands.h; exit codes are in cli_support.h.

#include <memory>

#include <CLI/CLI.hpp>

#include "cli_support.h"
#include "commands.h"

namespace moelab::cli {
namespace {

void add_plugins_command(CLI::App& app, int& exit_code) {
    CLI::App* plugins = app.add_subcommand(
        "plugins", "List the components of every plugin on the search path (built-in plugins, "
                   "then MOELAB_PLUGIN_PATH)");
    CLI::App* info = plugins->add_subcommand("info", "Show a component's options and defaults");
    auto name = std::make_shared<std::string>();
    info->add_option("name", *name, "Component name, as listed by `moelab plugins`")->required();
    info->callback([&exit_code, name] {
        exit_code = run_guarded([&] { return show_plugin_info(*name); });
    });
    plugins->callback([&exit_code, plugins] {
        if (plugins->get_subcommands().empty()) exit_code = run_guarded(list_plugins);
    });
}

void add_check_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<CheckArgs>();
    CLI::App* command = app.add_subcommand(
        "check", "Parse and validate a recipe, resolve its plugins and print the resolved recipe "
                 "(no training)");
    command->add_option("recipe", args->recipe, "Recipe file (TOML)")->required();
    command->add_option("--set", args->overrides,
                        "Override a key: section.key=value (TOML value; repeatable)");
    command->callback([&exit_code, args] {
        exit_code = run_guarded([&] { return check_recipe(*args); });
    });
}

}  // namespace
}  // namespace moelab::cli

int main(int argc, char** argv) {
    using namespace moelab::cli;
    CLI::App app{"moelab: train and compare Mixture-of-Experts language models built from plugins"};
    app.set_version_flag("--version", [] { return version_text(); },
                         "Show versions, build fingerprint and the loaded BLAS library");
    app.require_subcommand(1);
    int exit_code = kExitOk;
    add_plugins_command(app, exit_code);
    add_check_command(app, exit_code);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);
        return code == 0 ? kExitOk : kExitUsageError;
    }
    return exit_code;
}
