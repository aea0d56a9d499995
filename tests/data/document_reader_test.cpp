// Corpus files in every supported form: plain text, gzip, zstd and JSONL give the same documents
// (against split_documents of the whole text, an independent cut), and damaged or malformed files
// are refused with the file, the line and what was expected.

#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/dataset.h"
#include "core/data/document_reader.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/system/file_error.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

const std::string kText =
    "first line\nof the first document\n\n\n\nsecond\n\nthird, with é ü\nstill third\n\n"
    "fourth\n\nlast, without a final newline";

void write(const fs::path& file, const std::string& bytes) {
    std::ofstream(file, std::ios::binary) << bytes;
}

void write_gzip(const fs::path& file, const std::string& bytes) {
    gzFile out = gzopen(file.c_str(), "wb");
    ASSERT_NE(out, nullptr);
    ASSERT_EQ(gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    gzclose(out);
}

std::string zstd_bytes(const std::string& bytes) {
    std::string out(ZSTD_compressBound(bytes.size()), '\0');
    const std::size_t size = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), 3);
    EXPECT_FALSE(ZSTD_isError(size));
    out.resize(size);
    return out;
}

// Every document of `file`, read `batch_bytes` at a time.
std::vector<std::string> read_all(const CorpusFile& file, std::size_t batch_bytes) {
    std::vector<std::string> documents;
    const auto reader = open_documents(file);
    for (auto batch = reader->next_batch(batch_bytes); !batch.empty();
         batch = reader->next_batch(batch_bytes)) {
        for (const Document& document : batch) documents.push_back(document.text);
    }
    return documents;
}

CorpusFile jsonl(const fs::path& path, Compression compression = Compression::kNone) {
    return CorpusFile{path, DocumentFormat::kJsonl, compression, "text"};
}

std::string error_of(const CorpusFile& file) {
    try {
        read_all(file, 1 << 20);
    } catch (const FileError& error) {
        return error.what();
    }
    return "no error";
}

TEST(DocumentReader, TextGzipZstdAndJsonlGiveTheSameDocuments) {
    tests::TempDir dir;
    const std::vector<std::string> expected = split_documents(kText);
    ASSERT_EQ(expected.size(), 5u);
    std::string lines;
    for (const std::string& document : expected) {
        lines += nlohmann::json{{"id", 1}, {"text", document}}.dump() + "\n";
    }
    write(dir / "a.txt", kText);
    write_gzip(dir / "a.txt.gz", kText);
    write(dir / "a.txt.zst", zstd_bytes(kText));
    write(dir / "a.jsonl", lines);
    write(dir / "a.jsonl.zst", zstd_bytes(lines));
    const std::vector<CorpusFile> files = {
        {dir / "a.txt"},
        {dir / "a.txt.gz", DocumentFormat::kText, Compression::kGzip, ""},
        {dir / "a.txt.zst", DocumentFormat::kText, Compression::kZstd, ""},
        jsonl(dir / "a.jsonl"),
        jsonl(dir / "a.jsonl.zst", Compression::kZstd)};
    for (const CorpusFile& file : files) {
        for (const std::size_t batch_bytes :
             {std::size_t{1}, std::size_t{30}, std::size_t{1} << 20}) {
            EXPECT_EQ(read_all(file, batch_bytes), expected)
                << file.path << " in batches of " << batch_bytes;
        }
    }
}

// Megabytes of text, so that lines and documents cross the reader's 1 MiB buffers, in every form,
// including gzip files of several members and zstd files of several frames (what concatenating
// compressed files gives).
TEST(DocumentReader, LargeAndConcatenatedFilesGiveTheSameDocuments) {
    tests::TempDir dir;
    std::string text;
    std::uint32_t state = 7;
    while (text.size() < (3u << 20)) {
        state = state * 1664525u + 1013904223u;
        const std::size_t length = (state >> 8) % 5000;  // lines of 0 .. 5 KB, some empty
        text.append(length, static_cast<char>('a' + (state >> 24) % 26));
        text += (state >> 4) % 3 == 0 ? "\n\n" : "\n";
    }
    const std::vector<std::string> expected = split_documents(text);
    std::string lines;
    for (const std::string& document : expected) {
        lines += nlohmann::json{{"text", document}}.dump() + "\n";
    }
    const std::size_t half = text.size() / 2;
    write(dir / "a.txt", text);
    write_gzip(dir / "one.gz", text.substr(0, half));
    write_gzip(dir / "two.gz", text.substr(half));
    std::ifstream one(dir / "one.gz", std::ios::binary), two(dir / "two.gz", std::ios::binary);
    std::ofstream(dir / "a.txt.gz", std::ios::binary) << one.rdbuf() << two.rdbuf();
    write(dir / "a.txt.zst", zstd_bytes(text.substr(0, half)) + zstd_bytes(text.substr(half)));
    write_gzip(dir / "a.jsonl.gz", lines);
    for (const CorpusFile& file :
         {CorpusFile{dir / "a.txt"},
          CorpusFile{dir / "a.txt.gz", DocumentFormat::kText, Compression::kGzip, ""},
          CorpusFile{dir / "a.txt.zst", DocumentFormat::kText, Compression::kZstd, ""},
          jsonl(dir / "a.jsonl.gz", Compression::kGzip)}) {
        const std::vector<std::string> documents = read_all(file, 1 << 16);
        ASSERT_EQ(documents.size(), expected.size()) << file.path;
        EXPECT_TRUE(documents == expected) << file.path;
    }
}

