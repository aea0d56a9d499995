#include "base_sets.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>

namespace moelab::plugins::harpe {

const std::vector<double>& harpe32_bases() {
    static const std::vector<double> bases = [] {
        // Table 2, in units of 1e6.
        const double millions[] = {1.00, 1.15, 1.30, 1.45, 2.17, 2.20, 2.23, 2.47, 2.50, 2.65, 2.68,
                                   2.71, 2.74, 2.80, 2.83, 2.92, 3.01, 3.04, 3.10, 3.13, 3.16, 3.22,
                                   3.43, 3.46, 3.61, 3.88, 4.09, 4.15, 4.39, 4.45, 4.51, 4.54};
        std::vector<double> out;
        for (const double m : millions) out.push_back(m * 1e6);
        return out;
    }();
    return bases;
}

std::vector<double> uniform_bases(std::int64_t n, double b_min, double b_max, bool descending) {
    std::vector<double> bases;
    for (std::int64_t h = 0; h < n; ++h) {
        bases.push_back(n == 1 ? b_min
                               : b_min + static_cast<double>(h) * (b_max - b_min) /
                                             static_cast<double>(n - 1));
    }
    if (descending) std::reverse(bases.begin(), bases.end());
    return bases;
}

std::vector<double> attention_waveform(double base, std::int64_t head_dim, std::int64_t window) {
    const std::int64_t half = head_dim / 2;
    std::vector<double> theta(static_cast<std::size_t>(half));
    for (std::int64_t j = 0; j < half; ++j) {
        theta[j] = std::pow(base, -2.0 * static_cast<double>(j) / static_cast<double>(head_dim));
    }
    const double scale = 2.0 / std::sqrt(static_cast<double>(head_dim));
    std::vector<double> wave(static_cast<std::size_t>(window));
    for (std::int64_t i = 0; i < window; ++i) {
        const double m = static_cast<double>(i + 1);
        double sum = 0;
        for (const double t : theta) sum += std::cos(m * t);
        wave[i] = scale * sum;
    }
    return wave;
}

namespace {

// Local extrema of `wave` above (sign 1) or below (sign -1) both neighbours, the `keep` most
// extreme at least min_gap apart, as distances, ascending.
std::vector<std::int64_t> extreme_points(const std::vector<double>& wave, double sign,
                                         std::int64_t keep, std::int64_t min_gap,
                                         std::int64_t first) {
    std::vector<std::size_t> local;
    for (std::size_t i = std::max<std::size_t>(
             1, static_cast<std::size_t>(std::max<std::int64_t>(first - 1, 0)));
         i + 1 < wave.size(); ++i) {
        if (sign * wave[i] > sign * wave[i - 1] && sign * wave[i] > sign * wave[i + 1]) {
            local.push_back(i);
        }
    }
    // Most extreme first; equal heights by position, so the result does not depend on the sort.
    std::sort(local.begin(), local.end(), [&](std::size_t a, std::size_t b) {
        if (wave[a] != wave[b]) return sign * wave[a] > sign * wave[b];
        return a < b;
    });
    std::vector<std::int64_t> kept;
    for (const std::size_t i : local) {
        if (static_cast<std::int64_t>(kept.size()) == keep) break;
        const auto m = static_cast<std::int64_t>(i) + 1;
        const bool apart = std::all_of(kept.begin(), kept.end(),
                                       [&](std::int64_t k) { return std::abs(k - m) >= min_gap; });
        if (apart) kept.push_back(m);
    }
    std::sort(kept.begin(), kept.end());
    return kept;
}

// Sum over `points` of the distance to the nearest of `targets` (sorted); 0 when either is empty.
double nearest_distance_sum(const std::vector<std::int64_t>& points,
                            const std::vector<std::int64_t>& targets) {
    if (targets.empty()) return 0;
    double sum = 0;
    for (const std::int64_t p : points) {
        const auto above = std::lower_bound(targets.begin(), targets.end(), p);
        std::int64_t best = std::numeric_limits<std::int64_t>::max();
        if (above != targets.end()) best = *above - p;
        if (above != targets.begin()) best = std::min(best, p - *(above - 1));
        sum += static_cast<double>(best);
    }
    return sum;
}

}  // namespace

WaveformExtrema waveform_extrema(const std::vector<double>& wave, std::int64_t keep,
                                 std::int64_t min_gap, std::int64_t first) {
    return {extreme_points(wave, 1.0, keep, min_gap, first),
            extreme_points(wave, -1.0, keep, min_gap, first)};
}

std::vector<Choice> complementary_selection(const std::vector<Candidate>& candidates,
                                            std::int64_t n) {
    std::vector<Choice> chosen;
    if (candidates.empty() || n < 1) return chosen;
    std::vector<bool> taken(candidates.size(), false);
    std::vector<std::int64_t> peaks, valleys;  // of the chosen bases, sorted
    auto take = [&](std::size_t c, double distance) {
        taken[c] = true;
        chosen.push_back({c, distance});
        const WaveformExtrema& e = candidates[c].extrema;
        peaks.insert(peaks.end(), e.peaks.begin(), e.peaks.end());
        valleys.insert(valleys.end(), e.valleys.begin(), e.valleys.end());
        std::sort(peaks.begin(), peaks.end());
        std::sort(valleys.begin(), valleys.end());
    };
    take(0, 0.0);
    while (static_cast<std::int64_t>(chosen.size()) < n) {
        std::size_t best = candidates.size();
        double best_distance = std::numeric_limits<double>::infinity();
        for (std::size_t c = 0; c < candidates.size(); ++c) {
            if (taken[c]) continue;
            const WaveformExtrema& e = candidates[c].extrema;
            const double distance =
                nearest_distance_sum(e.peaks, valleys) + nearest_distance_sum(e.valleys, peaks);
            const bool better =
                best == candidates.size() || distance < best_distance ||
                (distance == best_distance && candidates[c].base < candidates[best].base);
            if (better) {
                best = c;
                best_distance = distance;
            }
        }
        if (best == candidates.size()) break;  // every candidate taken
        take(best, best_distance);
    }
    return chosen;
}

SearchResult search_bases(const BaseSearch& search) {
    auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
    if (search.heads < 1) fail("heads: at least 1");
    if (!(search.b_min >= 1) || !(search.b_max > search.b_min)) {
        fail("b_min, b_max: need 1 <= b_min < b_max");
    }
    if (!(search.stride > 0)) fail("stride: must be > 0");
    if (search.head_dim < 2 || search.head_dim % 2 != 0) fail("head_dim: an even number >= 2");
    if (search.window < 3) fail("window: at least 3 distances");
    if (search.extrema < 1) fail("extrema: at least 1");
    const std::int64_t start = search.window_start > 0 ? search.window_start : search.window / 4;
    if (start >= search.window - 1) fail("window_start: must be below window - 1");
    const auto steps =
        static_cast<std::int64_t>(std::floor((search.b_max - search.b_min) / search.stride + 1e-9));
    if (steps + 1 < search.heads) {
        fail("stride: (b_max - b_min) / stride gives " + std::to_string(steps) +
             " candidates besides b_min, fewer than the " + std::to_string(search.heads - 1) +
             " more bases needed");
    }
    SearchResult result;
    result.candidates.resize(static_cast<std::size_t>(steps + 1));
    for (std::int64_t i = 0; i <= steps; ++i) {
        result.candidates[i].base = search.b_min + static_cast<double>(i) * search.stride;
    }
    // The waveforms dominate the cost (candidates x window x head_dim / 2 cosines): one thread per
    // core, each its own candidates.
    const std::size_t workers =
        std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, result.candidates.size());
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < workers; ++w) {
        threads.emplace_back([&, w] {
            for (std::size_t c = w; c < result.candidates.size(); c += workers) {
                result.candidates[c].extrema = waveform_extrema(
                    attention_waveform(result.candidates[c].base, search.head_dim, search.window),
                    search.extrema, search.min_gap, start);
            }
        });
    }
    for (std::thread& t : threads) t.join();
    result.choices = complementary_selection(result.candidates, search.heads);
    for (const Choice& choice : result.choices) {
        result.bases.push_back(result.candidates[choice.candidate].base);
    }
    std::sort(result.bases.begin(), result.bases.end());
    return result;
}

}  // namespace moelab::plugins::harpe
