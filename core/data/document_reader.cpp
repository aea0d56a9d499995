#include "core/data/document_reader.h"

#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/system/file_error.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

// The decompressed bytes of a file.
class ByteSource {
  public:
    virtual ~ByteSource() = default;
    // Fills `out` with up to `size` bytes; 0 only at the end of the data.
    virtual std::size_t read(char* out, std::size_t size) = 0;
    virtual std::uint64_t consumed() const = 0;  // bytes of the file itself read so far
};

class PlainBytes final : public ByteSource {
  public:
    explicit PlainBytes(const fs::path& path) : path_(path), file_(std::fopen(path.c_str(), "rb")) {
        if (file_ == nullptr) throw FileError(path, "cannot be read: " + errno_text(errno));
    }
    ~PlainBytes() override { std::fclose(file_); }
    std::size_t read(char* out, std::size_t size) override {
        const std::size_t got = std::fread(out, 1, size, file_);
        if (got == 0 && std::ferror(file_)) {
            throw FileError(path_, "read failed: " + errno_text(errno));
        }
        consumed_ += got;
        return got;
    }
    std::uint64_t consumed() const override { return consumed_; }

  private:
    fs::path path_;
    std::FILE* file_;
    std::uint64_t consumed_ = 0;
};

class GzipBytes final : public ByteSource {
  public:
    explicit GzipBytes(const fs::path& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
        if (file_ == nullptr) throw FileError(path, "cannot be read: " + errno_text(errno));
        gzbuffer(file_, 1 << 20);
        // zlib passes input without a gzip header through unchanged; a .gz name promises gzip.
        if (gzdirect(file_) != 0) {
            gzclose(file_);
            throw FileError(path, "not a gzip file (no gzip header), though named .gz");
        }
    }
    ~GzipBytes() override { gzclose(file_); }
    std::size_t read(char* out, std::size_t size) override {
        const int got =
            gzread(file_, out, static_cast<unsigned>(std::min<std::size_t>(size, 1u << 30)));
        int code = Z_OK;
        const char* message = gzerror(file_, &code);
        if (got < 0 || (code != Z_OK && code != Z_STREAM_END)) {
            throw FileError(path_, fmt::format("not a valid gzip file: {}", message));
        }
        return static_cast<std::size_t>(got);
    }
    std::uint64_t consumed() const override {
        const z_off_t at = gzoffset(file_);
        return at > 0 ? static_cast<std::uint64_t>(at) : 0;
    }

  private:
    fs::path path_;
    gzFile file_;
};

class ZstdBytes final : public ByteSource {
  public:
    explicit ZstdBytes(const fs::path& path)
        : raw_(path), path_(path), context_(ZSTD_createDStream()), input_(ZSTD_DStreamInSize()) {
        if (context_ == nullptr) throw FileError(path, "zstd: out of memory");
    }
    ~ZstdBytes() override { ZSTD_freeDStream(context_); }
    std::size_t read(char* out, std::size_t size) override {
        ZSTD_outBuffer output{out, size, 0};
        while (output.pos == 0) {
            if (in_.pos == in_.size) {
                const std::size_t got = raw_.read(input_.data(), input_.size());
                if (got == 0) {
                    // A frame left unfinished is a truncated file, not an end.
                    if (last_result_ != 0) {
                        throw FileError(path_,
                                        "the zstd stream ends in the middle of a frame "
                                        "(a truncated file)");
                    }
                    return 0;
                }
                in_ = ZSTD_inBuffer{input_.data(), got, 0};
            }
            last_result_ = ZSTD_decompressStream(context_, &output, &in_);
            if (ZSTD_isError(last_result_)) {
                throw FileError(path_, fmt::format("not a valid zstd file: {}",
                                                   ZSTD_getErrorName(last_result_)));
            }
        }
        return output.pos;
    }
    std::uint64_t consumed() const override { return raw_.consumed(); }

  private:
    PlainBytes raw_;
    fs::path path_;
    ZSTD_DStream* context_;
    std::vector<char> input_;
    ZSTD_inBuffer in_{nullptr, 0, 0};
    std::size_t last_result_ = 0;
};

// No line or document is longer than this: a file that expands to gigabytes without a line break
// (a compressed stream of zeros) is refused by name rather than exhausting memory.
constexpr std::size_t kMaxDocumentBytes = std::size_t{256} << 20;

// Lines of a byte source, std::getline's cut: the final line needs no '\n', and a file ending in
// '\n' has no empty line after it.
class LineReader {
  public:
    LineReader(std::unique_ptr<ByteSource> bytes, fs::path path)
        // Not zero-filled: every byte is written by read() before it is looked at.
        : bytes_(std::move(bytes)), path_(std::move(path)), buffer_(new char[kBufferBytes]) {}

    enum class LineKind { kEnd, kEmpty, kText };

    // Appends the next line and its '\n' straight onto `document` (a last line without one gets
    // one), or reports an empty line or the end; no copy in between. Refuses a `document` that
    // grows past kMaxDocumentBytes, naming it by `unit` ("document", "line").
    LineKind append_line(std::string& document, const char* unit) {
        bool started = false;
        for (;;) {
            if (at_ == end_) {
                end_ = bytes_->read(buffer_.get(), kBufferBytes);
                at_ = 0;
                if (end_ == 0) {
                    if (!started) return LineKind::kEnd;
                    document += '\n';
                    ++number_;
                    if (document.size() > kMaxDocumentBytes) too_long(unit, number_);
                    return LineKind::kText;
                }
            }
            const char* begin = buffer_.get() + at_;
            const void* newline = std::memchr(begin, '\n', end_ - at_);
            if (newline == nullptr) {
                document.append(begin, end_ - at_);
                at_ = end_;
                started = true;
                if (document.size() > kMaxDocumentBytes) too_long(unit, number_ + 1);
                continue;
            }
            const auto length = static_cast<std::size_t>(static_cast<const char*>(newline) - begin);
            ++number_;
            if (length == 0 && !started) {
                ++at_;
                return LineKind::kEmpty;
            }
            document.append(begin, length + 1);
            at_ += length + 1;
            if (document.size() > kMaxDocumentBytes) too_long(unit, number_);
            return LineKind::kText;
        }
    }

