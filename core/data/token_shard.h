#pragma once

// Token shards: a split's token ids on disk, written once as the corpus is encoded and then
// memory-mapped, so that resident memory does not grow with the corpus.
//
// Note [Token shard format]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Little-endian, 8-byte aligned sections:
//   0   "MLSHARD1"                magic
//   8   u32 format (4 or 5)       u32 id_bytes: 2 when the vocabulary fits in 16 bits, else 4
//   16  u64 tokens                24  u64 documents
//   32  u64 vocab_size            40  u64 checksum: ShardChecksum of everything below
//   48  ids, tokens x id_bytes, zero-padded to a multiple of 8 bytes
//   ..  u64 document ends: for each document, the token count up to its end
//   ..  u64 token counts: for each id of the vocabulary, its occurrences (what unigram baselines
//       and frequency-based routers need, without a pass over the ids)
//   ..  format 5 only: u64 prompt lengths: for each document, how many of its first tokens are a
//       prompt that the loss does not count (Note [Response-only loss] in loss_mask.h)
// A shard is format 5 when a document has a prompt, else format 4.
// Opening a shard checks the header and the file size (instant, whatever the size); verify()
// reads every byte against the checksum. Shards are written to a temporary file and renamed, so
// an interrupted write leaves no shard behind. Earlier formats had slower checksums: format 1
// summed bytes one at a time (FNV-1a), formats 2 and 3 (without and with prompts) folded words in
// one chain; each was the slowest stage of writing a byte-level corpus. A cached shard of an
// earlier format is refused at open and encoded again.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/data/token_view.h"
#include "core/system/file_writer.h"

namespace moelab::core {

// The shard checksum: 64-bit words (little-endian), word i folded into lane i mod 4 of four lanes
// that start at 0, and the four lanes folded in order into a fifth that starts at 0:
//   fold(h, w):  h = (h + w) * 0x9e3779b97f4a7c15;  h ^= h >> 29;  h = rotl(h, 31)
// Eight bytes a step instead of one. Each fold is a bijection of h, so any single changed word
// changes the result; the xor-shift spreads a change in a word's top bits over the low ones before
// the next word of the lane comes in, so small changes in nearby words do not cancel the way they
// would under a plain multiply. One lane's folds form a chain, each waiting for the last (about 7
// cycles a word): four independent chains run side by side in one core, so the writer's thread
// keeps up with encoding on every core (with one lane it was the slowest stage of writing a
// byte-level corpus). Bytes may come in pieces of any size; value() needs a multiple of 8.
class ShardChecksum {
  public:
    void add(const unsigned char* bytes, std::size_t size);
    std::uint64_t value() const {
        std::uint64_t h = 0;
        for (const std::uint64_t lane : lanes_) h = fold(h, lane);
        return h;
    }

  private:
    static constexpr int kLanes = 4;
    static std::uint64_t load(const unsigned char* at) {
        std::uint64_t word;
        std::memcpy(&word, at, 8);
        return word;
    }
    static std::uint64_t fold(std::uint64_t state, std::uint64_t word) {
        std::uint64_t h = (state + word) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
        return (h << 31) | (h >> 33);
    }
    void add_word(std::uint64_t word) {
        std::uint64_t& lane = lanes_[words_ % kLanes];
        lane = fold(lane, word);
        ++words_;
    }

    std::uint64_t lanes_[kLanes] = {};
    std::uint64_t words_ = 0;
    unsigned char pending_[8] = {};
    std::size_t pending_size_ = 0;
};

// Bytes per id for a vocabulary: 2 if every id fits in 16 bits, else 4.
int shard_id_bytes(std::int64_t vocab_size);

// A shard's writer asks the disk to start writing every this many bytes (FileWriter), so that the
// disk works while the corpus is encoded and finish() does not wait for the whole file at once.
inline constexpr std::uint64_t kShardWritebackBytes = 32u << 20;

namespace detail {

// std::allocator whose value-less construct leaves the element uninitialised: a byte vector that
// grows by resize() and is then written whole is not first filled with zeros.
template <class T>
struct UninitializedAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = UninitializedAllocator<U>;
    };
    UninitializedAllocator() = default;
    template <class U>
    UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
    template <class U>
    void construct(U* at) noexcept {
        ::new (static_cast<void*>(at)) U;
    }
    template <class U, class... Args>
    void construct(U* at, Args&&... args) {
        ::new (static_cast<void*>(at)) U(std::forward<Args>(args)...);
    }
};

}  // namespace detail

// Documents already narrowed to a shard's id width, with the count of each id: the part of
// writing a shard that can run on many threads. Encoding workers each fill a chunk; the writer then
// only checksums and writes its bytes (TokenShardWriter::add_chunk), in the order the chunks come.
// The writer empties a chunk it takes but keeps its buffers' capacity, so a chunk reused batch
// after batch allocates nothing.
class ShardChunk {
  public:
    explicit ShardChunk(std::int64_t vocab_size);

