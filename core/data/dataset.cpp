#include "core/data/dataset.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <fmt/format.h>

#include "core/config/recipe_printer.h"
#include "core/data/file_fingerprint.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/file_writer.h"
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

std::int64_t encode_into_shard(const sdk::Tokenizer& tokenizer, const CorpusFile& file,
                               TokenShardWriter& shard, std::size_t batch_bytes,
                               const std::function<void(std::uint64_t)>& progress) {
    const std::int32_t eos = tokenizer.special_tokens().eos;
    const std::size_t workers = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
    const std::unique_ptr<DocumentReader> reader = open_documents(file);
    // A pipeline, so that the store overlaps the tokenizer instead of adding to it
    // (moelab_bench_encode measures the ratio): the next batch is read on one thread and the
    // previous one written on another while this one is encoded on every core.
    struct Batch {
        std::vector<Document> documents;
        std::uint64_t position = 0;  // bytes of the file read once this batch was
    };
    auto read_batch = [&reader, batch_bytes] {
        Batch batch;
        batch.documents = reader->next_batch(std::max<std::size_t>(batch_bytes, 1));
        batch.position = reader->position();
        return batch;
    };
    // A batch is cut into pieces of consecutive documents, about kPiecesPerWorker per worker;
    // workers take the next piece as they finish one (a tokenizer's speed varies with the text,
    // and one fixed share per worker would leave the others waiting for the slowest) and
    // encode it into the piece's own chunk, narrowed and counted there (ShardChunk), so the writer
    // thread only checksums and writes; chunks are written in piece order, which is document
    // order. Two sets of chunks are filled and written in turn, and each worker's id buffer stays
    // with it: their capacity is reused from batch to batch instead of fresh memory being faulted
    // in and freed for every document. Declared before the futures, whose destructors wait for
    // threads that may still use them.
    constexpr std::size_t kPiecesPerWorker = 4;
    // Each on cache lines of its own: a tokenizer writes its output vector's end after every
    // piece (every byte, for bytes), and two workers' vectors sharing a line would hand it from
    // core to core at that rate.
    struct alignas(64) PieceChunk {
        explicit PieceChunk(std::int64_t vocab_size) : chunk(vocab_size) {}
        ShardChunk chunk;
    };
    struct alignas(64) WorkerIds {
        std::vector<std::int32_t> ids;
    };
    std::vector<PieceChunk> chunks[2];
    std::vector<WorkerIds> worker_ids(workers);
    std::vector<std::size_t> first_document;
    std::future<void> writing;
    std::future<Batch> reading = std::async(std::launch::async, read_batch);
    std::int64_t documents_read = 0;
    for (int turn = 0;; turn ^= 1) {
        const Batch batch = reading.get();
        const std::vector<Document>& documents = batch.documents;
        if (documents.empty()) break;
        reading = std::async(std::launch::async, read_batch);
        documents_read += static_cast<std::int64_t>(documents.size());
        // Piece p is documents [first_document[p], first_document[p + 1]), about an equal share
        // of the batch's bytes.
        const std::size_t pieces = std::min(documents.size(), kPiecesPerWorker * workers);
        std::size_t batch_size = 0;
        for (const Document& document : documents) batch_size += document.text.size();
        first_document.assign(pieces + 1, documents.size());
        std::size_t taken = 0, next = 0;
        for (std::size_t p = 0; p < pieces; ++p) {
            first_document[p] = next;
            while (next < documents.size() && taken * pieces < batch_size * (p + 1)) {
                taken += documents[next++].text.size();
            }
        }
        // Written by the batch before last, whose writing was waited for a batch ago; empty.
        std::vector<PieceChunk>& encoded = chunks[turn];
        while (encoded.size() < pieces) encoded.emplace_back(shard.vocab_size());
        std::atomic<std::size_t> next_piece{0};
        sdk::run_workers(std::min(workers, pieces), [&](std::size_t w) {
            std::vector<std::int32_t>& ids = worker_ids[w].ids;
            for (std::size_t p = next_piece++; p < pieces; p = next_piece++) {
                for (std::size_t d = first_document[p]; d < first_document[p + 1]; ++d) {
                    // The buffer keeps its capacity only while it is in proportion to the
                    // document: one huge document must not pin gigabytes for the rest of the file.
                    const std::string_view text = documents[d].text;
                    if (ids.capacity() > 2 * text.size() + (1u << 20)) {
                        std::vector<std::int32_t>().swap(ids);
                    }
                    ids.clear();
                    std::size_t prompt_tokens = 0;
                    try {
                        // A prompt is encoded on its own, so that no token straddles its end (Note
                        // [Response-only loss]).
                        if (documents[d].prompt_bytes > 0) {
                            tokenizer.encode(text.substr(0, documents[d].prompt_bytes), ids);
                            prompt_tokens = ids.size();
                        }
                        tokenizer.encode(text.substr(documents[d].prompt_bytes), ids);
                    } catch (const std::exception& error) {
                        // The tokenizer's failure, told apart from the file's (FileError).
                        throw std::invalid_argument(fmt::format("an error: {}", error.what()));
                    }
                    if (eos >= 0) ids.push_back(eos);
                    // Ids outside the vocabulary throw.
                    encoded[p].chunk.add_document(ids, prompt_tokens);
                }
            }
        });
        if (writing.valid()) writing.get();  // the previous batch is written (or its error thrown)
        writing = std::async(std::launch::async, [&shard, &encoded, pieces] {
            for (std::size_t p = 0; p < pieces; ++p) shard.add_chunk(encoded[p].chunk);
        });
        if (progress) progress(batch.position);
    }
    if (writing.valid()) writing.get();
    if (documents_read == 0) {
        throw FileError(file.path, file.format == DocumentFormat::kJsonl
                                       ? "holds no documents (every line is empty, or every "
                                         "text is the empty string)"
                                   : file.format == DocumentFormat::kPairs
                                       ? "holds no pairs (every line is empty, or every "
                                         "response is the empty string)"
                                       : "holds no documents (only blank lines)");
    }
    return shard.documents();
}

