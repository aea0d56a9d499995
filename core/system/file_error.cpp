#include "core/system/file_error.h"

#include <cstring>

#include <fmt/format.h>

#include "core/system/printable.h"

namespace moelab::core {

FileError::FileError(std::filesystem::path path, std::string reason)
    : std::runtime_error(fmt::format("{}: {}", printable_path(path), reason)),
      path_(std::move(path)),
      reason_(std::move(reason)) {}

std::string printable_path(const std::filesystem::path& path) {
    return path.empty() ? std::string("''") : printable(path.native(), 160);
}

std::string errno_text(int errno_value) {
    char buffer[256] = {};
    // GNU strerror_r returns the message (possibly not in `buffer`).
    return ::strerror_r(errno_value, buffer, sizeof buffer);
}

}  // namespace moelab::core
