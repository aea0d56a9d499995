#include "core/system/printable.h"

#include <vector>

#include <fmt/format.h>

namespace moelab::core {

namespace {

// Length of the valid UTF-8 sequence starting at text[i] (1-4), or 0 if it is not one.
std::size_t utf8_length(std::string_view text, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0 && lead >= 0xC2)
        length = 2;
    else if ((lead & 0xF0) == 0xE0)
        length = 3;
    else if ((lead & 0xF8) == 0xF0 && lead <= 0xF4)
        length = 4;
    else
        return 0;
    if (i + length > text.size()) return 0;
    for (std::size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return 0;
    }
    return length;
}

// Escaped pieces, one per source character, so that shortening never cuts an escape in half.
std::string escape_all(std::string_view text, std::vector<std::size_t>& piece_ends) {
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        const std::size_t length = utf8_length(text, i);
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\r')
            out += "\\r";
        else if (c == '\\')
            out += "\\\\";
        else if (c < 0x20 || c == 0x7F || length == 0)
            out += fmt::format("\\x{:02x}", c);
        else
            out.append(text.substr(i, length));
        i += length == 0 ? 1 : length;
        piece_ends.push_back(out.size());
    }
    return out;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_chars) {
    std::vector<std::size_t> ends;
    std::string escaped = escape_all(text, ends);
    if (escaped.size() <= max_chars) return escaped;
    const std::string middle = fmt::format("…({} characters)…", text.size());
    const std::size_t keep = max_chars > middle.size() ? max_chars - middle.size() : 16;
    const std::size_t head_budget = keep * 2 / 3;
    const std::size_t tail_budget = keep - head_budget;
    // The head ends, and the tail starts, at piece boundaries.
    std::size_t head = 0;
    for (std::size_t end : ends) {
        if (end > head_budget) break;
        head = end;
    }
    std::size_t tail = escaped.size();
    for (auto it = ends.rbegin(); it != ends.rend(); ++it) {
        if (escaped.size() - *it > tail_budget) break;
        tail = *it;
    }
    if (tail < head) tail = head;
    return escaped.substr(0, head) + middle + escaped.substr(tail);
}

std::string printable_lines(std::string_view text, std::size_t max_chars_per_line,
                            std::size_t max_lines) {
    std::string out;
    std::size_t lines = 0;
    std::size_t begin = 0;
    while (begin <= text.size()) {
        std::size_t end = text.find('\n', begin);
        if (end == std::string_view::npos) end = text.size();
        if (lines == max_lines) {
            std::size_t rest = 1;
            for (std::size_t i = end; i < text.size(); ++i) rest += text[i] == '\n';
            out += fmt::format("\n… and {} more line{}", rest, rest == 1 ? "" : "s");
            break;
        }
        if (lines > 0) out += '\n';
        out += printable(text.substr(begin, end - begin), max_chars_per_line);
        ++lines;
        if (end == text.size()) break;
        begin = end + 1;
    }
    return out;
}

}  // namespace moelab::core
