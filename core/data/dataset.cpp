#include "core/data/dataset.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "core/config/recipe_printer.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/atomic_file.h"
#include "core/system/hash.h"
#include "core/system/read_file.h"
#include "moelab/sdk/parallel.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

constexpr char kTokenFileMagic[8] = {'M', 'L', 'T', 'O', 'K', 'E', 'N', '1'};

std::string params_text(const sdk::Params& params) {
    std::string text;
    for (const auto& [name, value] : params.values()) {
        text += name + "=" + format_param_value(value) + ";";
    }
    return text;
}

// Encodes every document followed by the end-of-document id, with the documents spread over
// threads (Tokenizer::encode is const and thread-safe by contract).
std::vector<std::int32_t> encode_documents(const sdk::Tokenizer& tokenizer,
                                           const std::vector<std::string>& documents) {
    const std::int32_t eos = tokenizer.special_tokens().eos;
    const std::size_t workers = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
    std::vector<std::vector<std::int32_t>> pieces(workers);
    sdk::run_workers(workers, [&](std::size_t w) {
        // Contiguous ranges keep the document order when the pieces are concatenated.
        const std::size_t begin = documents.size() * w / workers;
        const std::size_t end = documents.size() * (w + 1) / workers;
        for (std::size_t d = begin; d < end; ++d) {
            tokenizer.encode(documents[d], pieces[w]);
            if (eos >= 0) pieces[w].push_back(eos);
        }
    });
    std::vector<std::int32_t> ids;
    for (const auto& piece : pieces) ids.insert(ids.end(), piece.begin(), piece.end());
    return ids;
}

void write_token_file(const fs::path& file, const std::vector<std::int32_t>& ids,
                      std::int64_t vocab_size) {
    std::string bytes(sizeof kTokenFileMagic + 16 + ids.size() * sizeof(std::int32_t), '\0');
    char* out = bytes.data();
    std::memcpy(out, kTokenFileMagic, sizeof kTokenFileMagic);
    const std::uint64_t count = ids.size();
    const std::uint64_t vocab = static_cast<std::uint64_t>(vocab_size);
    std::memcpy(out + 8, &count, 8);  // little-endian hosts only (x86-64, aarch64)
    std::memcpy(out + 16, &vocab, 8);
    std::memcpy(out + 24, ids.data(), ids.size() * sizeof(std::int32_t));
    write_file_atomically(file, bytes);
}

// nullopt if the file is missing or does not look like a complete token file.
std::optional<std::vector<std::int32_t>> read_token_file(const fs::path& file,
                                                         std::int64_t vocab_size) {
    // The size must match the header before anything is allocated: a damaged count must not
    // become a huge allocation.
    std::uint64_t file_size = 0;
    try {
        file_size = regular_file_size(file, "token cache file");
    } catch (const FileError&) {
        return std::nullopt;
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) return std::nullopt;
    char magic[8];
    std::uint64_t count = 0, vocab = 0;
    in.read(magic, 8);
    in.read(reinterpret_cast<char*>(&count), 8);
    in.read(reinterpret_cast<char*>(&vocab), 8);
    if (!in || std::memcmp(magic, kTokenFileMagic, 8) != 0 ||
        vocab != static_cast<std::uint64_t>(vocab_size) || file_size < 24 ||
        count != (file_size - 24) / 4 || (file_size - 24) % 4 != 0) {
        return std::nullopt;
    }
    std::vector<std::int32_t> ids(count);
    in.read(reinterpret_cast<char*>(ids.data()), static_cast<std::streamsize>(count * 4));
    if (!in) return std::nullopt;
    return ids;
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text) {
    std::vector<std::string> documents;
    std::string current;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) {
            if (!current.empty()) documents.push_back(std::move(current));
            current.clear();
            continue;
        }
        current += line;
        current += '\n';
    }
    if (!current.empty()) documents.push_back(std::move(current));
    return documents;
}

