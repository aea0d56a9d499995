#include "core/data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "core/system/file_error.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'M', 'L', 'S', 'H', 'A', 'R', 'D', '1'};
constexpr std::uint32_t kFormat = 4;             // documents without prompts
constexpr std::uint32_t kFormatWithPrompts = 5;  // a prompt-lengths section follows the counts
constexpr std::size_t kHeaderBytes = 48;

}  // namespace

void ShardChecksum::add(const unsigned char* bytes, std::size_t size) {
    while (pending_size_ > 0 && pending_size_ < 8 && size > 0) {
        pending_[pending_size_++] = *bytes++;
        --size;
    }
    if (pending_size_ == 8) {
        add_word(load(pending_));
        pending_size_ = 0;
    }
    for (; size >= 8 && words_ % kLanes != 0; bytes += 8, size -= 8) add_word(load(bytes));
    // Four words at a time, one to each lane, the lanes held in registers.
    std::uint64_t l0 = lanes_[0], l1 = lanes_[1], l2 = lanes_[2], l3 = lanes_[3];
    const std::size_t blocks = size / (8 * kLanes);
    for (std::size_t b = 0; b < blocks; ++b, bytes += 8 * kLanes) {
        l0 = fold(l0, load(bytes));
        l1 = fold(l1, load(bytes + 8));
        l2 = fold(l2, load(bytes + 16));
        l3 = fold(l3, load(bytes + 24));
    }
    lanes_[0] = l0, lanes_[1] = l1, lanes_[2] = l2, lanes_[3] = l3;
    words_ += kLanes * blocks;
    size -= 8 * kLanes * blocks;
    for (; size >= 8; bytes += 8, size -= 8) add_word(load(bytes));
    for (; size > 0; --size) pending_[pending_size_++] = *bytes++;
}

namespace {

std::size_t padded(std::size_t bytes) { return (bytes + 7) / 8 * 8; }

template <class T>
T read_le(const unsigned char* at) {  // little-endian hosts only (x86-64, aarch64)
    T value;
    std::memcpy(&value, at, sizeof value);
    return value;
}

}  // namespace

int shard_id_bytes(std::int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

namespace {

// Ids are int32: a vocabulary has 1 to 2^31 of them.
std::int64_t checked_vocab_size(std::int64_t vocab_size) {
    if (vocab_size < 1 || vocab_size > (std::int64_t{1} << 31)) {
        throw std::invalid_argument(
            fmt::format("a token shard for a vocabulary of {} (expected 1 to 2^31)", vocab_size));
    }
    return vocab_size;
}

}  // namespace

ShardChunk::ShardChunk(std::int64_t vocab_size)
    : vocab_size_(checked_vocab_size(vocab_size)),
      id_bytes_(shard_id_bytes(vocab_size)),
      lanes_(vocab_size <= 4096    ? 4
             : vocab_size <= 65536 ? 1
                                   : 0),
      counts_(static_cast<std::size_t>(lanes_ * vocab_size), 0) {}

void ShardChunk::add_document(std::span<const std::int32_t> ids, std::size_t prompt_tokens) {
    if (prompt_tokens > ids.size()) {
        throw std::invalid_argument(
            fmt::format("a prompt of {} tokens in a document of {}", prompt_tokens, ids.size()));
    }
    const std::size_t n = ids.size();
    // Room for the document's entries first: nothing below changes the chunk before the last
    // check, or fails after it.
    if (lengths_.size() == lengths_.capacity()) lengths_.reserve(2 * lengths_.size() + 16);
    if (prompts_.size() == prompts_.capacity()) prompts_.reserve(2 * prompts_.size() + 16);
    // One pass that the compiler vectorises: every id in range (compared unsigned, so a negative
    // id is out of range too; the vocabulary is at most 2^31) and narrowed.
    const std::size_t begin = bytes_.size();
    bytes_.resize(begin + n * static_cast<std::size_t>(id_bytes_));
    const auto vocab = static_cast<std::uint32_t>(vocab_size_);
    std::uint32_t out_of_range = 0;
    if (id_bytes_ == 2) {
        unsigned char* into = bytes_.data() + begin;
        for (std::size_t i = 0; i < n; ++i) {
            const auto id = static_cast<std::uint32_t>(ids[i]);
            out_of_range |= static_cast<std::uint32_t>(id >= vocab);
            const auto narrow = static_cast<std::uint16_t>(id);
            std::memcpy(into + 2 * i, &narrow, 2);
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            out_of_range |= static_cast<std::uint32_t>(static_cast<std::uint32_t>(ids[i]) >= vocab);
        }
        if (n > 0) std::memcpy(bytes_.data() + begin, ids.data(), n * sizeof(std::int32_t));
    }
    if (out_of_range != 0) {
        bytes_.resize(begin);
        for (const std::int32_t id : ids) {
            if (id < 0 || id >= vocab_size_) {
                throw std::invalid_argument(
                    fmt::format("token id {} outside [0, {})", id, vocab_size_));
            }
        }
        throw std::logic_error("ShardChunk: an id out of range that the second look did not find");
    }
    std::uint64_t* counts = counts_.data();
    if (lanes_ == 4) {
        const auto stride = static_cast<std::size_t>(vocab_size_);
        std::size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            ++counts[ids[i]];
            ++counts[stride + ids[i + 1]];
            ++counts[2 * stride + ids[i + 2]];
            ++counts[3 * stride + ids[i + 3]];
        }
        for (; i < n; ++i) ++counts[ids[i]];
    } else if (lanes_ == 1) {
        for (const std::int32_t id : ids) ++counts[id];
    }
    lengths_.push_back(n);
    prompts_.push_back(prompt_tokens);
}

