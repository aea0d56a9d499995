// moelab harpe-bases: the HARPE peak/valley base search (Note [HARPE base search]) as an offline
// tool, with the searched set against the paper's Table 2 when it has Table 2's 32 heads.

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base_sets.h"
#include "cli_support.h"
#include "commands.h"

namespace moelab::cli {

namespace {

std::int64_t start_of(const plugins::harpe::BaseSearch& s) {
    return s.window_start > 0 ? s.window_start : s.window / 4;
}

}  // namespace

int harpe_bases(const HarpeBasesArgs& args) {
    namespace harpe = plugins::harpe;
    harpe::BaseSearch s;
    s.heads = args.heads;
    s.b_min = args.b_min;
    s.b_max = args.b_max;
    s.stride = args.stride;
    s.head_dim = args.head_dim;
    s.window = args.window;
    s.window_start = args.window_start;
    s.extrema = args.extrema;
    s.min_gap = args.min_gap;
    const auto start = std::chrono::steady_clock::now();
    harpe::SearchResult result;
    try {
        result = harpe::search_bases(s);
    } catch (const std::invalid_argument& error) {
        throw UsageError(error.what());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    // Against Table 2 (heads in ascending order of base, as the paper lists them).
    nlohmann::json table2 = nullptr;
    const std::vector<double>& paper = harpe::harpe32_bases();
    if (result.bases.size() == paper.size()) {
        int within = 0;
        double worst = 0;
        std::size_t worst_head = 0;
        for (std::size_t h = 0; h < paper.size(); ++h) {
            const double deviation = std::abs(result.bases[h] - paper[h]) / paper[h];
            if (deviation <= 0.01) ++within;
            if (deviation > worst) {
                worst = deviation;
                worst_head = h;
            }
        }
        const bool paper_settings =
            s.b_min == 1e6 && s.b_max == 5e6 && s.stride == 3e4 && s.head_dim == 128;
        // The same set in another order of heads would still be the paper's: how many of its
        // bases the search chose at all (the same candidate, within half a stride).
        int shared = 0;
        for (const double base : paper) {
            shared += std::any_of(result.bases.begin(), result.bases.end(),
                                  [&](double b) { return std::abs(b - base) < s.stride / 2; })
                          ? 1
                          : 0;
        }
        table2 = {{"paper_settings", paper_settings},
                  {"heads_within_1_percent", within},
                  {"paper_bases_chosen", shared},
                  {"largest_deviation", worst},
                  {"largest_deviation_head", worst_head + 1},
                  {"paper_base", paper[worst_head]},
                  {"searched_base", result.bases[worst_head]}};
    }
    const std::size_t candidates = result.candidates.size();
    if (args.json) {
        nlohmann::json choices = nlohmann::json::array();
        for (const harpe::Choice& choice : result.choices) {
            const harpe::Candidate& c = result.candidates[choice.candidate];
            choices.push_back({{"base", c.base},
                               {"distance", choice.distance},
                               {"peaks", c.extrema.peaks},
                               {"valleys", c.extrema.valleys}});
        }
        fmt::print("{}\n", nlohmann::json{{"heads", s.heads},
                                          {"b_min", s.b_min},
                                          {"b_max", s.b_max},
                                          {"stride", s.stride},
                                          {"head_dim", s.head_dim},
                                          {"window", s.window},
                                          {"window_start", start_of(s)},
                                          {"extrema", s.extrema},
                                          {"min_gap", s.min_gap},
                                          {"candidates", candidates},
                                          {"bases", result.bases},
                                          {"choices", choices},
                                          {"table2", table2},
                                          {"seconds", seconds}}
                               .dump(2));
        return kExitOk;
    }
    fmt::print(
        "HARPE base search: {} heads from {} candidate bases ({:g} .. {:g} every {:g}), head_dim "
        "{}, the {} highest peaks and lowest valleys at least {} apart at distances {}..{}\n",
        s.heads, candidates, s.b_min, s.b_min + static_cast<double>(candidates - 1) * s.stride,
        s.stride, s.head_dim, s.extrema, s.min_gap, start_of(s), s.window);
    fmt::print("{:>4}  {:>12}  {:>7}  {:>12}\n", "head", "base", "chosen", "distance");
    for (std::size_t h = 0; h < result.bases.size(); ++h) {
        // The round in which this base was chosen, and its score then.
        std::size_t round = 0;
        double distance = 0;
        for (std::size_t r = 0; r < result.choices.size(); ++r) {
            if (result.candidates[result.choices[r].candidate].base == result.bases[h]) {
                round = r + 1;
                distance = result.choices[r].distance;
            }
        }
        fmt::print("{:>4}  {:>12.0f}  {:>7}  {:>12.0f}\n", h + 1, result.bases[h], round, distance);
    }
    fmt::print("searched in {:.1f} s\n", seconds);
    if (!table2.is_null()) {
        fmt::print(
            "against Table 2{}: {} of 32 heads within 1%, largest deviation {:.1f}% (head {}: "
            "{:.0f} searched, {:.0f} in the paper); {} of the paper's 32 bases chosen\n",
            table2["paper_settings"].get<bool>() ? " (the paper's settings)"
                                                 : " (other settings than the paper's)",
            table2["heads_within_1_percent"].get<int>(),
            100 * table2["largest_deviation"].get<double>(),
            table2["largest_deviation_head"].get<std::size_t>(),
            table2["searched_base"].get<double>(), table2["paper_base"].get<double>(),
            table2["paper_bases_chosen"].get<int>());
    }
    return kExitOk;
}

}  // namespace moelab::cli