    std::int64_t number() const { return number_; }  // of the last line returned, from 1
    std::uint64_t consumed() const { return bytes_->consumed(); }

    [[noreturn]] void too_long(const char* what, std::int64_t line) const {
        throw FileError(path_, fmt::format("line {}: the {} is longer than {} MiB (expected text "
                                           "with line breaks)",
                                           line, what, kMaxDocumentBytes >> 20));
    }

  private:
    static constexpr std::size_t kBufferBytes = std::size_t{1} << 20;

    std::unique_ptr<ByteSource> bytes_;
    fs::path path_;
    std::unique_ptr<char[]> buffer_;
    std::size_t at_ = 0, end_ = 0;
    std::int64_t number_ = 0;
};

std::unique_ptr<ByteSource> open_bytes(const CorpusFile& file) {
    switch (file.compression) {
        case Compression::kGzip:
            return std::make_unique<GzipBytes>(file.path);
        case Compression::kZstd:
            return std::make_unique<ZstdBytes>(file.path);
        case Compression::kNone:
            break;
    }
    return std::make_unique<PlainBytes>(file.path);
}

class TextDocuments final : public DocumentReader {
  public:
    explicit TextDocuments(const CorpusFile& file) : lines_(open_bytes(file), file.path) {}

    std::vector<Document> next_batch(std::size_t bytes) override {
        std::vector<Document> batch;
        std::size_t taken = 0;
        std::string current;
        while (taken < bytes) {
            const LineReader::LineKind kind = lines_.append_line(current, "document");
            if (kind == LineReader::LineKind::kEnd) break;
            if (kind == LineReader::LineKind::kEmpty && !current.empty()) {
                taken += current.size();
                batch.push_back({std::move(current), 0});
                current.clear();
            }
        }
        // The loop stops only between documents (right after a blank line) or at the end.
        if (!current.empty()) batch.push_back({std::move(current), 0});
        return batch;
    }
    std::uint64_t position() const override { return lines_.consumed(); }

  private:
    LineReader lines_;
};

class JsonlDocuments final : public DocumentReader {
  public:
    explicit JsonlDocuments(const CorpusFile& file)
        : path_(file.path),
          pairs_(file.format == DocumentFormat::kPairs),
          field_(pairs_ ? file.response_field : file.text_field),
          prompt_field_(file.prompt_field),
          lines_(open_bytes(file), file.path) {}

    std::vector<Document> next_batch(std::size_t bytes) override {
        std::vector<Document> batch;
        std::size_t taken = 0;
        std::string line;
        while (taken < bytes) {
            line.clear();
            const LineReader::LineKind kind = lines_.append_line(line, "line");
            if (kind == LineReader::LineKind::kEnd) break;
            if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
            Document document = document_of(line);
            if (document.text.size() == document.prompt_bytes) continue;
            taken += document.text.size();
            batch.push_back(std::move(document));
        }
        return batch;
    }
    std::uint64_t position() const override { return lines_.consumed(); }

  private:
    Document document_of(const std::string& line) const {
        auto fail = [&](const std::string& what) {
            throw FileError(path_, fmt::format("line {}: {}", lines_.number(), what));
        };
        auto string_field = [&](const nlohmann::json& object, const std::string& field,
                                const char* holds, const char* option) {
            const auto it = object.find(field);
            if (it == object.end()) {
                fail(
                    fmt::format("no field \"{}\" (expected the {} there; set the source's {} "
                                "to the field that holds it)",
                                field, holds, option));
            }
            if (!it->is_string()) {
                fail(fmt::format("field \"{}\" is {}, expected a string", field, it->type_name()));
            }
            return it->get<std::string>();
        };
        nlohmann::json object;
        try {
            object = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& error) {
            // nlohmann names the byte and the problem ("invalid string: ill-formed UTF-8 byte").
            std::string why = error.what();
            if (const auto colon = why.find("parse error"); colon != std::string::npos) {
                why = why.substr(colon);
            }
            fail(fmt::format("not a JSON object ({}); a JSONL file has one object per line", why));
        }
        if (!object.is_object()) {
            fail(pairs_ ? fmt::format("expected a JSON object with a prompt in \"{}\" and a "
                                      "response in \"{}\", got {}",
                                      prompt_field_, field_, object.type_name())
                        : fmt::format("expected a JSON object with the document's text in "
                                      "\"{}\", got {}",
                                      field_, object.type_name()));
        }
        if (!pairs_) return {string_field(object, field_, "document's text", "text_field"), 0};
        Document document{string_field(object, prompt_field_, "prompt", "prompt_field"), 0};
        document.prompt_bytes = document.text.size();
        document.text += string_field(object, field_, "response", "response_field");
        return document;
    }

    fs::path path_;
    bool pairs_;
    std::string field_;  // the text, or the response of a pair
    std::string prompt_field_;
    LineReader lines_;
};

}  // namespace

std::unique_ptr<DocumentReader> open_documents(const CorpusFile& file) {
    if (file.format != DocumentFormat::kText) return std::make_unique<JsonlDocuments>(file);
    return std::make_unique<TextDocuments>(file);
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

}  // namespace moelab::core