Dataset Dataset::prepare(const ResolvedRecipe& resolved,
                         const std::function<void(const std::string&)>& log) {
    const Recipe& recipe = resolved.recipe;
    const CorpusFiles files = corpus_files(recipe.data);
    const RegisteredTokenizer& component = *resolved.tokenizer;

    ContentHash key;
    key.add(component.component.name).add(component.plugin->version);
    key.add(params_text(resolved.tokenizer_params)).add_file(files.train);
    const fs::path cached = fs::path(recipe.data.cache_dir) / "tokenizers" /
                            (component.component.name + "-" + key.hex() + ".txt");
    std::string serialized;
    if (fs::exists(cached)) {
        serialized = read_file(cached, kMaxTokenizerBytes, "tokenizer file");
        log(fmt::format("tokenizer '{}': loaded from {}", component.component.name,
                        cached.string()));
    } else {
        log(fmt::format("tokenizer '{}': training on {}", component.component.name,
                        files.train.string()));
        const auto tokenizer = train_tokenizer(component, sdk::TokenizerTrainingData{{files.train}},
                                               resolved.tokenizer_params);
        serialized = call_plugin(*component.plugin, "serializing the tokenizer",
                                 [&] { return tokenizer->serialize(); });
        write_file_atomically(cached, serialized);
        log(fmt::format("tokenizer '{}': saved to {}", component.component.name, cached.string()));
    }
    return prepare_with_tokenizer(resolved, serialized, log);
}

Dataset Dataset::prepare_with_tokenizer(const ResolvedRecipe& resolved,
                                        const std::string& serialized_tokenizer,
                                        const std::function<void(const std::string&)>& log) {
    const Recipe& recipe = resolved.recipe;
    const CorpusFiles files = corpus_files(recipe.data);
    const RegisteredTokenizer& component = *resolved.tokenizer;

    Dataset dataset;
    dataset.serialized_tokenizer_ = serialized_tokenizer;
    dataset.tokenizer_hash_ = ContentHash().add(serialized_tokenizer).hex();
    dataset.tokenizer_ = load_tokenizer(component, serialized_tokenizer, resolved.tokenizer_params);
    const std::int64_t vocab = dataset.tokenizer_->vocab_size();

    for (Split split : {Split::kTrain, Split::kValidation, Split::kTest}) {
        const fs::path& file = files.file(split);
        const std::string text_hash = ContentHash().add_file(file).hex();
        const fs::path cached =
            fs::path(recipe.data.cache_dir) / "tokens" /
            fmt::format("{}-{}-{}.bin", split_name(split), dataset.tokenizer_hash_, text_hash);
        std::vector<std::int32_t>& ids = split == Split::kTrain        ? dataset.train_
                                         : split == Split::kValidation ? dataset.validation_
                                                                       : dataset.test_;
        std::int64_t& bytes = split == Split::kTrain        ? dataset.train_bytes_
                              : split == Split::kValidation ? dataset.validation_bytes_
                                                            : dataset.test_bytes_;
        bytes = static_cast<std::int64_t>(fs::file_size(file));
        if (auto loaded = read_token_file(cached, vocab)) {
            ids = std::move(*loaded);
            continue;
        }
        const std::vector<std::string> documents =
            split_documents(read_file(file, kMaxCorpusFileBytes, "corpus file"));
        ids = call_plugin(*component.plugin, "encoding the corpus",
                          [&] { return encode_documents(*dataset.tokenizer_, documents); });
        for (std::int32_t id : ids) {
            if (id < 0 || id >= vocab) {
                throw PluginError(fmt::format("{}: encode produced id {} outside [0, {})",
                                              describe_plugin(*component.plugin), id, vocab));
            }
        }
        write_token_file(cached, ids, vocab);
        log(fmt::format("{}: {} documents, {} bytes -> {} tokens (cached in {})", split_name(split),
                        documents.size(), bytes, ids.size(), cached.string()));
    }
    return dataset;
}

const std::vector<std::int32_t>& Dataset::tokens(Split split) const {
    switch (split) {
        case Split::kTrain:
            return train_;
        case Split::kValidation:
            return validation_;
        case Split::kTest:
            return test_;
    }
    return train_;
}

std::int64_t Dataset::bytes(Split split) const {
    switch (split) {
        case Split::kTrain:
            return train_bytes_;
        case Split::kValidation:
            return validation_bytes_;
        case Split::kTest:
            return test_bytes_;
    }
    return 0;
}

at::Tensor Dataset::training_token_counts() const {
    at::Tensor counts = at::zeros({vocab_size()}, at::kLong);
    std::int64_t* data = counts.data_ptr<std::int64_t>();
    for (std::int32_t id : train_) ++data[id];
    return counts;
}

}  // namespace moelab::core