TEST(DocumentReader, MalformedJsonlNamesTheFileTheLineAndWhatWasExpected) {
    tests::TempDir dir;
    write(dir / "missing.jsonl", "{\"text\": \"one\"}\n\n{\"body\": \"two\"}\n");
    const std::string missing = error_of(jsonl(dir / "missing.jsonl"));
    EXPECT_NE(missing.find("missing.jsonl: line 3: no field \"text\""), std::string::npos)
        << missing;
    EXPECT_NE(missing.find("text_field"), std::string::npos) << missing;

    write(dir / "utf8.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"bad \xff byte\"}\n");
    const std::string utf8 = error_of(jsonl(dir / "utf8.jsonl"));
    EXPECT_NE(utf8.find("utf8.jsonl: line 2: not a JSON object"), std::string::npos) << utf8;
    EXPECT_NE(utf8.find("UTF-8"), std::string::npos) << utf8;

    write(dir / "array.jsonl", "[1, 2]\n");
    EXPECT_NE(error_of(jsonl(dir / "array.jsonl")).find("line 1: expected a JSON object"),
              std::string::npos);
    // A number too large for a double is JSON nlohmann refuses with another kind of exception.
    write(dir / "huge.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"score\": 1e400}\n");
    const std::string huge = error_of(jsonl(dir / "huge.jsonl"));
    EXPECT_NE(huge.find("huge.jsonl: line 2: not a JSON object"), std::string::npos) << huge;
    write(dir / "number.jsonl", "{\"text\": 7}\n");
    EXPECT_NE(error_of(jsonl(dir / "number.jsonl")).find("field \"text\" is number"),
              std::string::npos);
}

TEST(DocumentReader, DamagedCompressedFilesAreRefusedByName) {
    tests::TempDir dir;
    const std::string compressed = zstd_bytes(kText);
    write(dir / "cut.txt.zst", compressed.substr(0, compressed.size() / 2));
    const std::string cut =
        error_of({dir / "cut.txt.zst", DocumentFormat::kText, Compression::kZstd, ""});
    EXPECT_NE(cut.find("cut.txt.zst: "), std::string::npos) << cut;
    EXPECT_NE(cut.find("truncated"), std::string::npos) << cut;

    write(dir / "noise.txt.zst", "this is not zstd at all");
    EXPECT_NE(error_of({dir / "noise.txt.zst", DocumentFormat::kText, Compression::kZstd, ""})
                  .find("not a valid zstd file"),
              std::string::npos);

    // zlib reads a file without a gzip header as it is; a .gz name promises gzip.
    write(dir / "plain.txt.gz", kText);
    EXPECT_NE(error_of({dir / "plain.txt.gz", DocumentFormat::kText, Compression::kGzip, ""})
                  .find("plain.txt.gz: not a gzip file"),
              std::string::npos);

    write_gzip(dir / "cut.txt.gz", kText + kText + kText);
    const auto size = fs::file_size(dir / "cut.txt.gz");
    fs::resize_file(dir / "cut.txt.gz", size - 12);  // the trailer and some data
    const std::string gzip_cut =
        error_of({dir / "cut.txt.gz", DocumentFormat::kText, Compression::kGzip, ""});
    EXPECT_NE(gzip_cut.find("cut.txt.gz: not a valid gzip file"), std::string::npos) << gzip_cut;
}

TEST(DocumentReader, AFileWithoutDocumentsIsAnErrorWhenEncoded) {
    tests::TempDir dir;
    write(dir / "blank.jsonl", "\n  \n{\"text\": \"\"}\n");
    const PluginRegistry registry = load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    write(dir / "train.txt", kText);
    const auto tokenizer =
        train_tokenizer(*registry.find_tokenizer("bytes"), {{(dir / "train.txt").string()}}, {});
    TokenShardWriter writer(dir / "x.shard", tokenizer->vocab_size());
    try {
        encode_into_shard(*tokenizer, jsonl(dir / "blank.jsonl"), writer);
        FAIL() << "no error";
    } catch (const FileError& error) {
        EXPECT_NE(std::string(error.what()).find("blank.jsonl: holds no documents"),
                  std::string::npos)
            << error.what();
    }
}

}  // namespace
}  // namespace moelab::core
