#pragma once

// GPT-2-style pre-tokenization on bytes: merges never cross the boundaries between
//   [space]letters   [space]digits   [space]punctuation   other whitespace runs
// Bytes >= 0x80 count as letters, so UTF-8 sequences of letters stay together. (GPT-2 also splits
// English contractions; we do not.)

#include <string_view>
#include <vector>

namespace moelab::plugins::bpe {

// Appends the pre-tokens of `text` (views into it) to `out`. Concatenated, they give `text`.
void pretokenize(std::string_view text, std::vector<std::string_view>& out);

}  // namespace moelab::plugins::bpe
