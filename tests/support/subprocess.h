#pragma once

// Runs a command line through the shell and captures its exit status, stdout and stderr.

#include <filesystem>
#include <string>

namespace moelab::tests {

struct CommandResult {
    int exit_code = -1;  // the process's exit status; -1 if it did not exit normally
    int signal = 0;      // the signal that killed it, else 0: a crash shows up here
    std::string out;
    std::string err;
};

CommandResult run_command(const std::string& command_line);

// The whole contents of `file` ("" when it cannot be read).
std::string read_text(const std::filesystem::path& file);

// Single-quotes `text` for the shell.
std::string shell_quote(const std::string& text);

}  // namespace moelab::tests