void ShardChunk::move_into(std::vector<std::uint64_t>& totals) {
    const auto vocab = static_cast<std::size_t>(vocab_size_);
    const std::size_t tokens = bytes_.size() / static_cast<std::size_t>(id_bytes_);
    auto id_at = [&](std::size_t t) -> std::size_t {
        if (id_bytes_ == 2) {
            std::uint16_t id;
            std::memcpy(&id, bytes_.data() + 2 * t, 2);
            return id;
        }
        std::uint32_t id;
        std::memcpy(&id, bytes_.data() + 4 * t, 4);
        return id;
    };
    if (lanes_ == 0 || tokens < counts_.size()) {
        // No tables, or few tokens: counted from the ids, and only their counters zeroed.
        for (std::size_t t = 0; t < tokens; ++t) {
            const std::size_t id = id_at(t);
            ++totals[id];
            for (int lane = 0; lane < lanes_; ++lane) counts_[lane * vocab + id] = 0;
        }
    } else {
        for (int lane = 0; lane < lanes_; ++lane) {
            std::uint64_t* lane_counts = counts_.data() + lane * vocab;
            for (std::size_t id = 0; id < vocab; ++id) {
                totals[id] += lane_counts[id];
                lane_counts[id] = 0;
            }
        }
    }
    // A chunk that held a huge document does not keep its memory for the rest of the file.
    constexpr std::size_t kKeptBytes = 16u << 20;
    if (bytes_.capacity() > kKeptBytes) decltype(bytes_)().swap(bytes_);
    bytes_.clear();
    lengths_.clear();
    prompts_.clear();
}

namespace {

// The temporary name a shard is written under, its directory created: unique per writer, also
// across hosts and PID namespaces sharing a cache directory.
fs::path partial_name(const fs::path& file) {
    fs::create_directories(file.parent_path());
    fs::path partial = file;
    partial += fmt::format(
        ".partial-{}-{:016x}", ::getpid(),
        (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}());
    return partial;
}

}  // namespace

TokenShardWriter::TokenShardWriter(fs::path file, std::int64_t vocab_size)
    : file_(std::move(file)),
      partial_(partial_name(file_)),
      vocab_size_(vocab_size),
      id_bytes_(shard_id_bytes(vocab_size)),
      counts_(static_cast<std::size_t>(checked_vocab_size(vocab_size)), 0),
      single_(vocab_size),
      out_(partial_, kShardWritebackBytes) {
    // The file exists from here on: a failure removes it (the destructor will not run).
    try {
        const char header[kHeaderBytes] = {};
        out_.write(header, kHeaderBytes);  // filled in by finish()
    } catch (...) {
        std::error_code ignored;
        fs::remove(partial_, ignored);
        throw;
    }
}

TokenShardWriter::~TokenShardWriter() {
    if (finished_) return;
    std::error_code ignored;
    fs::remove(partial_, ignored);  // out_ closes it
}

void TokenShardWriter::write(const void* bytes, std::size_t size) {
    checksum_.add(static_cast<const unsigned char*>(bytes), size);
    out_.write(bytes, size);
}

void TokenShardWriter::add_document(const std::vector<std::int32_t>& ids,
                                    std::size_t prompt_tokens) {
    single_.add_document(ids, prompt_tokens);
    add_chunk(single_);
}

