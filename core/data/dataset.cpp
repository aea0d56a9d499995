#include "core/data/dataset.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "core/config/recipe_printer.h"
#include "core/data/file_fingerprint.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/hash.h"
#include "core/system/read_file.h"
#include "moelab/sdk/parallel.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

std::string params_text(const sdk::Params& params) {
    std::string text;
    for (const auto& [name, value] : params.values()) {
        text += name + "=" + format_param_value(value) + ";";
    }
    return text;
}

}  // namespace

namespace {

// Documents of a corpus file one batch at a time, as split_documents would cut them (blank lines
// separate documents; each line keeps its '\n'), without reading the file whole.
class DocumentReader {
  public:
    explicit DocumentReader(const fs::path& file) : file_(file), in_(file, std::ios::binary) {
        if (!in_) throw FileError(file, "cannot be read: " + errno_text(errno));
    }

    // Up to about `bytes` of documents (at least one unless the file is exhausted).
    std::vector<std::string> next_batch(std::size_t bytes) {
        std::vector<std::string> batch;
        std::size_t taken = 0;
        std::string current;
        for (std::string line; taken < bytes && std::getline(in_, line);) {
            if (line.empty()) {
                if (!current.empty()) {
                    taken += current.size();
                    batch.push_back(std::move(current));
                }
                current.clear();
                continue;
            }
            current += line;
            current += '\n';
        }
        // The loop stops only between documents (right after a blank line) or at the end.
        if (in_.bad()) throw FileError(file_, "read failed: " + errno_text(errno));
        if (!current.empty()) batch.push_back(std::move(current));
        return batch;
    }

    // Bytes of the file consumed so far.
    std::uint64_t position() {
        const std::streamoff at = in_.tellg();
        return at >= 0 ? static_cast<std::uint64_t>(at) : 0;
    }

  private:
    fs::path file_;
    std::ifstream in_;
};

}  // namespace

std::int64_t encode_into_shard(const sdk::Tokenizer& tokenizer, const fs::path& file,
                               TokenShardWriter& shard, std::size_t batch_bytes,
                               const std::function<void(std::uint64_t)>& progress) {
    const std::int32_t eos = tokenizer.special_tokens().eos;
    const std::size_t workers = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
    DocumentReader reader(file);
    // The shard is written on its own thread while the next batch is read and encoded: the store
    // overlaps the tokenizer instead of adding to it (moelab_bench_encode measures the ratio).
    std::future<void> writing;
    for (;;) {
        std::vector<std::string> documents =
            reader.next_batch(std::max<std::size_t>(batch_bytes, 1));
        if (documents.empty()) break;
        std::vector<std::vector<std::int32_t>> encoded(documents.size());
        sdk::run_workers(workers, [&](std::size_t w) {
            for (std::size_t d = w; d < documents.size(); d += workers) {
                tokenizer.encode(documents[d], encoded[d]);
                if (eos >= 0) encoded[d].push_back(eos);
            }
        });
        if (writing.valid()) writing.get();  // the previous batch is written (or its error thrown)
        writing = std::async(std::launch::async, [&shard, batch = std::move(encoded)] {
            for (const auto& ids : batch) shard.add_document(ids);
        });
        if (progress) progress(reader.position());
    }
    if (writing.valid()) writing.get();
    return shard.documents();
}

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
    // The training text by its remembered content hash: a warm start reads no corpus file.
    key.add(params_text(resolved.tokenizer_params))
        .add(file_content_hash(files.train, recipe.data.cache_dir));
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
        const std::string text_hash = file_content_hash(file, recipe.data.cache_dir);
        const fs::path cached =
            fs::path(recipe.data.cache_dir) / "tokens" /
            fmt::format("{}-{}-{}.shard", split_name(split), dataset.tokenizer_hash_, text_hash);
        std::shared_ptr<const MappedTokenShard>& shard = split == Split::kTrain ? dataset.train_
                                                         : split == Split::kValidation
                                                             ? dataset.validation_
                                                             : dataset.test_;
        std::int64_t& bytes = split == Split::kTrain        ? dataset.train_bytes_
                              : split == Split::kValidation ? dataset.validation_bytes_
                                                            : dataset.test_bytes_;
        bytes = static_cast<std::int64_t>(fs::file_size(file));
        if (fs::exists(cached)) {
            try {
                shard = std::make_shared<const MappedTokenShard>(cached, vocab);
                continue;
            } catch (const FileError& error) {
                // A damaged cache entry is named and rebuilt, never trusted.
                log(fmt::format("{}: {}; encoding again", split_name(split), error.what()));
            }
        }
        TokenShardWriter writer(cached, vocab);
        // A line every few seconds while a large split is encoded.
        const auto started = std::chrono::steady_clock::now();
        auto last_report = started;
        auto progress = [&](std::uint64_t done) {
            const auto now = std::chrono::steady_clock::now();
            if (now - last_report < std::chrono::seconds(5) || done == 0) return;
            last_report = now;
            const double seconds = std::chrono::duration<double>(now - started).count();
            const double rate = static_cast<double>(done) / seconds;
            log(fmt::format("{}: encoded {:.2f} of {:.2f} GB ({:.0f} MB/s, ETA {:.0f} s)",
                            split_name(split), done / 1e9, bytes / 1e9, rate / 1e6,
                            (static_cast<double>(bytes) - static_cast<double>(done)) / rate));
        };
        const std::int64_t documents = call_plugin(*component.plugin, "encoding the corpus", [&] {
            try {
                return encode_into_shard(*dataset.tokenizer_, file, writer, 2u << 20, progress);
            } catch (const std::invalid_argument& bad_id) {
                throw PluginError(fmt::format("{}: encode produced {}",
                                              describe_plugin(*component.plugin), bad_id.what()));
            }
        });
        writer.finish();
        shard = std::make_shared<const MappedTokenShard>(cached, vocab);
        log(fmt::format("{}: {} documents, {} bytes -> {} tokens (cached in {})", split_name(split),
                        documents, bytes, shard->tokens().size(), cached.string()));
    }
    return dataset;
}

const MappedTokenShard& Dataset::shard(Split split) const {
    switch (split) {
        case Split::kTrain:
            return *train_;
        case Split::kValidation:
            return *validation_;
        case Split::kTest:
            return *test_;
    }
    return *train_;
}

TokenView Dataset::tokens(Split split) const { return shard(split).tokens(); }

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
    // From the shard's histogram: no pass over the ids (which would also page the whole split in).
    const std::uint64_t* stored = train_->token_counts();
    for (std::int64_t id = 0; id < vocab_size(); ++id)
        data[id] = static_cast<std::int64_t>(stored[id]);
    return counts;
}

}  // namespace moelab::core
