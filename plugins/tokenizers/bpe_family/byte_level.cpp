#include "byte_level.h"

#include <array>
#include <cstdint>

namespace moelab::plugins::bpe_family {

namespace {

bool stands_for_itself(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

// byte -> code point, in GPT-2's order: bytes that stand for themselves keep their value, the
// others get U+0100, U+0101, ... in increasing byte order.
std::array<std::uint32_t, 256> make_code_points() {
    std::array<std::uint32_t, 256> code{};
    std::uint32_t next = 256;
    for (int b = 0; b < 256; ++b) code[b] = stands_for_itself(b) ? b : next++;
    return code;
}

const std::array<std::uint32_t, 256>& code_points() {
    static const std::array<std::uint32_t, 256> table = make_code_points();
    return table;
}

void append_utf8(std::uint32_t cp, std::string& out) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else {  // every code point of the alphabet is below U+0800
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace

std::string bytes_to_piece(std::string_view bytes) {
    std::string piece;
    piece.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) append_utf8(code_points()[b], piece);
    return piece;
}

std::optional<std::string> piece_to_bytes(std::string_view piece) {
    static const std::array<int, 512> byte_of = [] {
        std::array<int, 512> inverse{};
        inverse.fill(-1);
        for (int b = 0; b < 256; ++b) inverse[code_points()[b]] = b;
        return inverse;
    }();
    std::string bytes;
    bytes.reserve(piece.size());
    for (std::size_t i = 0; i < piece.size();) {
        const auto c = static_cast<unsigned char>(piece[i]);
        std::uint32_t cp;
        if (c < 0x80) {
            cp = c;
            i += 1;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < piece.size() &&
                   (static_cast<unsigned char>(piece[i + 1]) & 0xC0) == 0x80) {
            cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(piece[i + 1]) & 0x3Fu);
            i += 2;
        } else {
            return std::nullopt;
        }
        if (cp >= byte_of.size() || byte_of[cp] < 0) return std::nullopt;
        bytes += static_cast<char>(byte_of[cp]);
    }
    return bytes;
}

}  // namespace moelab::plugins::bpe_family
