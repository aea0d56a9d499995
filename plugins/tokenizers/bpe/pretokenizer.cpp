#include "pretokenizer.h"

namespace moelab::plugins::bpe {

namespace {

enum class Kind { kLetter, kDigit, kSpace, kOtherSpace, kPunct };

Kind kind_of(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return Kind::kLetter;
    if (c >= '0' && c <= '9') return Kind::kDigit;
    if (c == ' ') return Kind::kSpace;
    if (c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f') return Kind::kOtherSpace;
    return Kind::kPunct;
}

}  // namespace

void pretokenize(std::string_view text, std::vector<std::string_view>& out) {
    std::size_t i = 0;
    const std::size_t n = text.size();
    while (i < n) {
        const std::size_t start = i;
        Kind kind = kind_of(static_cast<unsigned char>(text[i]));
        if (kind == Kind::kSpace && i + 1 < n) {
            const Kind next = kind_of(static_cast<unsigned char>(text[i + 1]));
            if (next == Kind::kLetter || next == Kind::kDigit || next == Kind::kPunct) {
                ++i;  // a single leading space joins the following run
                kind = next;
            }
        }
        if (kind == Kind::kSpace || kind == Kind::kOtherSpace) {
            while (i < n) {
                const Kind k = kind_of(static_cast<unsigned char>(text[i]));
                if (k != Kind::kSpace && k != Kind::kOtherSpace) break;
                ++i;
            }
        } else {
            while (i < n && kind_of(static_cast<unsigned char>(text[i])) == kind) ++i;
        }
        out.push_back(text.substr(start, i - start));
    }
}

}  // namespace moelab::plugins::bpe
