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

void add_run_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<RunArgs>();
    CLI::App* command = app.add_subcommand(
        "run", "Train the model a recipe describes; progress on the terminal, metrics, "
               "checkpoints and a summary in the run directory");
    command->add_option("recipe", args->recipe, "Recipe file (TOML)")->required();
    command->add_option("--set", args->overrides,
                        "Override a key: section.key=value (TOML value; repeatable)");
    command->add_option("--out", args->out_dir,
                        "Run directory (default runs/<recipe name>-<timestamp>)");
    command->add_flag("--resume", args->resume,
                      "Continue the run in --out from its latest checkpoint");
    command->add_option("--stop-after", args->stop_after_steps,
                        "Stop with a checkpoint after this many steps (continue with --resume)")
        ->check(CLI::NonNegativeNumber);
    command->callback([&exit_code, args] {
        if (args->resume && args->out_dir.empty()) {
            exit_code = run_guarded([]() -> int {
                throw UsageError("--resume needs --out RUN_DIR naming the run to continue");
            });
            return;
        }
        exit_code = run_guarded([&] { return run_recipe(*args); });
    });
}

void add_eval_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<EvalArgs>();
    CLI::App* command = app.add_subcommand(
        "eval", "Evaluate a run's latest checkpoint (or a given one): loss, perplexity and "
                "routing statistics per MoE layer");
    command->add_option("target", args->target, "Run directory or checkpoint directory")
        ->required();
    command->add_option("--split", args->split, "validation (default), test or train");
    command->add_option("--max-batches", args->max_batches,
                        "Evaluate at most this many batches (default: the recipe's "
                        "eval.max_batches)");
    command->add_option("--disable-top-experts", args->disable_top_experts,
                        "Robustness probe: remove each router's N most probable experts per "
                        "token before selection")
        ->check(CLI::NonNegativeNumber);
    command->add_flag("--json", args->json, "Print the result as JSON");
    command->callback([&exit_code, args] {
        exit_code = run_guarded([&] { return evaluate_run(*args); });
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
    add_run_command(app, exit_code);
    add_eval_command(app, exit_code);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);
        return code == 0 ? kExitOk : kExitUsageError;
    }
    return exit_code;
}
