#include "cli_support.h"

#include <cstdlib>
#include <filesystem>
#include <new>
#include <string_view>

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/diagnostics.h"
#include "core/plugin/plugin_error.h"
#include "core/system/file_error.h"
#include "core/system/printable.h"
#include "core/train/trainer.h"

namespace moelab::cli {

namespace {

// One error for the terminal: escaped, long lines shortened, at most a screenful of lines.
void print_error(std::string_view text) {
    fmt::print(stderr, "error: {}\n", core::printable_lines(text));
}

}  // namespace

int run_guarded(const std::function<int()>& command) {
    // Backtraces that LibTorch appends to its messages are for developers; MOELAB_BACKTRACE=1
    // keeps them.
    try {
        return command();
    } catch (const core::ConfigError& error) {
        for (const std::string& line : core::format_issues(error.issues())) {
            fmt::print(stderr, "error: {}\n", line);
        }
        return kExitUsageError;
    } catch (const core::RunSetupError& error) {
        print_error(error.what());
        return kExitUsageError;
    } catch (const UsageError& error) {
        print_error(error.what());
        return kExitUsageError;
    } catch (const core::PluginError& error) {
        print_error(error.what());
        return kExitRuntimeError;
    } catch (const std::filesystem::filesystem_error& error) {
        // The library's wording ("filesystem error: status: ...") is not for users: the path and
        // the system's reason are.
        print_error(
            fmt::format("{}: {}", core::printable_path(error.path1()), error.code().message()));
        return kExitRuntimeError;
    } catch (const c10::Error& error) {
        const char* backtrace = std::getenv("MOELAB_BACKTRACE");
        const bool keep = backtrace != nullptr && std::string_view(backtrace) == "1";
        print_error(keep ? error.what() : error.what_without_backtrace());
        return kExitRuntimeError;
    } catch (const std::bad_alloc&) {
        print_error("out of memory");
        return kExitRuntimeError;
    } catch (const std::exception& error) {
        print_error(error.what());
        return kExitRuntimeError;
    } catch (...) {
        print_error("unknown exception");
        return kExitRuntimeError;
    }
}

TrainedTarget trained_target(const std::string& target) {
    const std::filesystem::path path(target);
    if (!std::filesystem::exists(path)) {
        throw UsageError(fmt::format("{}: no such run directory or checkpoint", target));
    }
    TrainedTarget trained;
    trained.step_dir = core::resolve_checkpoint(path);
    trained.run_dir = core::run_directory_of(path, trained.step_dir);
    return trained;
}

void add_device_overrides(const std::string& device, std::vector<std::string>& overrides) {
    if (device.empty()) return;
    overrides.push_back("train.device=" + device);
    if (device == "cpu") {
        overrides.push_back("model.dtype=float32");
        fmt::print(stderr, "running on the CPU in float32 (--device cpu)\n");
    }
}

}  // namespace moelab::cli
