#pragma once

// The plain-text corpus of a recipe: a directory with one file per split.

#include <filesystem>
#include <string>

#include "core/config/options.h"

namespace moelab::core {

enum class Split { kTrain, kValidation, kTest };
const char* split_name(Split split);  // "train", "validation", "test"

struct CorpusFiles {
    std::filesystem::path train;
    std::filesystem::path validation;
    std::filesystem::path test;

    const std::filesystem::path& file(Split split) const;
};

CorpusFiles corpus_files(const DataOptions& data);

// ConfigError at data.corpus when the directory or a split file is missing or empty.
void check_corpus(const Recipe& recipe);

// ConfigError at data.cache_dir when the cache directory cannot be created or written (a path
// through a file, /proc, a read-only mount). Creates nothing.
void check_cache_dir(const Recipe& recipe);

}  // namespace moelab::core
