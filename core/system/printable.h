#pragma once

// Text from a user's file (a recipe value, a path, a token) quoted back in an error message must
// keep the message one readable line: control characters are escaped (\n, \t, \x07) and long
// text is shortened in the middle with its full length stated, so a 70,000-character value does
// not become a 70,000-character error.

#include <cstddef>
#include <string>
#include <string_view>

namespace moelab::core {

// `text` escaped; if longer than `max_chars` (counted after escaping), the first and last parts
// around "…(N characters)…". Valid UTF-8 passes through; invalid bytes are escaped as \xNN.
std::string printable(std::string_view text, std::size_t max_chars = 120);

// Each line of a multi-line message made printable, at most `max_lines` lines, then
// "… and N more lines".
std::string printable_lines(std::string_view text, std::size_t max_chars_per_line = 400,
                            std::size_t max_lines = 40);

}  // namespace moelab::core
