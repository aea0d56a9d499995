#include "core/data/corpus.h"

#include <fmt/format.h>

namespace moelab::core {

namespace fs = std::filesystem;

const char* split_name(Split split) {
    switch (split) {
        case Split::kTrain: return "train";
        case Split::kValidation: return "validation";
        case Split::kTest: return "test";
    }
    return "?";
}

const fs::path& CorpusFiles::file(Split split) const {
    switch (split) {
        case Split::kTrain: return train;
        case Split::kValidation: return validation;
        case Split::kTest: return test;
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

}  // namespace moelab::core
