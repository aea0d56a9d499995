#include "core/config/toml_guard.h"

#include <cstdint>
#include <cstdio>
#include <string>

namespace moelab::core {

namespace {

bool is_key_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '"' || c == '\'' || c == ']';
}

class Scanner {
  public:
    explicit Scanner(std::string_view text) : text_(text) {}

    std::optional<TomlHazard> run() {
        while (at_ < text_.size()) {
            const char c = text_[at_];
            if (c == '\n' || c == '#') {
                if (expect_value_ && after_equals_) {
                    return hazard(c == '#' ? "expected a value after '=', got a comment"
                                           : "expected a value after '=', got the end of the line");
                }
                if (c == '#') {
                    skip_comment();
                } else {
                    newline();
                }
                continue;
            }
            if (c == ' ' || c == '\t' || c == '\r') {
                ++at_;  // indentation keeps the line's start: "  [table]" is a header
                ++column_;
                continue;
            }
            if (static_cast<unsigned char>(c) >= 0x80) return non_ascii();
            if (after_comma_ && (c == '}' || c == ',')) {
                return hazard(std::string("expected a value after ',', got '") + c + "'");
            }
            after_comma_ = c == ',';
            if (nesting_.empty() && line_start_ && c == '[') {
                if (auto found = check_header()) return found;
                continue;
            }
            const bool value_position = expect_value_;
            expect_value_ = false;
            after_equals_ = false;
            // A value cannot start with a terminator; ']' only closes an array ("[]", "[1,]").
            const bool in_array = !nesting_.empty() && nesting_.back() == '[';
            if (value_position && (c == ',' || c == '}' || (c == ']' && !in_array))) {
                return hazard(std::string("expected a value, got '") + c + "'");
            }
            if (c == '"' || c == '\'') {
                if (auto found = skip_string(c)) return found;  // a string value or a quoted key
                continue;
            }
            if (value_position && c != '[' && c != '{') {
                // The parser reads a bare value (number, boolean, date) up to a value terminator,
                // whatever it holds: quotes and brackets in it are part of that scan.
                if (auto found = skip_bare_value()) return found;
                continue;
            }
            switch (c) {
                case '=':
                    expect_value_ = true;
                    after_equals_ = true;
                    break;
                case '[':
                    nesting_.push_back('[');
                    expect_value_ = true;
                    break;
                case '{':
                    nesting_.push_back('{');
                    break;
                case ',':
                    expect_value_ = !nesting_.empty() && nesting_.back() == '[';
                    break;
                case ']':
                    if (!nesting_.empty() && nesting_.back() == '[') nesting_.pop_back();
                    break;
                case '}':
                    if (!nesting_.empty() && nesting_.back() == '{') nesting_.pop_back();
                    break;
                default:
                    break;
            }
            advance();
        }
        return std::nullopt;
    }

  private:
    void advance() {
        line_start_ = false;
        ++at_;
        ++column_;
    }
    void newline() {
        ++at_;
        ++line_;
        column_ = 1;
        line_start_ = true;
    }
    TomlHazard hazard(std::string message) const { return {line_, column_, std::move(message)}; }
    TomlHazard non_ascii() const {
        return hazard(
            "a non-ASCII character outside a string or comment (TOML keys and values "
            "other than strings are ASCII)");
    }

    // toml++'s value terminators that are ASCII: whitespace, its vertical whitespace '\n' to '\r'
    // (vertical tab and form feed included), ',', ']', '}', '#'. (Its non-ASCII whitespace ends a
    // value too; the scan refuses any non-ASCII character outside strings and comments first.)
    static bool is_value_terminator(char c) {
        return c == ' ' || c == '\t' || (c >= '\n' && c <= '\r') || c == ',' || c == ']' ||
               c == '}' || c == '#';
    }

