#pragma once

// The learned vocabulary of the BPE family, in "expanded" ids: 0..255 are the bytes, 256 is the
// end-of-document token, learned tokens follow in order of creation. A token is its byte string:
// a merge whose concatenation already exists produces that token again (as in Sennrich's BPE and
// Hugging Face's trainer), so every byte string has one id.
//
// Scaffold-BPE (methods.md §8) marks some learned tokens as scaffold: they exist only as
// intermediates of encoding. The model sees the normal tokens only, renumbered contiguously in
// expanded-id order ("model ids"); for plain BPE model ids and expanded ids coincide.

#include <cstdint>
#include <string>
#include <vector>

namespace moelab::plugins::bpe_family {

inline constexpr std::int32_t kByteCount = 256;
inline constexpr std::int32_t kEndOfDocument = 256;  // expanded id (and model id)
inline constexpr std::int32_t kFirstLearnedId = 257;
inline constexpr char kEndOfDocumentText[] = "<|endoftext|>";

struct Merge {
    std::int32_t left = 0;
    std::int32_t right = 0;
    std::int32_t result = 0;  // the token spelled left + right
};

struct Vocabulary {
    std::vector<std::string> tokens;      // expanded id -> bytes (the end-of-document token: "")
    std::vector<Merge> merges;            // rank order
    std::vector<std::uint8_t> scaffold;   // expanded id -> 1 for a scaffold token

    // The 256 bytes and the end-of-document token.
    static Vocabulary bytes_only();

    std::int32_t expanded_size() const { return static_cast<std::int32_t>(tokens.size()); }
    bool is_scaffold(std::int32_t id) const { return scaffold[static_cast<std::size_t>(id)] != 0; }
    std::int64_t scaffold_count() const;
    std::int64_t normal_count() const { return expanded_size() - scaffold_count(); }

    // Throws sdk::Error unless: bytes and end-of-document come first, tokens are distinct, every
    // merge joins two earlier-created tokens into the token spelled by them, every learned token
    // is the result of some merge, and bytes and end-of-document are not scaffold.
    void validate() const;
};

// expanded id -> model id (-1 for scaffold tokens).
std::vector<std::int32_t> model_ids(const Vocabulary& vocabulary);

// For every expanded id, its shortest decomposition into normal tokens (expanded ids) through
// the recorded merges: itself for a normal token; for a scaffold token t = a + b (any merge that
// produces t), demolish(a) ++ demolish(b), the fewest pieces over all such merges, ties to the
// lexicographically smallest id sequence (methods.md §8.3; the tie rule follows a third-party
// implementation).
std::vector<std::vector<std::int32_t>> demolition_sequences(const Vocabulary& vocabulary);

}  // namespace moelab::plugins::bpe_family
