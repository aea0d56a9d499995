// moelab: the command-line entry point. Subcommands live in *_command.cpp; exit codes in
// cli_support.h.

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"

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
