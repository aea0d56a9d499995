#include "pretokenizer.h"

#include <cstdint>

#include "moelab/sdk/error.h"

namespace moelab::plugins::bpe_family {

PretokenizerKind parse_pretokenizer_kind(std::string_view name) {
    if (name == "gpt2") return PretokenizerKind::kGpt2;
    if (name == "whitespace") return PretokenizerKind::kWhitespace;
    throw sdk::Error("unknown pre-tokenizer '" + std::string(name) +
                     "': expected \"gpt2\" or \"whitespace\"");
}

namespace detail {

namespace {

constexpr CharClass L = CharClass::kLetter, N = CharClass::kNumber, O = CharClass::kOther,
                    S = CharClass::kSpace;

struct Range {
    std::uint32_t first, last;
    CharClass cls;
};

// Non-letter blocks above Latin-1, sorted; anything not listed is a letter.
constexpr Range kRanges[] = {
    {0x02C2, 0x02C5, O},   {0x02D2, 0x02DF, O},   {0x02E5, 0x02EB, O},   {0x0300, 0x036F, O},
    {0x0483, 0x0489, O},   {0x0591, 0x05C7, O},   {0x0600, 0x061F, O},   {0x064B, 0x065F, O},
    {0x0660, 0x0669, N},   {0x066A, 0x066D, O},   {0x06F0, 0x06F9, N},   {0x0900, 0x0903, O},
    {0x093A, 0x094F, O},   {0x0964, 0x0965, O},   {0x0966, 0x096F, N},   {0x0E50, 0x0E59, N},
    {0x1680, 0x1680, S},   {0x2000, 0x200A, S},   {0x200B, 0x2027, O},   {0x2028, 0x2029, S},
    {0x202A, 0x202E, O},   {0x202F, 0x202F, S},   {0x2030, 0x205E, O},   {0x205F, 0x205F, S},
    {0x2060, 0x206F, O},   {0x2070, 0x2070, N},   {0x2074, 0x2079, N},   {0x207A, 0x207E, O},
    {0x2080, 0x2089, N},   {0x208A, 0x208E, O},   {0x20A0, 0x20FF, O},   {0x2100, 0x2101, O},
    {0x2103, 0x2106, O},   {0x2108, 0x2109, O},   {0x2114, 0x2114, O},   {0x2116, 0x2118, O},
    {0x211E, 0x2123, O},   {0x2125, 0x2125, O},   {0x2127, 0x2127, O},   {0x2129, 0x2129, O},
    {0x212E, 0x212E, O},   {0x213A, 0x213B, O},   {0x2140, 0x2144, O},   {0x214A, 0x214D, O},
    {0x214F, 0x214F, O},   {0x2150, 0x2182, N},   {0x2185, 0x2189, N},   {0x218A, 0x245F, O},
    {0x2460, 0x249B, N},   {0x249C, 0x24E9, O},   {0x24EA, 0x24FF, N},   {0x2500, 0x2775, O},
    {0x2776, 0x2793, N},   {0x2794, 0x2BFF, O},   {0x2E00, 0x2E7F, O},   {0x3000, 0x3000, S},
    {0x3001, 0x3004, O},   {0x3007, 0x3007, N},   {0x3008, 0x3020, O},   {0x3021, 0x3029, N},
    {0x302A, 0x3030, O},   {0x3038, 0x303A, N},   {0x303D, 0x303F, O},   {0xFE00, 0xFE0F, O},
    {0xFE30, 0xFE4F, O},   {0xFE50, 0xFE6B, O},   {0xFEFF, 0xFEFF, O},   {0xFF01, 0xFF0F, O},
    {0xFF10, 0xFF19, N},   {0xFF1A, 0xFF20, O},   {0xFF3B, 0xFF40, O},   {0xFF5B, 0xFF65, O},
    {0xFFE0, 0xFFFF, O},   {0x1D7CE, 0x1D7FF, N}, {0x1F000, 0x1FAFF, O}, {0xE0000, 0xE007F, O},
};

CharClass latin1_class(std::uint32_t cp) {
    if (cp == 0x85 || cp == 0xA0) return S;
    if (cp == 0xAA || cp == 0xB5 || cp == 0xBA) return L;
    if (cp == 0xB2 || cp == 0xB3 || cp == 0xB9 || (cp >= 0xBC && cp <= 0xBE)) return N;
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7) return O;
    return L;
}

CharClass class_of_code_point(std::uint32_t cp) {
    if (cp < 0x100) return latin1_class(cp);
    std::size_t lo = 0, hi = std::size(kRanges);
    while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        if (kRanges[mid].last < cp) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < std::size(kRanges) && kRanges[lo].first <= cp) return kRanges[lo].cls;
    return L;
}

}  // namespace

const CharClass kAsciiClass[128] = {
    O, O, O, O, O, O, O, O, O, S, S, S, S, S, O, O,  // \t \n \v \f \r
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,  // \s is Unicode White_Space: not 0x1C-0x1F
    S, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,  // space ! " # ...
    N, N, N, N, N, N, N, N, N, N, O, O, O, O, O, O,  // 0-9
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,  // @ A-O
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O,  // P-Z
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,  // ` a-o
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O,  // p-z
};

CharInfo classify_non_ascii(std::string_view text, std::size_t at) {
    const auto c = static_cast<unsigned char>(text[at]);
    int length = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
        length = 2;
        cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
        length = 3;
        cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
        length = 4;
        cp = c & 0x07u;
    } else {
        return {O, 1};  // a stray continuation byte or an invalid lead byte
    }
    if (at + length > text.size()) return {O, 1};
    for (int k = 1; k < length; ++k) {
        const auto next = static_cast<unsigned char>(text[at + k]);
        if ((next & 0xC0) != 0x80) return {O, 1};
        cp = (cp << 6) | (next & 0x3Fu);
    }
    return {class_of_code_point(cp), static_cast<unsigned char>(length)};
}

}  // namespace detail

}  // namespace moelab::plugins::bpe_family
