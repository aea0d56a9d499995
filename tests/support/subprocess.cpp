#include "subprocess.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include "temp_dir.h"

namespace moelab::tests {

std::string read_text(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string shell_quote(const std::string& text) {
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    return quoted + "'";
}

CommandResult run_command(const std::string& command_line) {
    namespace fs = std::filesystem;
    const TempDir dir("moelab-command");
    const fs::path out = dir / "out";
    const fs::path err = dir / "err";
    // A subshell so that a crash of the command is reported as a signal, not as a shell status.
    const std::string wrapped =
        "(" + command_line + ") >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string());
    const int status = std::system(wrapped.c_str());
    CommandResult result;
    if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
        // The shell reports a child killed by signal N as exit status 128 + N.
        if (result.exit_code > 128) result.signal = result.exit_code - 128;
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    result.out = read_text(out);
    result.err = read_text(err);
    return result;
}

}  // namespace moelab::tests
