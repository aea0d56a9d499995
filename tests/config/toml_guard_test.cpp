// core/config/toml_guard.h: refuses exactly the TOML that crashes toml++ 3.3.0, with its line and
// column, and no other valid TOML (every shipped recipe, and strings holding the patterns).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config/toml_guard.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

TEST(TomlGuard, RefusesTheTextThatCrashesTheParserWithItsPosition) {
    struct Case {
        std::string text;
        int line, column;
        std::string message;
    };
    const std::vector<Case> cases = {
        {"a = 1\n[!]\n", 2, 2, "a table header must start with a key, got '!'"},
        {"[[[a]]]\n", 1, 3, "a table header must start with a key, got '['"},
        {"  [\n", 1, 4, "a table header must start with a key, got the end of the line"},
        {"x = 1 \xc3\xa9\n", 1, 7, "a non-ASCII character outside a string or comment"},
        {"[t\xc3\xa9]\n", 1, 3, "a non-ASCII character outside a string or comment"},
        {"x = [1,}\n", 1, 8, "expected a value after ',', got '}'"},
        {"x = [1,\n  # note\n  , 2]\n", 3, 3, "expected a value after ',', got ','"},
        {"x = {a = 1, }\n", 1, 13, "expected a value after ',', got '}'"},
        {"seeds = [}\n", 1, 10, "expected a value, got '}'"},
        {"x = [,1]\n", 1, 6, "expected a value, got ','"},
        {"x = }\n", 1, 5, "expected a value, got '}'"},
        {"x = ]\n", 1, 5, "expected a value, got ']'"},
        {"x = # nothing\n", 1, 5, "expected a value after '=', got a comment"},
        {"x =\ny = 1\n", 1, 4, "expected a value after '=', got the end of the line"},
        // A bare value is read up to a terminator, quotes included: the string is no string.
        {"x = 3e{[\"\"\"\xcc\xa4\"\"\"\n", 1, 12, "a non-ASCII character outside a string"},
        // A date, 'T' or 't', and no hour: toml++ asserts a digit there.
        {"x = 1979-05-27T:32:00\n", 1, 16, "expected the hour of a date-time after 'T', got ':'"},
        {"x = [1, 1979-05-27t+07:00]\n", 1, 20, "after 't', got '+'"},
        // A date-shaped value, a space, one digit and a terminator: toml++ asserts there too.
        {"x = 1979-05-27 1 \n", 1, 16, "expected a time after the date and the space"},
        {"x = [1979-0x-27 0]\n", 1, 17, "expected a time after the date"},
        {"a = {x = 1979-05-ry 9}\n", 1, 21, "expected a time after the date"},
        {"x = 1979-05-27 9\n", 1, 16, "expected a time after the date"},
        {"x = 197;-05-ry 9 1\n", 1, 16, "expected a time after the date"},
        // Its scan counts no underscores, and a vertical tab or form feed ends a value (the CI
        // fuzzer's finding of 2026-12-02).
        {"x = 1979-05-27 0\v", 1, 16, "expected a time after the date"},
        {"x = 1979_-05-27 0\n", 1, 17, "a date-shaped value holds an underscore"},
        {"x = [1_979-05-2_7 0\f]\n", 1, 19, "a date-shaped value holds an underscore"},
        // 115 underscores: toml++ steps back over more characters than it keeps.
        {"x = 1" + std::string(115, '_') + "979-05-27 12\n", 1, 131, "holds an underscore"},
        // Multi-line basic strings: toml++ classifies the character after a backslash, and the
        // first one after a line-ending backslash, with a table that has no answer for U+00A1..
        {"s = \"\"\"x\\\xc3\xa9\"\"\"\n", 1, 10, "a non-ASCII character after a backslash"},
        {"s = \"\"\"x\\ \t\xc3\xa9\"\"\"\n", 1, 12, "a non-ASCII character after a backslash"},
        {"s = \"\"\"x\\\n  \xc3\xa9\"\"\"\n", 2, 3,
         "cannot read U+00E9 as the first character after a line-ending backslash; write it as "
         "its escape there (a backslash, then u00E9)"},
        {"s = \"\"\"x\\  \r\n\n\t\xc2\xa0\xce\xb1\"\"\"\n", 3, 4, "cannot read U+03B1"},
        {"[t]\ns = \"\"\"\nx \\\n\\\n \xd2\x99 y\"\"\"\n", 5, 2, "(a backslash, then u0499)"},
        // U+FEF7 and U+2C5E: the table's blocks 63 and 11 (the fuzzer's second finding).
        {"s = \"\"\"x\\\n\xef\xbb\xb7 \"\"\"\n", 2, 1, "(a backslash, then uFEF7)"},
        {"s = \"\"\"x\\\n\xe2\xb1\x9e\"\"\"\n", 2, 1, "(a backslash, then u2C5E)"},
    };
    for (const Case& c : cases) {
        const auto hazard = find_toml_hazard(c.text);
        ASSERT_TRUE(hazard.has_value()) << c.text;
        EXPECT_EQ(hazard->line, c.line) << c.text;
        EXPECT_EQ(hazard->column, c.column) << c.text;
        EXPECT_NE(hazard->message.find(c.message), std::string::npos) << hazard->message;
    }
}

