#pragma once

// A run's data: the tokenizer (trained on the training split by its plugin, or loaded from the
// cache) and the three splits as token id streams. Documents are separated by blank lines in the
// corpus files; each document is encoded on its own and followed by the tokenizer's end-of-document
// id. Both the tokenizer and the encoded splits are cached under data.cache_dir, keyed by content
// hashes (tokenizer: plugin, version, options and training text; tokens: the serialized tokenizer
// and the split's text), so a corpus is tokenized once. Splits are encoded as they are read, a
// batch of documents at a time, into token shards (core/data/token_shard.h) that are then
// memory-mapped: neither the text nor the ids of a split are ever held whole in memory.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/data/corpus.h"
#include "core/data/token_shard.h"
#include "core/data/token_view.h"
#include "core/plugin/resolve.h"
#include "moelab/sdk/tokenizer.h"

namespace moelab::core {

class Dataset {
  public:
    // `log` receives one line per notable step ("tokenizer: loaded from cache ...").
    static Dataset prepare(const ResolvedRecipe& resolved,
                           const std::function<void(const std::string&)>& log);

    // A dataset from an already serialized tokenizer (moelab eval: the run's own tokenizer).
    static Dataset prepare_with_tokenizer(const ResolvedRecipe& resolved,
                                          const std::string& serialized_tokenizer,
                                          const std::function<void(const std::string&)>& log);

    const sdk::Tokenizer& tokenizer() const { return *tokenizer_; }
    const std::string& serialized_tokenizer() const { return serialized_tokenizer_; }
    const std::string& tokenizer_hash() const { return tokenizer_hash_; }
    std::int64_t vocab_size() const { return tokenizer_->vocab_size(); }

    // Valid as long as this dataset (or a copy of it) lives.
    TokenView tokens(Split split) const;
    // The memory-mapped shard behind tokens(split).
    const MappedTokenShard& shard(Split split) const;
    std::int64_t bytes(Split split) const;  // size of the split's text

    // Occurrences of each token id in the training split: (vocab_size,) int64.
    at::Tensor training_token_counts() const;

  private:
    std::shared_ptr<sdk::Tokenizer> tokenizer_;
    std::string serialized_tokenizer_;
    std::string tokenizer_hash_;
    std::shared_ptr<const MappedTokenShard> train_, validation_, test_;
    std::int64_t train_bytes_ = 0, validation_bytes_ = 0, test_bytes_ = 0;
};

// Encodes corpus `file` into `shard` as Dataset does: documents (split_documents' cut) read a
// batch of about `batch_bytes` at a time, encoded on all cores, each followed by the
// end-of-document id, appended in order. Returns the number of documents. Ids outside the
// vocabulary throw std::invalid_argument.
// `progress`, when given, receives the bytes of `file` read so far after every batch.
std::int64_t encode_into_shard(
    const sdk::Tokenizer& tokenizer, const std::filesystem::path& file, TokenShardWriter& shard,
    std::size_t batch_bytes = 2u << 20,
    const std::function<void(std::uint64_t bytes_read)>& progress = nullptr);

// Splits corpus text into documents at blank lines. Each document keeps its own line breaks and
// ends with '\n'.
std::vector<std::string> split_documents(const std::string& text);

}  // namespace moelab::core