    std::optional<TomlHazard> skip_bare_value() {
        if (auto found = check_date_time_hour()) return found;
        if (auto found = check_date_space_digit()) return found;
        while (at_ < text_.size()) {
            const char c = text_[at_];
            if (is_value_terminator(c)) return std::nullopt;
            if (static_cast<unsigned char>(c) >= 0x80) return non_ascii();
            advance();
        }
        return std::nullopt;
    }

    // toml++ 3.3.0 reads a bare value that starts "YYYY-MM-DDT" (or 't') as a date-time and asserts
    // that a digit follows (undefined behaviour under NDEBUG); found by the recipe fuzzer through
    // --set. A 'T' followed by anything but the hour is no valid date-time.
    std::optional<TomlHazard> check_date_time_hour() {
        const std::string_view rest = text_.substr(at_);
        constexpr std::string_view date = "dddd-dd-dd";
        if (rest.size() <= date.size() + 1) return std::nullopt;
        for (std::size_t i = 0; i < date.size(); ++i) {
            const bool digit = rest[i] >= '0' && rest[i] <= '9';
            if (date[i] == 'd' ? !digit : rest[i] != '-') return std::nullopt;
        }
        const char separator = rest[date.size()];
        const char hour = rest[date.size() + 1];
        if ((separator != 'T' && separator != 't') || (hour >= '0' && hour <= '9')) {
            return std::nullopt;
        }
        for (std::size_t i = 0; i <= date.size(); ++i) advance();
        return hazard(std::string("expected the hour of a date-time after '") + separator +
                      "', got " +
                      (static_cast<unsigned char>(hour) < 0x80 && hour >= ' '
                           ? std::string("'") + hour + "'"
                           : std::string("another character")));
    }

    // toml++ 3.3.0 also reads a bare value of ten characters that starts with a digit and has '-'
    // fifth and eighth ("1979-05-27", but also "197;-05-ry"), then one space and a digit, as a
    // date and a time separated by a space. Its scan skips underscores without counting them
    // ("1979_-05-27" has ten characters) and ends a value at a vertical tab or form feed too. Two
    // assertions follow (undefined behaviour under NDEBUG), both found by the recipe fuzzer
    // through --set: a lone digit (a value terminator after it), and, after 115 to 117
    // underscores, stepping back over more characters than its reader keeps (127). Neither is
    // valid TOML: the time needs its hour and minutes ("07:32"), no bare value is followed by a
    // lone digit, and neither a date nor any number with '-' in those places holds an underscore.
    std::optional<TomlHazard> check_date_space_digit() {
        const std::string_view rest = text_.substr(at_);
        constexpr std::size_t kDate = 10;
        // toml++ refuses a leading underscore itself, before this scan.
        if (rest.empty() || rest[0] < '0' || rest[0] > '9') return std::nullopt;
        std::size_t end = 0;
        std::size_t counted = 0;
        for (; end < rest.size() && !is_value_terminator(rest[end]); ++end) {
            const char c = rest[end];
            if (c == '_') continue;
            if ((counted == 4 || counted == 7) && c != '-') return std::nullopt;
            if (++counted > kDate) return std::nullopt;
        }
        if (counted != kDate || end + 1 >= rest.size()) return std::nullopt;
        const char digit = rest[end + 1];
        if (rest[end] != ' ' || digit < '0' || digit > '9') return std::nullopt;
        const bool underscores = end != kDate;
        const bool lone_digit = end + 2 < rest.size() && is_value_terminator(rest[end + 2]);
        if (!underscores && !lone_digit) return std::nullopt;
        for (std::size_t i = 0; i <= end; ++i) advance();
        if (underscores) {
            return hazard(
                "a date-shaped value holds an underscore ('_' only separates the digits of a "
                "number)");
        }
        return hazard(
            "expected a time after the date and the space (hours and minutes, \"07:32\"), got one "
            "digit");
    }

    void skip_comment() {
        while (at_ < text_.size() && text_[at_] != '\n') advance();
    }