TEST(TomlGuard, AcceptsValidTomlIncludingThePatternsInsideStringsAndComments) {
    for (const std::string text : {
             "x = [1, 2, ]\n",
             "e = []\nf = [ # comment\n  1, # one\n  2,\n]\n",
             "x = [\n  [1, 2],\n  [3],\n]\n",
             "name = \"caf\xc3\xa9 ,} [!]\" # comment \xc3\xa9 ,}\n",
             "s = 'a,}'\nt = \"\"\"\n[!]\n,}\n\"\"\"\nu = '''\n\xc3\xa9 ,,\n'''\n",
             "q = \"escaped \\\" ,} quote\"\n",
             "[\"quoted key\"]\n[ spaced ]\n[[array.of.tables]]\n  [indented]\n",
             "t = {a = 1, b = [1, {c = 2}]}\n",
             "a.\"caf\xc3\xa9\" = 1\nx = [\"\xc3\xa9\", '\xc3\xa9']\nt = {\"\xc3\xa9\" = 1}\n",
             "d = 1979-05-27T07:32:00Z\nf = [+1.5e-3, inf, -nan, 0x1f]\n",
             // Dates and times, and what only looks like them inside strings.
             "d = 1979-05-27T07:32:00Z\ne = 1979-05-27t07:32\nf = 1979-05-27\ng = "
             "\"1979-05-27T:\"\n",
             "d = 1979-05-27 07:32:00\ne = 1979-05-27 # 1 \nf = \"1979-05-27 1 \"\n",
             "n = [1_000, 2_000] # 1\nm = 1_979_052_7 \n",
             // A local date-time with a space, the digits after it, and a date at the very end.
             "d = [1979-05-27 07:32:00, 1979-05-27 07:32:59]\ne = 1979-05-27",
             // Line-ending backslashes followed by what toml++ can classify.
             "s = \"\"\"x\\\n  y \xc3\xa9\\\n \xe4\xb8\xad \\\n\xd2\x9a \\\n\\u00e9\"\"\"\n",
             // The neighbours of the undefined ranges, and U+3000 (whitespace to toml++).
             "s = \"\"\"\\\n\xe2\xb1\x9d \\\n\xe3\x81\x98 \\\n\xe3\x80\x80x "
             "\\\n\xef\xac\xa5\"\"\"\n",
             "s = \"\"\"\xc3\xa9 \\\" \\\\\xc3\xa9 \\n\xc3\xa9\"\"\"\nt = \"\\\\\xc3\xa9\"\n",
         }) {
        const auto hazard = find_toml_hazard(text);
        EXPECT_FALSE(hazard.has_value()) << text << "\n" << (hazard ? hazard->message : "");
    }
}

TEST(TomlGuard, AcceptsEveryShippedRecipeAndComparisonFile) {
    int files = 0;
    for (const auto& entry :
         fs::recursive_directory_iterator(fs::path(MOELAB_SOURCE_DIR) / "recipes")) {
        if (entry.path().extension() != ".toml") continue;
        std::ifstream in(entry.path());
        std::stringstream text;
        text << in.rdbuf();
        const auto hazard = find_toml_hazard(text.str());
        EXPECT_FALSE(hazard.has_value()) << entry.path() << ": " << (hazard ? hazard->message : "");
        ++files;
    }
    EXPECT_GT(files, 20);
}

}  // namespace
}  // namespace moelab::core