namespace {

// The content hash of `file` and, unless it is plain text, how it is decoded: a file's cache key.
std::string file_key(const CorpusFile& file, const fs::path& cache_dir) {
    const std::string content = file_content_hash(file.path, cache_dir);
    if (file.plain_text()) return content;
    return ContentHash().add(content).add(file.decoding_tag()).hex();
}

// A plain-text copy of a compressed or JSONL training file, for tokenizer plugins (which read
// plain text files): documents separated by blank lines, in the cache, written once.
fs::path plain_text_copy(const CorpusFile& file, const fs::path& cache_dir,
                         const std::function<void(const std::string&)>& log) {
    const fs::path copy = cache_dir / "text" / (file_key(file, cache_dir) + ".txt");
    if (fs::exists(copy)) return copy;
    fs::create_directories(copy.parent_path());
    const fs::path partial = copy.string() + fmt::format(".partial-{}", ::getpid());
    // Whatever stops the copy (a malformed line, a full disk) leaves no partial file behind.
    struct RemoveUnlessPublished {
        const fs::path& file;
        bool published = false;
        ~RemoveUnlessPublished() {
            std::error_code ignored;
            if (!published) fs::remove(file, ignored);
        }
    } guard{partial};
    {
        FileWriter out(partial);  // every failure a FileError with errno's reason
        const std::unique_ptr<DocumentReader> reader = open_documents(file);
        for (auto batch = reader->next_batch(2u << 20); !batch.empty();
             batch = reader->next_batch(2u << 20)) {
            for (const Document& document : batch) {
                const std::string& text = document.text;
                out.write(text.data(), text.size());
                // A blank line ends each document (text documents already end with '\n').
                out.write("\n\n", text.back() == '\n' ? 1 : 2);
            }
        }
        out.close();
    }
    sync_path(partial);
    fs::rename(partial, copy);
    guard.published = true;
    log(fmt::format("{}: decoded to plain text for the tokenizer ({})", printable_path(file.path),
                    copy.string()));
    return copy;
}

}  // namespace

