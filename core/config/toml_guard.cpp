#include "core/config/toml_guard.h"

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
                skip_string(c);  // a string value or a quoted key
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

    // toml++'s value terminators: whitespace, a line break, ',', ']', '}', '#'.
    std::optional<TomlHazard> skip_bare_value() {
        while (at_ < text_.size()) {
            const char c = text_[at_];
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ']' ||
                c == '}' || c == '#') {
                return std::nullopt;
            }
            if (static_cast<unsigned char>(c) >= 0x80) return non_ascii();
            advance();
        }
        return std::nullopt;
    }

    void skip_comment() {
        while (at_ < text_.size() && text_[at_] != '\n') advance();
    }

    // A string of any of the four kinds; an unterminated one ends the scan (toml++ reports it).
    void skip_string(char quote) {
        const bool multi_line =
            text_.substr(at_, 3) == std::string_view(quote == '"' ? "\"\"\"" : "'''");
        const std::string_view close = multi_line ? text_.substr(at_, 3) : text_.substr(at_, 1);
        for (std::size_t i = 0; i < close.size(); ++i) advance();
        while (at_ < text_.size()) {
            const char c = text_[at_];
            if (c == '\\' && quote == '"') {
                advance();
                if (at_ < text_.size() && text_[at_] == '\n') {
                    newline();
                } else if (at_ < text_.size()) {
                    advance();
                }
                continue;
            }
            if (c == '\n') {
                if (!multi_line) return;  // invalid; the parser says so
                newline();
                continue;
            }
            if (text_.substr(at_, close.size()) == close) {
                for (std::size_t i = 0; i < close.size(); ++i) advance();
                // Up to two more quotes may close a multi-line string ("""a"""" is a"").
                while (multi_line && at_ < text_.size() && text_[at_] == quote) advance();
                return;
            }
            advance();
        }
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
                skip_string(c);
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
