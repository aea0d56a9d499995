#pragma once

// HARPE's RoPE base sets (methods.md §5.2): one base per attention head (per key/value head under
// grouped-query attention), the same set in every layer. Torch-free: the `harpe` plugin and
// `moelab harpe-bases` share it.
//
// Note [HARPE base search]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// The paper's default picks bases whose "attention waveforms" complement each other: where one
// base's waveform peaks, another's has a valley. The waveform of base b is the RoPE score upper
// bound as a function of the relative distance m (Attention Buckets, whose search HARPE adopts):
//
//   w_b(m) = (2 / sqrt(d)) * sum_{j=0}^{d/2-1} cos(m * b^(-2j/d)),   d = head_dim,  m = 1..window
//
// Candidates are b_min + i * stride, i = 1 .. (b_max - b_min) / stride. The set starts as
// {b_min}; each round adds the candidate whose peaks lie nearest the valleys found so far and
// whose valleys lie nearest the peaks found so far, until it has one base per head; the set is
// then sorted ascending (Table 2's order). Where the paper is silent we choose, and say so:
//   - the window of m: the distances the model must handle (option `window`; the target
//     context), since the paper gives none; extrema count from window / 4 on (`window_start`), as
//     Attention Buckets looks at m in [1000, 4090] for a 4k context: near m = 0 every waveform
//     has its main lobe, so the highest peaks of every base would sit at the same few distances;
//   - which extrema: order-1 local maxima and minima, as scipy.signal.argrelextrema finds them,
//     keeping the `extrema` highest peaks and lowest valleys at least `min_gap` apart (the
//     Attention Buckets code keeps 6 per base, 50-60 positions apart); all of them would count
//     the fast ripples of the highest frequencies, which every base shares;
//   - the distance "sum_i |p_j,i - v_s,i|" pairs peaks and valleys by index, which is undefined
//     when the sets differ in size: each of the candidate's peaks counts its distance to the
//     nearest valley found so far, and each of its valleys the distance to the nearest peak;
//   - ties go to the smaller base.

#include <cstdint>
#include <vector>

namespace moelab::plugins::harpe {

// Table 2 of the paper: the 32 bases its search chose for b_min 1e6, b_max 5e6, stride 3e4,
// head_dim 128 (LLaMA-2-7B), ascending, head 1 first.
const std::vector<double>& harpe32_bases();

// b_min + h (b_max - b_min) / (n - 1) for h = 0 .. n-1 (n = 1: {b_min}); descending: reversed.
std::vector<double> uniform_bases(std::int64_t n, double b_min, double b_max, bool descending);

// w_b(m) for m = 1 .. window: element i is distance i + 1. Float64.
std::vector<double> attention_waveform(double base, std::int64_t head_dim, std::int64_t window);

struct WaveformExtrema {
    std::vector<std::int64_t> peaks;    // distances m, ascending
    std::vector<std::int64_t> valleys;  // distances m, ascending
};

// The `keep` highest local maxima and the `keep` lowest local minima of `wave` at distances from
// `first` on (element i is distance i + 1; an extremum is strictly above, or below, both
// neighbours), taken greedily by height, each at least min_gap from one already kept.
WaveformExtrema waveform_extrema(const std::vector<double>& wave, std::int64_t keep,
                                 std::int64_t min_gap, std::int64_t first = 1);

struct Candidate {
    double base = 0;
    WaveformExtrema extrema;
};

struct Choice {
    std::size_t candidate = 0;  // index into the candidates
    double distance = 0;        // its score when chosen (0 for the first)
};

// The greedy complementarity selection of Note [HARPE base search] over extrema already found:
// candidates[0] is chosen first, then n - 1 more, in the order chosen.
std::vector<Choice> complementary_selection(const std::vector<Candidate>& candidates,
                                            std::int64_t n);

struct BaseSearch {
    std::int64_t heads = 32;
    double b_min = 1e6;
    double b_max = 5e6;
    double stride = 3e4;
    std::int64_t head_dim = 128;
    std::int64_t window = 131072;
    // Extrema count from this distance on; 0: window / 4 (Note [HARPE base search]).
    std::int64_t window_start = 0;
    std::int64_t extrema = 6;
    std::int64_t min_gap = 50;
};

struct SearchResult {
    std::vector<double> bases;    // ascending: head h gets bases[h]
    std::vector<Choice> choices;  // in the order chosen
    std::vector<Candidate> candidates;
};

// Throws std::invalid_argument naming the option when the search cannot run (fewer candidates
// than heads, b_min >= b_max, a stride or window < 1, an odd head_dim).
SearchResult search_bases(const BaseSearch& search);

}  // namespace moelab::plugins::harpe
