#pragma once

// "Did you mean ...?" for misspelled keys and choices.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moelab::core {

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, if it is close enough to be a plausible typo: at most one edit
// for words of up to four characters, else at most a third of the word's length.
std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates);

// " (did you mean 'steps'?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace moelab::core
