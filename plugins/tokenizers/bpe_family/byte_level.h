#pragma once

// The byte-level alphabet of GPT-2 (also the Hugging Face `ByteLevel` alphabet): each of the 256
// bytes is shown as one printable Unicode character, so that any token -- including bytes that
// are not valid UTF-8 on their own -- is a readable JSON string ("Ġthe" for " the"). Printable
// ASCII and most of Latin-1 stand for themselves; the other 68 bytes map to U+0100 and up.

#include <optional>
#include <string>
#include <string_view>

namespace moelab::plugins::bpe_family {

// " the" -> "Ġthe" (UTF-8).
std::string bytes_to_piece(std::string_view bytes);

// The inverse; std::nullopt when `piece` holds a character outside the alphabet or bad UTF-8.
std::optional<std::string> piece_to_bytes(std::string_view piece);

}  // namespace moelab::plugins::bpe_family