    // Appends one document's ids, of which the first prompt_tokens are a prompt; throws
    // std::invalid_argument for an id outside the vocabulary or a prompt longer than the document.
    // On a throw the chunk is left as it was.
    void add_document(std::span<const std::int32_t> ids, std::size_t prompt_tokens = 0);

    std::size_t documents() const { return lengths_.size(); }

  private:
    friend class TokenShardWriter;

    // Adds the chunk's id counts to `totals` (vocab_size entries) and empties the chunk; the cost
    // is the smaller of its tokens and its tables, so a chunk of one short document in a large
    // vocabulary does not walk the vocabulary.
    void move_into(std::vector<std::uint64_t>& totals);

    std::int64_t vocab_size_;
    int id_bytes_;
    // Ids of a small vocabulary (at most 4096) are counted in 4 interleaved tables (a document's
    // ids four by four, one to each table; the last few to the first), so that a run of one id
    // (spaces, a letter) is not one chain of increments of one counter; added up when the writer
    // takes the chunk. A vocabulary of 16-bit ids has one table; a larger one none (a table per
    // chunk would take megabytes each, and the writer counts the ids of such a slow tokenizer
    // from the chunk's bytes instead).
    int lanes_;
    std::vector<unsigned char, detail::UninitializedAllocator<unsigned char>> bytes_;
    std::vector<std::uint64_t> lengths_;  // tokens of each document
    std::vector<std::uint64_t> prompts_;  // prompt tokens of each document
    std::vector<std::uint64_t> counts_;   // lanes_ x vocab_size (none above 65536 ids)
};

// Writes one shard, document by document, holding only the document ends in memory.
class TokenShardWriter {
  public:
    TokenShardWriter(std::filesystem::path file, std::int64_t vocab_size);
    ~TokenShardWriter();  // an unfinished shard is removed
    TokenShardWriter(const TokenShardWriter&) = delete;
    TokenShardWriter& operator=(const TokenShardWriter&) = delete;

    // Appends one document's ids, of which the first prompt_tokens are a prompt; throws
    // std::invalid_argument for an id outside the vocabulary or a prompt longer than the document.
    void add_document(const std::vector<std::int32_t>& ids, std::size_t prompt_tokens = 0);
    // Appends a chunk's documents (for this shard's vocabulary) and empties it.
    void add_chunk(ShardChunk& chunk);
    // Writes the document index and the header, and renames the shard into place.
    void finish();

    std::int64_t vocab_size() const { return vocab_size_; }
    std::int64_t tokens() const { return tokens_; }
    std::int64_t documents() const { return static_cast<std::int64_t>(ends_.size()); }

  private:
    void write(const void* bytes, std::size_t size);

    std::filesystem::path file_, partial_;
    std::int64_t vocab_size_;
    int id_bytes_;
    // Allocated before the file is created, so that a failure to allocate leaves no file.
    std::vector<std::uint64_t> counts_;
    ShardChunk single_;  // add_document's
    FileWriter out_;
    ShardChecksum checksum_;
    std::int64_t tokens_ = 0;
    std::vector<std::uint64_t> ends_;
    std::vector<std::uint64_t> prompt_lengths_;
    bool has_prompts_ = false;
    bool finished_ = false;
};

// A shard mapped read-only. Throws FileError naming the file and what is wrong when it is not a
// complete shard for `vocab_size` (wrong magic, a truncated or extended file, another vocabulary).
class MappedTokenShard {
  public:
    MappedTokenShard(const std::filesystem::path& file, std::int64_t vocab_size);
    ~MappedTokenShard();
    MappedTokenShard(const MappedTokenShard&) = delete;
    MappedTokenShard& operator=(const MappedTokenShard&) = delete;

    // The ids, with the loss mask of the documents' prompts when the shard has any.
    TokenView tokens() const;
    std::int64_t documents() const { return documents_; }
    bool has_prompts() const { return prompts_offset_ != 0; }
    // Tokens in the documents' prompts (0 without prompts): the loss counts the others.
    std::int64_t prompt_tokens() const;
    // The token count up to the end of document d.
    std::int64_t document_end(std::int64_t d) const;
    // Occurrences of each id: vocab_size entries.
    const std::uint64_t* token_counts() const;
    const std::filesystem::path& file() const { return file_; }

    // Reads every byte and compares with the checksum, and recounts the ids; throws FileError
    // when anything differs.
    void verify() const;

  private:
    std::filesystem::path file_;
    const unsigned char* data_ = nullptr;
    std::size_t size_ = 0;
    int id_bytes_ = 4;
    std::int64_t tokens_ = 0, documents_ = 0;
    std::uint64_t checksum_ = 0;
    std::size_t ends_offset_ = 0;
    std::size_t counts_offset_ = 0;
    std::size_t prompts_offset_ = 0;  // 0: no prompts section (format 4)
    std::int64_t vocab_size_ = 0;
};

}  // namespace moelab::core
