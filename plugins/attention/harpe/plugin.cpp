// Registers the `harpe` attention (HARPE, methods.md §5): sdk::RotaryAttention with one RoPE base
// per key/value head, from Table 2's preset, a uniform spread, the paper's peak/valley search
// (Note [HARPE base search]) or an explicit list.

#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "base_sets.h"
#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rotary_attention.h"

namespace moelab::plugins::harpe {
namespace {

BaseSearch search_options(const sdk::ModelShape& model, const sdk::Params& params) {
    BaseSearch search;
    search.heads = model.kv_heads;
    search.b_min = params.get_float("b_min");
    search.b_max = params.get_float("b_max");
    search.stride = params.get_float("stride");
    search.head_dim = model.head_dim;
    search.window = params.get_int("window");
    search.window_start = params.get_int("window_start");
    search.extrema = params.get_int("extrema");
    search.min_gap = params.get_int("min_gap");
    return search;
}

// The search runs once per setting, not once per layer (every layer has the same set).
std::vector<double> searched_bases(const BaseSearch& search) {
    using Key = std::tuple<std::int64_t, double, double, double, std::int64_t, std::int64_t,
                           std::int64_t, std::int64_t, std::int64_t>;
    static std::mutex mutex;
    static std::map<Key, std::vector<double>> done;
    const Key key{search.heads,        search.b_min,    search.b_max,
                  search.stride,       search.head_dim, search.window,
                  search.window_start, search.extrema,  search.min_gap};
    std::lock_guard<std::mutex> lock(mutex);
    auto it = done.find(key);
    if (it == done.end()) it = done.emplace(key, search_bases(search).bases).first;
    return it->second;
}

// One base per key/value head, as the options say; std::invalid_argument when they cannot give
// that many.
std::vector<double> bases_for(const sdk::ModelShape& model, const sdk::Params& params) {
    const std::string& kind = params.get_string("bases");
    const std::int64_t n = model.kv_heads;
    if (kind == "harpe-32") {
        if (n != 32) {
            throw std::invalid_argument(
                "bases = \"harpe-32\" is the paper's set for 32 heads; this model has " +
                std::to_string(n) +
                " key/value heads (use bases = \"search\", \"uniform\" or \"list\")");
        }
        return harpe32_bases();
    }
    if (kind == "uniform") {
        if (params.get_float("b_max") < params.get_float("b_min")) {
            throw std::invalid_argument("b_max must be at least b_min");
        }
        return uniform_bases(n, params.get_float("b_min"), params.get_float("b_max"),
                             params.get_string("order") == "descending");
    }
    if (kind == "list") {
        const std::vector<double>& list = params.get_float_list("list");
        if (static_cast<std::int64_t>(list.size()) != n) {
            throw std::invalid_argument("list has " + std::to_string(list.size()) +
                                        " bases; this model has " + std::to_string(n) +
                                        " key/value heads, one base each");
        }
        for (const double base : list) {
            if (!(base >= 1)) {
                throw std::invalid_argument("list: every base must be >= 1, got " +
                                            std::to_string(base));
            }
        }
        return list;
    }
    return searched_bases(search_options(model, params));
}

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    if (sdk::Support fits = sdk::rotary_attention_fits(query); !fits.ok) return fits;
    sdk::ModelShape model = query.model;
    if (model.kv_heads == 0) model.kv_heads = model.heads;
    try {
        if (params.get_string("bases") == "search") {
            // The options only, not the search itself (seconds): b_min and the candidates above
            // it must give one base per key/value head.
            const double b_min = params.get_float("b_min"), b_max = params.get_float("b_max");
            const double above = std::floor((b_max - b_min) / params.get_float("stride") + 1e-9);
            if (!(b_max > b_min) || above + 1 < static_cast<double>(model.kv_heads)) {
                return sdk::Support::no(
                    "the search needs b_min < b_max and a candidate base for every key/value "
                    "head: b_min and (b_max - b_min) / stride = " +
                    std::to_string(static_cast<std::int64_t>(above)) + " more for " +
                    std::to_string(model.kv_heads) + " heads");
            }
        } else {
            bases_for(model, params);
        }
    } catch (const std::invalid_argument& error) {
        return sdk::Support::no(error.what());
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::AttentionComponent component;
    component.name = "harpe";
    component.summary =
        "Causal attention with a RoPE base per head (HARPE), same set in every layer, optional GQA";
    component.params.add_choice(
        "bases", "search", {"search", "harpe-32", "uniform", "list"},
        "search: the paper's peak/valley complementarity search (Note [HARPE base search]); "
        "harpe-32: the paper's Table 2 (32 key/value heads); uniform: evenly from b_min to b_max; "
        "list: the bases in `list`. One base per key/value head, ascending by head unless "
        "order = \"descending\" (uniform)");
    component.params.add_float("b_min", 1e6, "Smallest base (search, uniform)").at_least(1.0);
    component.params.add_float("b_max", 5e6, "Largest base (search, uniform)").at_least(1.0);
    component.params.add_float("stride", 3e4, "Distance between candidate bases (search)")
        .at_least(1.0);
    component.params.add_choice("order", "ascending", {"ascending", "descending"},
                                "Head order of a uniform set");
    // Interpretation: the paper names no window; its target context. Not data.seq_len: the bases
    // are not saved, and a run continued at a longer length must keep the ones it trained with.
    component.params
        .add_int("window", 131072,
                 "Largest relative distance whose waveform the search compares (search; the "
                 "paper's 128k target context)")
        .at_least(3);
    component.params
        .add_int("window_start", 0,
                 "Smallest distance whose extrema the search counts (search); 0: window / 4")
        .at_least(0);
    component.params
        .add_int("extrema", 6,
                 "Peaks and valleys kept per base's waveform (search; Attention Buckets keeps 6)")
        .at_least(1);
    component.params.add_int("min_gap", 50, "Least distance between kept extrema (search)")
        .at_least(1);
    component.params.add_float_list("list", {}, "Bases, one per key/value head (bases = \"list\")");
    component.supports = supports;
    component.features = {std::string(sdk::feature::kKvCache)};
    component.make_attention = [](const sdk::AttentionContext& context, const sdk::Params& params) {
        std::vector<at::Tensor> rows;
        for (const double base : bases_for(context.model, params)) {
            rows.push_back(sdk::rope_inv_freq(base, context.model.head_dim));
        }
        return std::make_shared<sdk::RotaryAttention>(context, at::stack(rows));
    };
    registrar.add_attention(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::harpe

MOELAB_PLUGIN("harpe", "1.0.0", "Rotary attention with a RoPE base per head (HARPE)",
              moelab::plugins::harpe::register_components)
