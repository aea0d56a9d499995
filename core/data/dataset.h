#pragma once

// A run's data: the tokenizer (trained on the training files by its plugin, or loaded from the
// cache) and every source's splits as token id streams (core/data/corpus.h names the sources).
// Each document is encoded on its own and followed by the tokenizer's end-of-document id. Both the
// tokenizer and the encoded files are cached under data.cache_dir, keyed by content hashes
// (tokenizer: plugin, version, options and training files; tokens: the serialized tokenizer, the
// file's content and how it is decoded), so a file is tokenized once and a changed file
// re-tokenizes only itself. Files are encoded as they are read, a batch of documents at a time,
// into token shards (core/data/token_shard.h) that are then memory-mapped: neither the text nor
// the ids of a split are ever held whole in memory.

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/data/corpus.h"
#include "core/data/document_reader.h"
#include "core/data/token_shard.h"
#include "core/data/token_view.h"
#include "core/plugin/resolve.h"
#include "moelab/sdk/tokenizer.h"

namespace moelab::core {

// One source's token streams.
struct SourceTokens {
    std::string name;
    double weight = 0;  // mixture weight; 0: evaluation only (no training split)
    std::array<std::shared_ptr<const MappedTokenShard>, 3> shards;  // null: no such split
    // Size of each split's text: the file's size for plain text, 0 (unknown) for compressed and
    // JSONL files, whose size on disk is not their text's.
    std::array<std::int64_t, 3> bytes{};

    bool has(Split split) const { return shards[static_cast<int>(split)] != nullptr; }
    const MappedTokenShard& shard(Split split) const { return *shards[static_cast<int>(split)]; }
    // Valid as long as the dataset (or a copy of it) lives.
    TokenView tokens(Split split) const { return shard(split).tokens(); }
};

class Dataset {
  public:
    // `log` receives one line per notable step ("tokenizer: loaded from cache ...").
    static Dataset prepare(const ResolvedRecipe& resolved,
                           const std::function<void(const std::string&)>& log);

    // A dataset with the tokenizer serialized in `tokenizer_file` (moelab eval, --resume: the
    // run's own tokenizer); a file its plugin cannot load is a FileError naming it.
    static Dataset prepare_with_tokenizer(const ResolvedRecipe& resolved,
                                          const std::filesystem::path& tokenizer_file,
                                          const std::function<void(const std::string&)>& log);

    const sdk::Tokenizer& tokenizer() const { return *tokenizer_; }
    const std::string& serialized_tokenizer() const { return serialized_tokenizer_; }
    const std::string& tokenizer_hash() const { return tokenizer_hash_; }
    std::int64_t vocab_size() const { return tokenizer_->vocab_size(); }

    // In recipe order; training sources have a train split.
    const std::vector<SourceTokens>& sources() const { return sources_; }
    // Tokens of `split` summed over the sources that have it.
    std::int64_t total_tokens(Split split) const;

    // Occurrences of each token id in the training splits of all training sources: (vocab_size,)
    // int64, from the shards' histograms.
    at::Tensor training_token_counts() const;

  private:
    // The sources' token shards, from the cache or encoded now (corpus_sources() resolved once),
    // with the tokenizer serialized in `tokenizer_file` (its text already read).
    static Dataset from_sources(const ResolvedRecipe& resolved,
                                const std::vector<CorpusSource>& sources,
                                const std::string& serialized_tokenizer,
                                const std::filesystem::path& tokenizer_file,
                                const std::function<void(const std::string&)>& log);

    std::shared_ptr<sdk::Tokenizer> tokenizer_;
    std::string serialized_tokenizer_;
    std::string tokenizer_hash_;
    std::vector<SourceTokens> sources_;
};

// Encodes corpus `file` into `shard` as Dataset does: documents (document_reader.h) read a batch
// of about `batch_bytes` at a time, encoded on all cores, each followed by the end-of-document id,
// appended in order. Returns the number of documents. Ids outside the vocabulary and exceptions
// from the tokenizer throw std::invalid_argument (the tokenizer's fault); the file's problems,
// including a file without documents, are FileError.
// `progress`, when given, receives the bytes of `file` read so far after every batch.
std::int64_t encode_into_shard(
    const sdk::Tokenizer& tokenizer, const CorpusFile& file, TokenShardWriter& shard,
    std::size_t batch_bytes = 2u << 20,
    const std::function<void(std::uint64_t bytes_read)>& progress = nullptr);

}  // namespace moelab::core
