#include "core/data/corpus.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "core/system/file_error.h"

namespace moelab::core {

namespace fs = std::filesystem;

const char* split_name(Split split) {
    switch (split) {
        case Split::kTrain:
            return "train";
        case Split::kValidation:
            return "validation";
        case Split::kTest:
            return "test";
    }
    return "?";
}

const fs::path& CorpusFiles::file(Split split) const {
    switch (split) {
        case Split::kTrain:
            return train;
        case Split::kValidation:
            return validation;
        case Split::kTest:
            return test;
    }
    return train;
}

CorpusFiles corpus_files(const DataOptions& data) {
    const fs::path dir(data.corpus);
    return {dir / "train.txt", dir / "validation.txt", dir / "test.txt"};
}

void check_corpus(const Recipe& recipe) {
    const CorpusFiles files = corpus_files(recipe.data);
    const SourceLocation at = recipe.location_of("data.corpus");
    const std::string hint =
        recipe.data.corpus == "data/brown"
            ? " (bash tools/setup.sh fetches the Brown corpus there)"
            : " (a corpus is a directory with train.txt, validation.txt and test.txt)";
    std::error_code error;
    if (!fs::is_directory(recipe.data.corpus, error)) {
        throw ConfigError(ConfigIssue{
            at, "data.corpus",
            fmt::format("corpus directory '{}' does not exist{}", recipe.data.corpus, hint)});
    }
    for (Split split : {Split::kTrain, Split::kValidation, Split::kTest}) {
        const fs::path& file = files.file(split);
        if (!fs::is_regular_file(file, error) || fs::file_size(file, error) == 0) {
            throw ConfigError(ConfigIssue{
                at, "data.corpus",
                fmt::format("corpus split '{}' is missing or empty{}", file.string(), hint)});
        }
    }
}

void check_cache_dir(const Recipe& recipe) {
    const fs::path dir = recipe.data.cache_dir;
    const SourceLocation at = recipe.location_of("data.cache_dir");
    auto fail = [&](const std::string& message) {
        throw ConfigError(ConfigIssue{at, "data.cache_dir", message});
    };
    // The nearest part of the path that exists must be a directory we can create entries in.
    fs::path existing = dir.empty() ? fs::path(".") : dir;
    std::error_code error;
    while (!fs::exists(existing, error)) {
        if (!existing.has_parent_path() || existing.parent_path() == existing) {
            existing = ".";
            break;
        }
        existing = existing.parent_path();
    }
    if (!fs::is_directory(existing, error)) {
        fail(fmt::format("'{}' is not a directory (expected a directory for token caches)",
                         printable_path(existing)));
    }
    // Create and remove a probe directory: only an attempt tells (root passes access(2) checks,
    // and /proc or a read-only mount refuse anyway).
    std::string probe = (existing / ".moelab-probe-XXXXXX").string();
    if (::mkdtemp(probe.data()) == nullptr) {
        fail(
            fmt::format("cannot create the cache directory '{}': '{}' does not accept new "
                        "entries: {}",
                        printable_path(dir), printable_path(existing), errno_text(errno)));
    }
    ::rmdir(probe.c_str());
}

}  // namespace moelab::core