    // A string of any of the four kinds; an unterminated one ends the scan (toml++ reports it).
    std::optional<TomlHazard> skip_string(char quote) {
        const bool multi_line =
            text_.substr(at_, 3) == std::string_view(quote == '"' ? "\"\"\"" : "'''");
        const std::string_view close = multi_line ? text_.substr(at_, 3) : text_.substr(at_, 1);
        for (std::size_t i = 0; i < close.size(); ++i) advance();
        while (at_ < text_.size()) {
            const char c = text_[at_];
            if (c == '\\' && quote == '"') {
                advance();
                if (multi_line) {
                    if (auto found = skip_multi_line_escape()) return found;
                } else if (at_ < text_.size() && text_[at_] != '\n') {
                    advance();
                }
                continue;
            }
            if (c == '\n') {
                if (!multi_line) return std::nullopt;  // invalid; the parser says so
                newline();
                continue;
            }
            if (text_.substr(at_, close.size()) == close) {
                for (std::size_t i = 0; i < close.size(); ++i) advance();
                // Up to two more quotes may close a multi-line string ("""a"""" is a"").
                while (multi_line && at_ < text_.size() && text_[at_] == quote) advance();
                return std::nullopt;
            }
            advance();
        }
        return std::nullopt;
    }

    // After a '\\' in a multi-line basic string. toml++ 3.3.0 asks whether the next character is
    // whitespace (a line-ending backslash) and, after a line-ending backslash, whether the first
    // character past the skipped whitespace and line breaks is whitespace. Its Unicode table has
    // no answer for some code points (is_toml_whitespace_table_undefined) and runs into undefined
    // behaviour instead (found by the comparison-file fuzzer).
    std::optional<TomlHazard> skip_multi_line_escape() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t')) advance();
        if (at_ >= text_.size()) return std::nullopt;
        if (static_cast<unsigned char>(text_[at_]) >= 0x80) {
            // Invalid TOML either way: an escape is ASCII, and a line-ending backslash ends its
            // line.
            return hazard(
                "a non-ASCII character after a backslash in a multi-line string (an escape is "
                "ASCII, and a line-ending backslash must be the last character on its line)");
        }
        if (text_[at_] != '\n' && text_[at_] != '\r') {
            advance();  // an ordinary escape (the parser checks it)
            return std::nullopt;
        }
        // A line-ending backslash: the value skips whitespace and line breaks, and so does the
        // parser, counting toml++'s non-ASCII horizontal whitespace as whitespace too.
        while (at_ < text_.size()) {
            const char c = text_[at_];
            if (c == '\n') {
                newline();
            } else if (c == ' ' || c == '\t' || c == '\r') {
                advance();
            } else if (const auto [code_point, bytes] = code_point_at(at_);
                       is_toml_non_ascii_horizontal_whitespace(code_point)) {
                for (int i = 0; i < bytes; ++i) advance();
            } else if (is_toml_whitespace_table_undefined(code_point)) {
                // Valid TOML that the parser in use cannot read; the escape reads the same.
                // (Said in words: error messages show a backslash escaped, as "\\".)
                char hex[8];
                std::snprintf(hex, sizeof hex, "%04X", static_cast<unsigned>(code_point));
                return hazard(std::string("the TOML reader in use (toml++ 3.3.0) cannot read U+") +
                              hex +
                              " as the first character after a line-ending backslash; write it "
                              "as its escape there (a backslash, then u" +
                              hex + ")");
            } else {
                return std::nullopt;
            }
        }
        return std::nullopt;
    }

