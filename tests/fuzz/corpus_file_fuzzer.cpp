// Fuzzes the corpus file readers (core/data/document_reader.h): plain text and JSONL, each as is,
// gzip- or zstd-compressed. The first input byte chooses the reading (bit 0: JSONL; bits 1-2:
// none, gzip, zstd; bit 3: compress the rest of the input first, so that the decoder reaches valid
// streams and the JSONL parser meaningful text, instead of fuzzing the decoder's error paths;
// bit 4 with bit 0: (prompt, response) pairs instead of JSONL documents); the rest is the file.
// open_documents() and next_batch() document FileError as their only exception; anything else
// escaping is a finding.
//
// Beyond that: plain uncompressed text gives exactly split_documents() of the bytes (an
// independent cut of the whole text), and a compressed file gives the same documents as the
// bytes it was made from. A pair's prompt is a prefix of its document and never all of it.

#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/document_reader.h"
#include "core/system/file_error.h"
#include "harness.h"

namespace {

namespace fs = std::filesystem;
using moelab::core::Compression;
using moelab::core::CorpusFile;
using moelab::core::DocumentFormat;

// A temporary file holding `bytes`, removed at the end of the input.
class TempFile {
  public:
    explicit TempFile(std::string_view bytes) {
        char name[] = "/tmp/moelab-fuzz-corpus-XXXXXX";
        const int fd = ::mkstemp(name);
        MOELAB_FUZZ_CHECK(fd >= 0);
        path_ = name;
        std::size_t written = 0;
        while (written < bytes.size()) {
            const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
            MOELAB_FUZZ_CHECK(n > 0);
            written += static_cast<std::size_t>(n);
        }
        ::close(fd);
    }
    ~TempFile() { ::unlink(path_.c_str()); }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

std::string gzip_of(std::string_view bytes) {
    uLongf size = compressBound(static_cast<uLong>(bytes.size())) + 32;
    std::string out(size, '\0');
    z_stream stream{};
    MOELAB_FUZZ_CHECK(deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
    stream.avail_in = static_cast<uInt>(bytes.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    MOELAB_FUZZ_CHECK(deflate(&stream, Z_FINISH) == Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

std::string zstd_of(std::string_view bytes) {
    std::string out(ZSTD_compressBound(bytes.size()), '\0');
    const std::size_t size = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), 1);
    MOELAB_FUZZ_CHECK(!ZSTD_isError(size));
    out.resize(size);
    return out;
}

// Every document of the file, or false when the reader refused it with a FileError.
bool read_all(const CorpusFile& file, std::vector<std::string>& documents) {
    try {
        const auto reader = moelab::core::open_documents(file);
        for (auto batch = reader->next_batch(64); !batch.empty(); batch = reader->next_batch(64)) {
            for (const moelab::core::Document& document : batch) {
                MOELAB_FUZZ_CHECK(document.prompt_bytes < document.text.size());
                MOELAB_FUZZ_CHECK(file.format == DocumentFormat::kPairs ||
                                  document.prompt_bytes == 0);
                documents.push_back(document.text);
            }
        }
        return true;
    } catch (const moelab::core::FileError&) {
        return false;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t mode = data[0];
    const std::string_view content(reinterpret_cast<const char*>(data + 1), size - 1);
    const DocumentFormat format = (mode & 1) == 0    ? DocumentFormat::kText
                                  : (mode & 16) != 0 ? DocumentFormat::kPairs
                                                     : DocumentFormat::kJsonl;
    const auto compression = static_cast<Compression>(((mode >> 1) & 3) % 3);
    const bool compress_first = (mode & 8) != 0 && compression != Compression::kNone;

    const std::string bytes = !compress_first                     ? std::string(content)
                              : compression == Compression::kGzip ? gzip_of(content)
                                                                  : zstd_of(content);
    const TempFile file(bytes);
    std::vector<std::string> documents;
    const CorpusFile corpus_file{file.path(), format, compression, "text", "prompt", "response"};
    const bool read = read_all(corpus_file, documents);

    if (format == DocumentFormat::kText && compression == Compression::kNone) {
        MOELAB_FUZZ_CHECK(read);  // plain text has nothing to refuse below the size cap
        MOELAB_FUZZ_CHECK(documents == moelab::core::split_documents(std::string(content)));
    }
    if (compress_first) {
        // The decoder adds nothing: the same documents as the uncompressed bytes.
        const TempFile plain(content);
        std::vector<std::string> expected;
        const bool plain_read = read_all(
            {plain.path(), format, Compression::kNone, "text", "prompt", "response"}, expected);
        MOELAB_FUZZ_CHECK(read == plain_read);
        if (read) MOELAB_FUZZ_CHECK(documents == expected);
    }
    return 0;
}