void TokenShardWriter::add_chunk(ShardChunk& chunk) {
    if (chunk.vocab_size_ != vocab_size_) {
        throw std::invalid_argument(fmt::format("a chunk for a vocabulary of {} in a shard for {}",
                                                chunk.vocab_size_, vocab_size_));
    }
    write(chunk.bytes_.data(), chunk.bytes_.size());
    for (std::size_t d = 0; d < chunk.lengths_.size(); ++d) {
        tokens_ += static_cast<std::int64_t>(chunk.lengths_[d]);
        ends_.push_back(static_cast<std::uint64_t>(tokens_));
        prompt_lengths_.push_back(chunk.prompts_[d]);
        has_prompts_ = has_prompts_ || chunk.prompts_[d] > 0;
    }
    chunk.move_into(counts_);
}

void TokenShardWriter::finish() {
    const std::size_t id_section = static_cast<std::size_t>(tokens_) * id_bytes_;
    const char zeros[8] = {};
    write(zeros, padded(id_section) - id_section);
    write(ends_.data(), ends_.size() * sizeof(std::uint64_t));
    write(counts_.data(), counts_.size() * sizeof(std::uint64_t));
    if (has_prompts_) write(prompt_lengths_.data(), prompt_lengths_.size() * sizeof(std::uint64_t));
    const std::uint32_t format = has_prompts_ ? kFormatWithPrompts : kFormat;
    unsigned char header[kHeaderBytes] = {};
    std::memcpy(header, kMagic, 8);
    const std::uint32_t id_bytes = static_cast<std::uint32_t>(id_bytes_);
    const std::uint64_t fields[] = {static_cast<std::uint64_t>(tokens_), ends_.size(),
                                    static_cast<std::uint64_t>(vocab_size_), checksum_.value()};
    std::memcpy(header + 8, &format, 4);
    std::memcpy(header + 12, &id_bytes, 4);
    std::memcpy(header + 16, fields, sizeof fields);
    out_.write_at(0, header, kHeaderBytes);
    out_.sync();  // on disk before it is published under its final name
    out_.close();
    std::error_code error;
    fs::rename(partial_, file_, error);
    if (error) throw FileError(file_, "cannot be put in place: " + error.message());
    finished_ = true;
}

MappedTokenShard::MappedTokenShard(const fs::path& file, std::int64_t vocab_size) : file_(file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw FileError(file, "cannot be opened: " + errno_text(errno));
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int saved = errno;
        ::close(fd);
        throw FileError(file, "cannot be inspected: " + errno_text(saved));
    }
    size_ = static_cast<std::size_t>(info.st_size);
    if (size_ < kHeaderBytes) {
        ::close(fd);
        throw FileError(file, fmt::format("is not a token shard: {} bytes, shorter than the "
                                          "{}-byte header (truncated?)",
                                          size_, kHeaderBytes));
    }
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int saved = errno;
    ::close(fd);
    if (mapped == MAP_FAILED) throw FileError(file, "cannot be mapped: " + errno_text(saved));
    data_ = static_cast<const unsigned char*>(mapped);

    auto fail = [&](const std::string& reason) {
        ::munmap(const_cast<unsigned char*>(data_), size_);
        data_ = nullptr;
        throw FileError(file, reason);
    };
    if (std::memcmp(data_, kMagic, 8) != 0) fail("is not a token shard (wrong magic)");
    const auto format = read_le<std::uint32_t>(data_ + 8);
    if (format != kFormat && format != kFormatWithPrompts) {
        fail(format < kFormat
                 ? fmt::format("token shard format {}, written by an earlier moelab (this one "
                               "reads formats {} and {})",
                               format, kFormat, kFormatWithPrompts)
                 : fmt::format("token shard format {} (expected {} or {})", format, kFormat,
                               kFormatWithPrompts));
    }
    id_bytes_ = static_cast<int>(read_le<std::uint32_t>(data_ + 12));
    const auto tokens = read_le<std::uint64_t>(data_ + 16);
    const auto documents = read_le<std::uint64_t>(data_ + 24);
    const auto vocab = read_le<std::uint64_t>(data_ + 32);
    checksum_ = read_le<std::uint64_t>(data_ + 40);
    if (id_bytes_ != shard_id_bytes(vocab_size)) {
        fail(fmt::format("token shard of {}-byte ids, expected {} for a vocabulary of {}",
                         id_bytes_, shard_id_bytes(vocab_size), vocab_size));
    }
    if (vocab != static_cast<std::uint64_t>(vocab_size)) {
        fail(fmt::format("token shard for a vocabulary of {}, expected {}", vocab, vocab_size));
    }
    // Sizes are compared in a way that cannot overflow: each count is bounded by the file first.
    if (tokens > size_ || documents > size_) {
        fail(fmt::format("token shard header claims {} tokens and {} documents in {} bytes", tokens,
                         documents, size_));
    }
    const std::size_t ids = padded(static_cast<std::size_t>(tokens) * id_bytes_);
    const std::size_t prompts = format == kFormatWithPrompts ? 1 : 0;
    const std::size_t expected = kHeaderBytes + ids + static_cast<std::size_t>(documents) * 8 +
                                 static_cast<std::size_t>(vocab) * 8 +
                                 prompts * static_cast<std::size_t>(documents) * 8;
    if (expected != size_) {
        fail(
            fmt::format("token shard of {} bytes, expected {} for {} tokens and {} documents "
                        "(truncated or damaged)",
                        size_, expected, tokens, documents));
    }
    tokens_ = static_cast<std::int64_t>(tokens);
    documents_ = static_cast<std::int64_t>(documents);
    ends_offset_ = kHeaderBytes + ids;
    counts_offset_ = ends_offset_ + static_cast<std::size_t>(documents_) * 8;
    if (prompts != 0) prompts_offset_ = counts_offset_ + static_cast<std::size_t>(vocab_size) * 8;
    vocab_size_ = vocab_size;
    if (documents_ > 0 && document_end(documents_ - 1) != tokens_) {
        fail(fmt::format("token shard index ends at token {}, the shard has {} (damaged)",
                         document_end(documents_ - 1), tokens_));
    }
}