    struct CodePoint {
        char32_t value = 0;
        int bytes = 1;
    };
    // The UTF-8 sequence at `at`; 0 for a malformed or truncated one (the parser reports those).
    CodePoint code_point_at(std::size_t at) const {
        const auto byte = [&](std::size_t i) {
            return at + i < text_.size() ? static_cast<unsigned char>(text_[at + i]) : 0u;
        };
        const unsigned lead = byte(0);
        if (lead < 0x80) return {lead, 1};
        const auto continuation = [&](std::size_t i) { return (byte(i) & 0xC0u) == 0x80u; };
        if ((lead & 0xE0u) == 0xC0u && continuation(1)) {
            return {((lead & 0x1Fu) << 6) | (byte(1) & 0x3Fu), 2};
        }
        if ((lead & 0xF0u) == 0xE0u && continuation(1) && continuation(2)) {
            return {((lead & 0x0Fu) << 12) | ((byte(1) & 0x3Fu) << 6) | (byte(2) & 0x3Fu), 3};
        }
        return {0, 1};
    }

    // Where toml++ 3.3.0's is_non_ascii_horizontal_whitespace reaches TOML_UNREACHABLE: it splits
    // U+00A0..U+FEFF into blocks of 0x3FA code points, answers "no" for the blocks a bit mask
    // marks, and has cases for two of the unmarked ones (5 and 7) only. The rest of blocks 0, 11
    // and 63 (U+00A1..U+0499, U+2C5E..U+3057 less U+3000, U+FB26..U+FEFE) is undefined.
    static bool is_toml_whitespace_table_undefined(char32_t c) {
        if (c < 0xA0 || c > 0xFEFF || c == 0xA0 || c == 0x3000 || c == 0xFEFF) return false;
        const std::uint64_t block = (static_cast<std::uint64_t>(c) - 0xA0u) / 0x3FAu;
        if (((std::uint64_t{1} << block) & 0x7FFFFFFFFFFFF75Eull) != 0) return false;
        return block != 5 && block != 7;
    }

    // toml++ 3.3.0's is_non_ascii_horizontal_whitespace, where it is defined.
    static bool is_toml_non_ascii_horizontal_whitespace(char32_t c) {
        return c == 0xA0 || c == 0x1680 || c == 0x180E || (c >= 0x2000 && c <= 0x200B) ||
               c == 0x202F || c == 0x205F || c == 0x2060 || c == 0x3000 || c == 0xFEFF;
    }

    // "[key]" or "[[key]]" at the start of a line outside any value.
    std::optional<TomlHazard> check_header() {
        advance();
        if (at_ < text_.size() && text_[at_] == '[') advance();
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t')) advance();
        if (at_ < text_.size() && !is_key_start(text_[at_]) && text_[at_] != '\n' &&
            text_[at_] != '\r') {
            return hazard(std::string("a table header must start with a key, got '") + text_[at_] +
                          "'");
        }
        if (at_ < text_.size() && (text_[at_] == '\n' || text_[at_] == '\r')) {
            return hazard("a table header must start with a key, got the end of the line");
        }
        // The rest of the header: keys (possibly quoted) up to the closing bracket(s).
        while (at_ < text_.size() && text_[at_] != '\n') {
            const char c = text_[at_];
            if (c == '"' || c == '\'') {
                if (auto found = skip_string(c)) return found;
                continue;
            }
            if (static_cast<unsigned char>(c) >= 0x80) {
                return hazard(
                    "a non-ASCII character outside a string or comment (TOML keys "
                    "and values other than strings are ASCII)");
            }
            if (c == '#') break;
            advance();
        }
        return std::nullopt;
    }

    std::string_view text_;
    std::size_t at_ = 0;
    int line_ = 1;
    int column_ = 1;
    bool line_start_ = true;
    bool after_comma_ = false;
    bool expect_value_ = false;  // after '=', '[' of an array, ',' in an array
    bool after_equals_ = false;  // expect_value_ set by '=' (a value must follow on the line)
    std::string nesting_;        // '[' and '{' open in values, innermost last
};

}  // namespace

std::optional<TomlHazard> find_toml_hazard(std::string_view text) { return Scanner(text).run(); }

}  // namespace moelab::core