Dataset Dataset::prepare(const ResolvedRecipe& resolved,
                         const std::function<void(const std::string&)>& log) {
    const Recipe& recipe = resolved.recipe;
    const std::vector<CorpusSource> sources = corpus_sources(recipe);
    const RegisteredTokenizer& component = *resolved.tokenizer;

    // The training files by their remembered content hashes: a warm start reads no corpus file.
    // (One plain-text source keys exactly as before sources existed, so caches stay valid.)
    ContentHash key;
    key.add(component.component.name).add(component.plugin->version);
    key.add(params_text(resolved.tokenizer_params));
    std::vector<const CorpusFile*> training_files;
    for (const CorpusSource& source : sources) {
        if (!source.training()) continue;
        training_files.push_back(&source.file(Split::kTrain));
        key.add(file_key(source.file(Split::kTrain), recipe.data.cache_dir));
    }
    const fs::path cached = fs::path(recipe.data.cache_dir) / "tokenizers" /
                            (component.component.name + "-" + key.hex() + ".txt");
    std::string serialized;
    if (fs::exists(cached)) {
        serialized = read_file(cached, kMaxTokenizerBytes, "tokenizer file");
        log(fmt::format("tokenizer '{}': loaded from {}", component.component.name,
                        cached.string()));
    } else {
        // Interpretation: the tokenizer learns from every training file once, whatever the
        // mixture weights (the weights say how often sequences are drawn, not what text exists).
        sdk::TokenizerTrainingData training;
        std::string names;
        for (const CorpusFile* file : training_files) {
            const fs::path text = file->plain_text()
                                      ? file->path
                                      : plain_text_copy(*file, recipe.data.cache_dir, log);
            training.files.push_back(text.string());
            names += (names.empty() ? "" : ", ") + file->path.string();
        }
        log(fmt::format("tokenizer '{}': training on {}", component.component.name, names));
        const auto tokenizer = train_tokenizer(component, training, resolved.tokenizer_params);
        serialized = call_plugin(*component.plugin, "serializing the tokenizer",
                                 [&] { return tokenizer->serialize(); });
        write_file_atomically(cached, serialized);
        log(fmt::format("tokenizer '{}': saved to {}", component.component.name, cached.string()));
    }
    return from_sources(resolved, sources, serialized, cached, log);
}

Dataset Dataset::prepare_with_tokenizer(const ResolvedRecipe& resolved,
                                        const std::filesystem::path& tokenizer_file,
                                        const std::function<void(const std::string&)>& log) {
    return from_sources(resolved, corpus_sources(resolved.recipe),
                        read_file(tokenizer_file, kMaxTokenizerBytes, "tokenizer file"),
                        tokenizer_file, log);
}

