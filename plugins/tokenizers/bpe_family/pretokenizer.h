#pragma once

// Pre-tokenization: the text is cut into pieces, and BPE merges never cross a piece boundary.
//
// `gpt2` follows GPT-2's splitting regex (the one behind Hugging Face's ByteLevel pre-tokenizer)
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// so merges never cross character categories (letters, numbers, other) and a single space joins
// the following word. `whitespace` keeps only the whitespace boundaries: ` ?\S+|\s+(?!\S)|\s+`.
// With `split_digits` every numeric character is a piece of its own and the rest is split as above
// (Hugging Face: Sequence[Digits(individual_digits), ByteLevel]); LLaMA-style, as Scaffold-BPE's
// setup asks (methods.md §8.4).
//
// Interpretation: the Unicode categories are exact for ASCII and Latin-1 and approximated above by
// ranges (punctuation, symbols, combining marks, numerals and spaces of the common blocks; every
// other code point counts as a letter). Bytes that are not valid UTF-8 count as "other".

#include <string>
#include <string_view>

namespace moelab::plugins::bpe_family {

enum class PretokenizerKind { kGpt2, kWhitespace };

struct PretokenizerConfig {
    PretokenizerKind kind = PretokenizerKind::kGpt2;
    bool split_digits = false;

    std::string kind_name() const { return kind == PretokenizerKind::kGpt2 ? "gpt2" : "whitespace"; }
    bool operator==(const PretokenizerConfig&) const = default;
};

// Parses "gpt2" / "whitespace"; throws sdk::Error otherwise.
PretokenizerKind parse_pretokenizer_kind(std::string_view name);

// Calls `piece(std::string_view)` for each piece of `text`, in order; concatenated, the pieces
// are `text`. No allocation.
template <class PieceFn>
void for_each_piece(std::string_view text, const PretokenizerConfig& config, PieceFn&& piece);

// ---- implementation ----

namespace detail {

enum class CharClass : unsigned char { kLetter, kNumber, kOther, kSpace };

struct CharInfo {
    CharClass cls;
    unsigned char length;  // bytes
};

CharInfo classify_non_ascii(std::string_view text, std::size_t at);

extern const CharClass kAsciiClass[128];

inline CharInfo char_at(std::string_view text, std::size_t at) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c < 0x80) return {kAsciiClass[c], 1};
    return classify_non_ascii(text, at);
}

// Splits text[begin, end) by the category rules (no digit splitting).
template <class PieceFn>
void split_by_category(std::string_view text, std::size_t begin, std::size_t end,
                       bool categories, PieceFn& piece) {
    // `categories` false: letters, numbers and other are one class (the whitespace pre-tokenizer).
    auto class_of = [categories](CharClass c) {
        return categories || c == CharClass::kSpace ? c : CharClass::kLetter;
    };
    std::size_t i = begin;
    while (i < end) {
        const std::size_t start = i;
        const auto c = static_cast<unsigned char>(text[i]);
        if (categories && c == '\'' && i + 1 < end) {
            // GPT-2's contractions, case-sensitive as in its regex.
            const std::string_view rest = text.substr(i + 1, std::min<std::size_t>(2, end - i - 1));
            std::size_t length = 0;
            if (rest.starts_with("re") || rest.starts_with("ve") || rest.starts_with("ll")) {
                length = 3;
            } else if (!rest.empty() && (rest[0] == 's' || rest[0] == 't' || rest[0] == 'm' ||
                                         rest[0] == 'd')) {
                length = 2;
            }
            if (length != 0) {
                piece(text.substr(i, length));
                i += length;
                continue;
            }
        }
        CharInfo info = char_at(text, i);
        CharClass cls = class_of(info.cls);
        if (c == ' ' && i + 1 < end) {
            const CharInfo next = char_at(text, i + 1);
            if (next.cls != CharClass::kSpace) {  // " ?\p{L}+" and friends: the space joins
                ++i;
                info = next;
                cls = class_of(next.cls);
            }
        }
        if (cls != CharClass::kSpace) {
            i += info.length;
            while (i < end) {
                const CharInfo next = char_at(text, i);
                if (class_of(next.cls) != cls) break;
                i += next.length;
            }
            piece(text.substr(start, i - start));
            continue;
        }
        // A whitespace run: "\s+(?!\S)" leaves its last character to the next piece when a
        // non-space follows (that character then starts the next match); "\s+" takes a single
        // whitespace character before a non-space.
        std::size_t last = i;
        while (i < end) {
            const CharInfo next = char_at(text, i);
            if (next.cls != CharClass::kSpace) break;
            last = i;
            i += next.length;
        }
        if (i < end && last > start) i = last;
        piece(text.substr(start, i - start));
    }
}

}  // namespace detail

template <class PieceFn>
void for_each_piece(std::string_view text, const PretokenizerConfig& config, PieceFn&& piece) {
    const bool categories = config.kind == PretokenizerKind::kGpt2;
    if (!config.split_digits) {
        detail::split_by_category(text, 0, text.size(), categories, piece);
        return;
    }
    std::size_t segment = 0;
    for (std::size_t i = 0; i < text.size();) {
        const detail::CharInfo info = detail::char_at(text, i);
        if (info.cls == detail::CharClass::kNumber) {
            detail::split_by_category(text, segment, i, categories, piece);
            piece(text.substr(i, info.length));
            segment = i + info.length;
        }
        i += info.length;
    }
    detail::split_by_category(text, segment, text.size(), categories, piece);
}

}  // namespace moelab::plugins::bpe_family