MappedTokenShard::~MappedTokenShard() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
}

TokenView MappedTokenShard::tokens() const {
    const unsigned char* ids = data_ + kHeaderBytes;
    const TokenView view = id_bytes_ == 2
                               ? TokenView(reinterpret_cast<const std::uint16_t*>(ids), tokens_)
                               : TokenView(reinterpret_cast<const std::int32_t*>(ids), tokens_);
    if (!has_prompts()) return view;
    // 8-aligned, as token_counts() is.
    return view.with_loss_mask(
        LossMask(reinterpret_cast<const std::uint64_t*>(data_ + ends_offset_),
                 reinterpret_cast<const std::uint64_t*>(data_ + prompts_offset_), documents_));
}

const std::uint64_t* MappedTokenShard::token_counts() const {
    // 8-aligned: the mapping starts on a page and every section is a multiple of 8 bytes.
    return reinterpret_cast<const std::uint64_t*>(data_ + counts_offset_);
}

std::int64_t MappedTokenShard::document_end(std::int64_t d) const {
    return static_cast<std::int64_t>(read_le<std::uint64_t>(data_ + ends_offset_ + 8 * d));
}

std::int64_t MappedTokenShard::prompt_tokens() const {
    if (!has_prompts()) return 0;
    std::uint64_t total = 0;
    for (std::int64_t d = 0; d < documents_; ++d) {
        total += read_le<std::uint64_t>(data_ + prompts_offset_ + 8 * d);
    }
    return static_cast<std::int64_t>(total);
}

void MappedTokenShard::verify() const {
    ShardChecksum checksum;
    checksum.add(data_ + kHeaderBytes, size_ - kHeaderBytes);
    const std::uint64_t sum = checksum.value();
    if (sum != checksum_) {
        throw FileError(file_, fmt::format("token shard checksum {:016x}, expected {:016x} "
                                           "(damaged; delete it to re-tokenize)",
                                           sum, checksum_));
    }
    const TokenView view = tokens();
    std::vector<std::uint64_t> recount(static_cast<std::size_t>(vocab_size_), 0);
    for (std::int64_t i = 0; i < view.size(); ++i) {
        if (view[i] < 0 || view[i] >= vocab_size_) {
            throw FileError(
                file_, fmt::format("token {} is id {}, outside [0, {})", i, view[i], vocab_size_));
        }
        ++recount[static_cast<std::size_t>(view[i])];
    }
    const std::uint64_t* counts = token_counts();
    for (std::int64_t id = 0; id < vocab_size_; ++id) {
        if (counts[id] != recount[static_cast<std::size_t>(id)]) {
            throw FileError(file_,
                            fmt::format("token shard counts id {} {} times, the ids hold it "
                                        "{} times (damaged)",
                                        id, counts[id], recount[static_cast<std::size_t>(id)]));
        }
    }
    if (!has_prompts()) return;
    std::int64_t start = 0;
    for (std::int64_t d = 0; d < documents_; ++d) {
        const std::int64_t end = document_end(d);
        const auto prompt = read_le<std::uint64_t>(data_ + prompts_offset_ + 8 * d);
        if (end < start || prompt > static_cast<std::uint64_t>(end - start)) {
            throw FileError(file_, fmt::format("document {} spans tokens [{}, {}) with a prompt of "
                                               "{} tokens (damaged)",
                                               d, start, end, prompt));
        }
        start = end;
    }
}

}  // namespace moelab::core