Dataset Dataset::from_sources(const ResolvedRecipe& resolved,
                              const std::vector<CorpusSource>& sources,
                              const std::string& serialized_tokenizer,
                              const fs::path& tokenizer_file,
                              const std::function<void(const std::string&)>& log) {
    const Recipe& recipe = resolved.recipe;
    const RegisteredTokenizer& component = *resolved.tokenizer;

    Dataset dataset;
    dataset.serialized_tokenizer_ = serialized_tokenizer;
    dataset.tokenizer_hash_ = ContentHash().add(serialized_tokenizer).hex();
    dataset.tokenizer_ =
        load_tokenizer(component, serialized_tokenizer, resolved.tokenizer_params, tokenizer_file);
    const std::int64_t vocab = dataset.tokenizer_->vocab_size();
    const bool several = sources.size() > 1;

    for (const CorpusSource& source : sources) {
        SourceTokens tokens;
        tokens.name = source.name;
        tokens.weight = source.weight;
        for (Split split : kSplits) {
            const CorpusFile& file = source.file(split);
            if (!file.present()) continue;
            // "train" for one source, "web/train" in a mixture.
            const std::string label =
                several ? source.name + "/" + split_name(split) : split_name(split);
            const fs::path cached =
                fs::path(recipe.data.cache_dir) / "tokens" /
                fmt::format("{}-{}-{}.shard", split_name(split), dataset.tokenizer_hash_,
                            file_key(file, recipe.data.cache_dir));
            std::shared_ptr<const MappedTokenShard>& shard = tokens.shards[static_cast<int>(split)];
            const auto bytes = static_cast<std::int64_t>(fs::file_size(file.path));
            // A compressed or JSONL file's size is not its text's (bits per byte would be wrong).
            tokens.bytes[static_cast<int>(split)] = file.plain_text() ? bytes : 0;
            if (fs::exists(cached)) {
                try {
                    shard = std::make_shared<const MappedTokenShard>(cached, vocab);
                    continue;
                } catch (const FileError& error) {
                    // A damaged cache entry is named and rebuilt, never trusted.
                    log(fmt::format("{}: {}; encoding again", label, error.what()));
                }
            }
            TokenShardWriter writer(cached, vocab);
            // A line every few seconds while a large file is encoded.
            const auto started = std::chrono::steady_clock::now();
            auto last_report = started;
            auto progress = [&](std::uint64_t done) {
                const auto now = std::chrono::steady_clock::now();
                if (now - last_report < std::chrono::seconds(5) || done == 0) return;
                last_report = now;
                const double seconds = std::chrono::duration<double>(now - started).count();
                const double rate = static_cast<double>(done) / seconds;
                log(fmt::format("{}: encoded {:.2f} of {:.2f} GB ({:.0f} MB/s, ETA {:.0f} s)",
                                label, done / 1e9, bytes / 1e9, rate / 1e6,
                                (static_cast<double>(bytes) - static_cast<double>(done)) / rate));
            };
            // Only the tokenizer's own calls are the plugin's doing; reading the file and writing
            // the shard fail as files, named by path.
            std::int64_t documents = 0;
            try {
                documents =
                    encode_into_shard(*dataset.tokenizer_, file, writer, 2u << 20, progress);
            } catch (const std::invalid_argument& bad_output) {
                throw PluginError(fmt::format("{}: encoding {}: encode produced {}",
                                              describe_plugin(*component.plugin),
                                              printable_path(file.path), bad_output.what()));
            }
            writer.finish();
            shard = std::make_shared<const MappedTokenShard>(cached, vocab);
            log(fmt::format("{}: {} documents, {} bytes -> {} tokens (cached in {})", label,
                            documents, bytes, shard->tokens().size(), cached.string()));
        }
        dataset.sources_.push_back(std::move(tokens));
    }
    return dataset;
}

std::int64_t Dataset::total_tokens(Split split) const {
    std::int64_t total = 0;
    for (const SourceTokens& source : sources_) {
        if (source.has(split)) total += source.tokens(split).size();
    }
    return total;
}

at::Tensor Dataset::training_token_counts() const {
    at::Tensor counts = at::zeros({vocab_size()}, at::kLong);
    std::int64_t* data = counts.data_ptr<std::int64_t>();
    // From the shards' histograms: no pass over the ids (which would also page the splits in).
    for (const SourceTokens& source : sources_) {
        if (!source.has(Split::kTrain)) continue;
        const std::uint64_t* stored = source.shard(Split::kTrain).token_counts();
        for (std::int64_t id = 0; id < vocab_size(); ++id) {
            data[id] += static_cast<std::int64_t>(stored[id]);
        }
    }
    return counts;
}

}  // namespace moelab::core
