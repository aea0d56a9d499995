#pragma once

// The corpus of a recipe: one or more named sources, each with validation and test files and, if
// it is trained on, a training file and a mixture weight. `data.corpus = DIR` is the one-source
// form; `[[data.source]]` tables name several (docs/data.md).
//
// Files are plain text (documents separated by blank lines) or JSONL (one JSON object per line,
// the document's text in a named field), either optionally compressed with gzip (.gz) or zstd
// (.zst). In a source's directory a split's file is found by name: train.txt, train.jsonl,
// train.json or train.ndjson, each possibly with .gz or .zst appended (likewise validation, test).

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config/options.h"

namespace moelab::core {

enum class Split { kTrain, kValidation, kTest };
const char* split_name(Split split);  // "train", "validation", "test"
inline constexpr Split kSplits[] = {Split::kTrain, Split::kValidation, Split::kTest};

// kPairs: JSONL whose objects hold a prompt and a response; the loss counts the response only.
enum class DocumentFormat { kText, kJsonl, kPairs };
enum class Compression { kNone, kGzip, kZstd };

struct CorpusFile {
    std::filesystem::path path;  // empty: the source has no file for this split
    DocumentFormat format = DocumentFormat::kText;
    Compression compression = Compression::kNone;
    std::string text_field;                    // kJsonl only
    std::string prompt_field, response_field;  // kPairs only

    bool present() const { return !path.empty(); }
    // Plain uncompressed text: what tokenizer plugins read directly.
    bool plain_text() const {
        return format == DocumentFormat::kText && compression == Compression::kNone;
    }
    // How the file's bytes become documents, for cache keys: "" for plain text, else e.g.
    // "jsonl:text+zstd".
    std::string decoding_tag() const;
};

struct CorpusSource {
    std::string name;
    double weight = 0;  // mixture weight; 0 for an evaluation-only source (eval_only = true)
    std::string key;    // where the recipe defines it: "data.corpus" or "data.source[i]"
    std::array<CorpusFile, 3> files;

    const CorpusFile& file(Split split) const { return files[static_cast<int>(split)]; }
    bool training() const { return file(Split::kTrain).present(); }
};

// The recipe's sources with their files found and checked: each file present is a non-empty
// regular file, every source has validation and test files and, unless it says eval_only = true,
// a training file; at least one source is trained on. ConfigError at the source's key otherwise
// (weights and eval_only against train files are checked when the recipe is loaded).
std::vector<CorpusSource> corpus_sources(const Recipe& recipe);

// ConfigError at data.corpus / data.source[i] when corpus_sources would throw.
void check_corpus(const Recipe& recipe);

// ConfigError at data.cache_dir when the cache directory cannot be created or written (a path
// through a file, /proc, a read-only mount). Creates nothing.
void check_cache_dir(const Recipe& recipe);

}  // namespace moelab::core
