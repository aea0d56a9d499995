// The one reader of untrusted paths and the quoting of user text in messages: every kind of
// non-file is refused by name without blocking or reading forever, sizes are capped, and quoted
// text stays one readable line.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/system/printable.h"
#include "core/system/read_file.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

std::string reason_for(const fs::path& file, std::uint64_t max_bytes = kMaxSmallFileBytes) {
    try {
        read_file(file, max_bytes, "recipe file");
    } catch (const FileError& error) {
        EXPECT_EQ(error.path(), file);
        return error.reason();
    }
    return "(read)";
}

TEST(ReadFile, ReadsARegularFileWhole) {
    tests::TempDir dir;
    std::string text(100000, 'x');
    text[5] = '\0';
    std::ofstream(dir.path() / "f", std::ios::binary) << text;
    EXPECT_EQ(read_file(dir.path() / "f"), text);
    EXPECT_EQ(regular_file_size(dir.path() / "f"), text.size());
}

TEST(ReadFile, RefusesWhatIsNotARegularFile) {
    tests::TempDir dir;
    EXPECT_EQ(reason_for(dir.path()), "is a directory");
    EXPECT_EQ(reason_for(dir.path() / "missing"), "does not exist");
    EXPECT_EQ(reason_for("/dev/zero"), "is a character device, not a regular file");
    EXPECT_EQ(reason_for(""), "the path is empty (expected a recipe file)");
    // A FIFO: opening it would block until a writer comes; it must be refused at once.
    const fs::path fifo = dir.path() / "fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(reason_for(fifo), "is a FIFO (named pipe), not a regular file");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    // A path component longer than the file system allows: errno's words, not the library's.
    const fs::path long_name = dir.path() / std::string(300, 'a');
    EXPECT_EQ(reason_for(long_name),
              std::string("cannot be examined: ") + std::strerror(ENAMETOOLONG));
}

TEST(ReadFile, CapsTheSize) {
    tests::TempDir dir;
    std::ofstream(dir.path() / "big") << std::string(5000, 'x');
    EXPECT_EQ(reason_for(dir.path() / "big", 4096),
              "is 4.9 KiB, more than the 4.0 KiB a recipe file may have");
    EXPECT_EQ(read_file(dir.path() / "big", 5000).size(), 5000u);
}

TEST(ReadFile, ErrorMessageNamesThePathPrintably) {
    const FileError error(fs::path("a\nb"), "does not exist");
    EXPECT_STREQ(error.what(), "a\\nb: does not exist");
}

TEST(Printable, EscapesControlCharactersAndInvalidBytes) {
    EXPECT_EQ(printable("plain text"), "plain text");
    EXPECT_EQ(printable("two\nlines\tand\x07"), "two\\nlines\\tand\\x07");
    EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9") << "valid UTF-8 passes";
    EXPECT_EQ(printable("bad\xff"), "bad\\xff");
    EXPECT_EQ(printable("back\\slash"), "back\\\\slash");
}

TEST(Printable, ShortensLongTextInTheMiddleWithItsLength) {
    const std::string long_text = std::string(500, 'a') + "END";
    const std::string shown = printable(long_text, 120);
    EXPECT_LE(shown.size(), 120u + 4);  // "…" is 3 bytes and counts as one
    EXPECT_NE(shown.find("(503 characters)"), std::string::npos) << shown;
    EXPECT_EQ(shown.substr(0, 10), "aaaaaaaaaa");
    EXPECT_EQ(shown.substr(shown.size() - 3), "END");
    // An escape is never cut in half.
    const std::string newlines(300, '\n');
    const std::string escaped = printable(newlines, 60);
    EXPECT_EQ(escaped.find("\\…"), std::string::npos) << escaped;
}

TEST(Printable, LimitsTheNumberOfLines) {
    std::string text;
    for (int i = 0; i < 100; ++i) text += "line " + std::to_string(i) + "\n";
    text.pop_back();
    const std::string shown = printable_lines(text, 400, 5);
    EXPECT_EQ(shown, "line 0\nline 1\nline 2\nline 3\nline 4\n… and 95 more lines");
}

}  // namespace
}  // namespace moelab::core
