#pragma once

// Whole-file reads for the small text and JSON files of a run (recipes, tokenizers, state).

#include <filesystem>
#include <string>

namespace moelab::core {

// The file's bytes. Throws std::runtime_error naming the file if it cannot be read.
std::string read_file(const std::filesystem::path& file);

}  // namespace moelab::core
