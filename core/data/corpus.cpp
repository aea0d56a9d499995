#include "core/data/corpus.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
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

std::string CorpusFile::decoding_tag() const {
    if (plain_text()) return "";
    std::string tag = format == DocumentFormat::kJsonl ? "jsonl:" + text_field
                      : format == DocumentFormat::kPairs
                          ? "pairs:" + prompt_field + "," + response_field
                          : "text";
    if (compression == Compression::kGzip) tag += "+gzip";
    if (compression == Compression::kZstd) tag += "+zstd";
    return tag;
}

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() &&
           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Compression from the last extension, format from the one before it (or as the recipe says).
CorpusFile describe_file(const fs::path& path, const DataSourceOptions& options) {
    CorpusFile file;
    file.path = path;
    std::string name = path.filename().string();
    if (ends_with(name, ".gz")) {
        file.compression = Compression::kGzip;
        name.resize(name.size() - 3);
    } else if (ends_with(name, ".zst")) {
        file.compression = Compression::kZstd;
        name.resize(name.size() - 4);
    }
    const bool json_name =
        ends_with(name, ".jsonl") || ends_with(name, ".json") || ends_with(name, ".ndjson");
    const bool jsonl = options.format == "jsonl" || (options.format == "auto" && json_name);
    if (options.format == "pairs") {
        file.format = DocumentFormat::kPairs;
        file.prompt_field = options.prompt_field;
        file.response_field = options.response_field;
    } else {
        file.format = jsonl ? DocumentFormat::kJsonl : DocumentFormat::kText;
        if (jsonl) file.text_field = options.text_field;
    }
    return file;
}

// The one file of `split` in `dir`, or an empty path; a ConfigError when several match.
fs::path find_split_file(const fs::path& dir, Split split, const SourceLocation& at,
                         const std::string& key) {
    std::vector<fs::path> found;
    std::error_code error;
    for (const char* extension : {".txt", ".jsonl", ".json", ".ndjson"}) {
        for (const char* compression : {"", ".gz", ".zst"}) {
            const fs::path candidate =
                dir / (std::string(split_name(split)) + extension + compression);
            if (fs::exists(candidate, error)) found.push_back(candidate);
        }
    }
    if (found.size() > 1) {
        throw ConfigError(ConfigIssue{
            at, key,
            fmt::format("'{}' holds {} {} files ({} and {}); keep one, or name it with {} = "
                        "\"...\"",
                        printable_path(dir), found.size(), split_name(split),
                        printable_path(found[0]), printable_path(found[1]), split_name(split))});
    }
    return found.empty() ? fs::path() : found[0];
}

std::string hint_for(const Recipe& recipe, const DataSourceOptions& source) {
    if (recipe.data.sources.empty() && source.dir == "data/brown") {
        return " (bash tools/setup.sh fetches the Brown corpus there)";
    }
    return " (a source directory holds train, validation and test files: train.txt, "
           "train.jsonl, train.json or train.ndjson, optionally .gz or .zst)";
}

CorpusSource resolve_source(const Recipe& recipe, const DataSourceOptions& options,
                            const std::string& key) {
    const SourceLocation at = recipe.location_of(key);
    const std::string hint = hint_for(recipe, options);
    auto fail = [&](const std::string& subkey, const std::string& message) {
        const std::string full = subkey.empty() ? key : key + "." + subkey;
        throw ConfigError(ConfigIssue{recipe.location_of(full), full, message});
    };
    const bool single = recipe.data.sources.empty();  // data.corpus
    std::error_code error;
    if (!options.dir.empty() && !fs::is_directory(options.dir, error)) {
        fail(single ? "" : "dir",
             fmt::format("{} directory '{}' does not exist{}", single ? "corpus" : "source",
                         printable_path(options.dir), hint));
    }
    CorpusSource source;
    source.name = options.name;
    source.key = key;
    const std::string* explicit_files[] = {&options.train, &options.validation, &options.test};
    for (Split split : kSplits) {
        const std::string& named = *explicit_files[static_cast<int>(split)];
        const bool skipped = split == Split::kTrain && options.eval_only;
        const fs::path path = skipped               ? fs::path()
                              : !named.empty()      ? fs::path(named)
                              : options.dir.empty() ? fs::path()
                                                    : find_split_file(options.dir, split, at, key);
        // Where the file was (or should have been) named: its own key, else dir, else the table.
        const std::string subkey = single                 ? ""
                                   : !named.empty()       ? split_name(split)
                                   : !options.dir.empty() ? "dir"
                                                          : "";
        if (path.empty()) {
            if (skipped) continue;
            // Never silently evaluation-only: that is said with eval_only = true.
            const std::string eval_only_hint =
                split == Split::kTrain ? " (a source that is only evaluated says eval_only = true)"
                                       : "";
            fail(subkey, fmt::format("no {} file{}{}{}", split_name(split),
                                     options.dir.empty()
                                         ? ""
                                         : fmt::format(" in '{}'", printable_path(options.dir)),
                                     eval_only_hint, hint));
        }
        if (!fs::is_regular_file(path, error) || fs::file_size(path, error) == 0) {
            fail(subkey, fmt::format("{} file '{}' is missing or empty{}", split_name(split),
                                     printable_path(path), hint));
        }
        source.files[static_cast<int>(split)] = describe_file(path, options);
    }
    if (source.training()) source.weight = options.weight;
    return source;
}

}  // namespace

std::vector<CorpusSource> corpus_sources(const Recipe& recipe) {
    std::vector<CorpusSource> sources;
    if (recipe.data.sources.empty()) {
        DataSourceOptions single;
        const fs::path dir(recipe.data.corpus);
        single.name = dir.filename().empty() ? "corpus" : dir.filename().string();
        single.dir = recipe.data.corpus;
        if (single.dir.empty()) single.dir = ".";
        sources.push_back(resolve_source(recipe, single, "data.corpus"));
        return sources;
    }
    for (std::size_t i = 0; i < recipe.data.sources.size(); ++i) {
        sources.push_back(
            resolve_source(recipe, recipe.data.sources[i], fmt::format("data.source[{}]", i)));
    }
    if (std::none_of(sources.begin(), sources.end(),
                     [](const CorpusSource& s) { return s.training(); })) {
        throw ConfigError(ConfigIssue{recipe.location_of("data.source"), "data.source",
                                      "every source is eval_only: at least one [[data.source]] "
                                      "must be trained on"});
    }
    return sources;
}

void check_corpus(const Recipe& recipe) { corpus_sources(recipe); }

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
