#pragma once

// Writing files so that readers never see a partial one: write a temporary file next to the
// target, flush it to disk (fsync), rename it over the target, fsync the directory.

#include <filesystem>
#include <string_view>

namespace moelab::core {

void write_file_atomically(const std::filesystem::path& file, std::string_view contents);

// fsync of a file or directory; throws std::runtime_error on failure.
void sync_path(const std::filesystem::path& path);

}  // namespace moelab::core
