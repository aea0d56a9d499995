// The built-in rope and harpe attentions against the method written out with loops in float64:
// per-head projections, "rotate half" rotary embeddings at each token's own position (rows at
// different offsets, one padding slot) with each key/value head's own base (harpe) and
// interpolated positions (pi), grouped-query heads, causal softmax by position, output projection.

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/conformance/conformance_report.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/key_value_cache.h"
#include "support/attention_call.h"

namespace moelab::tests {
namespace {

constexpr std::int64_t kModel = 16, kHeads = 4, kKvHeads = 2, kHeadDim = 4, kBatch = 2, kSeq = 5;
constexpr double kBase = 500.0;

struct Rope {
    core::PluginRegistry registry;
    std::shared_ptr<sdk::Attention> attention;
};

// The test's model shape.
sdk::ModelShape model_shape() {
    sdk::ModelShape model;
    model.d_model = kModel;
    model.heads = kHeads;
    model.kv_heads = kKvHeads;
    model.head_dim = kHeadDim;
    model.layers = 2;
    model.max_seq_len = 64;
    return model;
}

// The built-in `name` attention on the test's shape, with `options` over its defaults.
std::unique_ptr<Rope> build_attention(const std::string& name,
                                      const std::map<std::string, sdk::ParamValue>& options) {
    auto rope = std::make_unique<Rope>();
    rope->registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const core::RegisteredAttention* component = rope->registry.find_attention(name);
    if (component == nullptr) throw std::runtime_error("no built-in " + name + " attention");
    sdk::AttentionContext context;
    context.model = model_shape();
    context.seed = 17;
    context.init_std = 0.3;
    auto values = core::default_params(component->component.params).values();
    for (const auto& [key, value] : options) values[key] = value;
    rope->attention = core::instantiate_attention(*component, context, sdk::Params(values));
    rope->attention->eval();
    return rope;
}

std::unique_ptr<Rope> build_rope() { return build_attention("rope", {{"base", kBase}}); }

// out[b][s] for hidden (batch, seq, d_model) at `positions` (batch, seq), negative = padding. Key
// /value head g and its query heads rotate with bases[g] (one base: every head), at position
// p / scale.
at::Tensor written_out(sdk::Attention& attention, const at::Tensor& hidden,
                       const at::Tensor& positions, std::vector<double> bases = {kBase},
                       double scale = 1.0) {
    if (bases.size() == 1) bases.assign(kKvHeads, bases[0]);
    auto weights = attention.named_parameters();
    const auto wq = weights["w_query"].to(at::kDouble);
    const auto wk = weights["w_key"].to(at::kDouble);
    const auto wv = weights["w_value"].to(at::kDouble);
    const auto wo = weights["w_output"].to(at::kDouble);
    const auto x = hidden.to(at::kDouble);
    const std::int64_t half = kHeadDim / 2;
    auto rotate = [&](const at::Tensor& v, std::int64_t position, double base) {
        at::Tensor out = v.clone();
        const double p = static_cast<double>(std::max<std::int64_t>(position, 0)) / scale;
        for (std::int64_t i = 0; i < half; ++i) {
            const double angle = p * std::pow(base, -2.0 * static_cast<double>(i) / kHeadDim);
            const double a = v[i].item<double>(), b = v[i + half].item<double>();
            out[i] = a * std::cos(angle) - b * std::sin(angle);
            out[i + half] = b * std::cos(angle) + a * std::sin(angle);
        }
        return out;
    };
    at::Tensor out = at::zeros({kBatch, kSeq, kModel}, at::kDouble);
    for (std::int64_t b = 0; b < kBatch; ++b) {
        for (std::int64_t s = 0; s < kSeq; ++s) {
            const std::int64_t query_position = positions[b][s].item<std::int64_t>();
            std::vector<at::Tensor> heads;
            for (std::int64_t h = 0; h < kHeads; ++h) {
                const std::int64_t g = h / (kHeads / kKvHeads);  // key/value head of this head
                const at::Tensor q = rotate(at::mv(wq.narrow(0, h * kHeadDim, kHeadDim), x[b][s]),
                                            query_position, bases[g]);
                std::vector<double> scores;
                std::vector<at::Tensor> values;
                for (std::int64_t t = 0; t < kSeq; ++t) {
                    const std::int64_t key_position = positions[b][t].item<std::int64_t>();
                    if (key_position < 0 || key_position > query_position) continue;
                    const at::Tensor k =
                        rotate(at::mv(wk.narrow(0, g * kHeadDim, kHeadDim), x[b][t]), key_position,
                               bases[g]);
                    scores.push_back(at::dot(q, k).item<double>() / std::sqrt(double(kHeadDim)));
                    values.push_back(at::mv(wv.narrow(0, g * kHeadDim, kHeadDim), x[b][t]));
                }
                at::Tensor mixed = at::zeros({kHeadDim}, at::kDouble);
                double total = 0, top = -1e300;
                for (double score : scores) top = std::max(top, score);
                for (double score : scores) total += std::exp(score - top);
                for (std::size_t j = 0; j < scores.size(); ++j) {
                    mixed += values[j] * (std::exp(scores[j] - top) / total);
                }
                heads.push_back(mixed);
            }
            out[b][s] = at::mv(wo, at::cat(heads));
        }
    }
    return out;
}

at::Tensor forward(sdk::Attention& attention, const at::Tensor& hidden, const at::Tensor& positions,
                   sdk::AttentionCache* cache = nullptr) {
    sdk::ForwardState state;  // a pass of this layer alone
    return attend(attention, hidden, positions, state, cache);
}

at::Tensor hidden_states() {
    at::Generator generator = sdk::make_generator(5);
    return at::randn({kBatch, kSeq, kModel}, generator, at::kFloat);
}

TEST(RopeAttention, MatchesTheWrittenOutMethodAtOffsetPositions) {
    auto rope = build_rope();
    torch::NoGradGuard no_grad;
    const at::Tensor x = hidden_states();
    // Row 0 starts at position 10, row 1 at 3: rotary angles differ per row.
    const at::Tensor positions =
        at::stack({at::arange(10, 10 + kSeq, at::kLong), at::arange(3, 3 + kSeq, at::kLong)});
    const at::Tensor expected = written_out(*rope->attention, x, positions);
    const at::Tensor got = forward(*rope->attention, x, positions).to(at::kDouble);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
    // Relative positions are what count: shifting a row by a constant leaves it unchanged.
    const at::Tensor shifted = forward(*rope->attention, x, positions + 100).to(at::kDouble);
    EXPECT_LT((shifted - expected).abs().max().item<double>(), 1e-4);
}

TEST(RopeAttention, PaddingSlotsAreNeverAttendedTo) {
    auto rope = build_rope();
    torch::NoGradGuard no_grad;
    at::Tensor x = hidden_states();
    // Row 1 has two padding slots before its three tokens.
    const at::Tensor positions =
        at::tensor({0, 1, 2, 3, 4, -1, -1, 0, 1, 2}, at::kLong).view({kBatch, kSeq});
    const at::Tensor expected = written_out(*rope->attention, x, positions);
    const at::Tensor got = forward(*rope->attention, x, positions).to(at::kDouble);
    // Padding slots' outputs are meaningless (and finite); the others match.
    EXPECT_TRUE(got.isfinite().all().item<bool>());
    EXPECT_LT((got.narrow(1, 2, 3) - expected.narrow(1, 2, 3)).abs().max().item<double>(), 1e-5);
    EXPECT_LT((got[0] - expected[0]).abs().max().item<double>(), 1e-5);
    // Whatever the padding slots hold does not reach the real tokens.
    x[1].narrow(0, 0, 2).fill_(1e4);
    const at::Tensor changed = forward(*rope->attention, x, positions).to(at::kDouble);
    EXPECT_LT((changed[1].narrow(0, 2, 3) - got[1].narrow(0, 2, 3)).abs().max().item<double>(),
              1e-6);
}

TEST(RopeAttention, CachesKeysValuesAndPositionsInPreallocatedSlots) {
    auto rope = build_rope();
    torch::NoGradGuard no_grad;
    const at::Tensor x = hidden_states();
    const at::Tensor positions = at::arange(kSeq, at::kLong).expand({kBatch, kSeq});
    auto cache = rope->attention->make_cache(kBatch, kSeq);
    auto* slots = dynamic_cast<sdk::KeyValueCache*>(cache.get());
    ASSERT_NE(slots, nullptr);
    EXPECT_EQ(slots->capacity(), kSeq);
    EXPECT_EQ(cache->bytes_per_token(), -1);  // the dtype is the first append's
    const at::Tensor first =
        forward(*rope->attention, x.narrow(1, 0, 3), positions.narrow(1, 0, 3), cache.get());
    EXPECT_EQ(cache->bytes_per_token(), (2 * kKvHeads * kHeadDim * 4) + 8);
    const at::Tensor rest =
        forward(*rope->attention, x.narrow(1, 3, 2), positions.narrow(1, 3, 2), cache.get());
    EXPECT_EQ(cache->length(), kSeq);
    const at::Tensor full = forward(*rope->attention, x, positions);
    EXPECT_LT((at::cat({first, rest}, 1) - full).abs().max().item<double>(), 1e-5);
    EXPECT_THROW(
        forward(*rope->attention, x.narrow(1, 0, 1), positions.narrow(1, 0, 1), cache.get()),
        sdk::Error);
}

TEST(RopeAttention, ReportsItsCostPerToken) {
    auto rope = build_rope();
    // Projections: 2 d (2 heads hd + 2 kv hd); attention: 4 heads hd per key.
    const double projections = 2.0 * kModel * (2.0 * kHeads * kHeadDim + 2.0 * kKvHeads * kHeadDim);
    EXPECT_DOUBLE_EQ(rope->attention->cost(100).flops_per_token,
                     projections + 4.0 * kHeads * kHeadDim * 100);
}

// Position interpolation: position p rotates as p / scale.
TEST(PiAttention, RotatesAtInterpolatedPositions) {
    auto pi = build_attention("pi", {{"base", kBase}, {"scale", 4.0}});
    torch::NoGradGuard no_grad;
    const at::Tensor x = hidden_states();
    const at::Tensor positions =
        at::stack({at::arange(10, 10 + kSeq, at::kLong), at::arange(3, 3 + kSeq, at::kLong)});
    const at::Tensor expected = written_out(*pi->attention, x, positions, {kBase}, 4.0);
    const at::Tensor got = forward(*pi->attention, x, positions).to(at::kDouble);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
    const at::Tensor plain = written_out(*pi->attention, x, positions);
    EXPECT_GT((got - plain).abs().max().item<double>(), 1e-3) << "the scale changes the rotation";
}

// HARPE: key/value head g and its group of query heads rotate with their own base.
TEST(HarpeAttention, EachKeyValueHeadRotatesWithItsOwnBase) {
    const std::vector<double> bases = {kBase, 37.0};
    auto harpe = build_attention("harpe", {{"bases", std::string("list")}, {"list", bases}});
    torch::NoGradGuard no_grad;
    const at::Tensor x = hidden_states();
    const at::Tensor positions =
        at::stack({at::arange(10, 10 + kSeq, at::kLong), at::arange(3, 3 + kSeq, at::kLong)});
    const at::Tensor expected = written_out(*harpe->attention, x, positions, bases);
    const at::Tensor got = forward(*harpe->attention, x, positions).to(at::kDouble);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
    const at::Tensor one_base = written_out(*harpe->attention, x, positions, {kBase});
    EXPECT_GT((got - one_base).abs().max().item<double>(), 1e-3) << "head 1's base counts";
}

// The float32 CPU path (fused rotary, one query/key/value product, the mask and scale inside the
// score product) against the same attention in float64, where the rotation is the composed
// apply_rope: outputs and the gradients of the input and of every weight, with each key/value
// head's own base and a padding slot.
TEST(HarpeAttention, TheFusedFloatPathHasTheGradientsOfTheComposedOne) {
    const std::vector<double> bases = {kBase, 37.0};
    auto fused = build_attention("harpe", {{"bases", std::string("list")}, {"list", bases}});
    auto composed = build_attention("harpe", {{"bases", std::string("list")}, {"list", bases}});
    composed->attention->to(at::kDouble);
    at::Tensor positions =
        at::stack({at::arange(10, 10 + kSeq, at::kLong), at::arange(3, 3 + kSeq, at::kLong)});
    positions[1][0] = -1;  // a padding slot
    const at::Tensor x = hidden_states().requires_grad_(true);
    const at::Tensor x64 = x.detach().to(at::kDouble).requires_grad_(true);
    const at::Tensor out = forward(*fused->attention, x, positions);
    const at::Tensor out64 = forward(*composed->attention, x64, positions);
    EXPECT_LT((out.to(at::kDouble) - out64).abs().max().item<double>(), 1e-5);
    const at::Tensor upstream = at::randn(out.sizes(), sdk::make_generator(3), at::kDouble);
    (out.to(at::kDouble) * upstream).sum().backward();
    (out64 * upstream).sum().backward();
    auto relative = [](const at::Tensor& got, const at::Tensor& want) {
        return ((got.to(at::kDouble) - want).abs().max() / want.abs().max()).item<double>();
    };
    EXPECT_LT(relative(x.grad(), x64.grad()), 1e-5);
    auto weights64 = composed->attention->named_parameters();
    for (const auto& weight : fused->attention->named_parameters()) {
        EXPECT_LT(relative(weight.value().grad(), weights64[weight.key()].grad()), 1e-5)
            << weight.key();
    }
}

// With every base equal, HARPE is RoPE: the same weights (same seed) and the same outputs, bit
// for bit, with and without a cache.
TEST(HarpeAttention, EqualBasesAreRopeExactly) {
    auto harpe = build_attention(
        "harpe", {{"bases", std::string("list")}, {"list", std::vector<double>{kBase, kBase}}});
    auto rope = build_rope();
    torch::NoGradGuard no_grad;
    const at::Tensor x = hidden_states();
    const at::Tensor positions =
        at::tensor({0, 1, 2, 3, 4, -1, -1, 0, 1, 2}, at::kLong).view({kBatch, kSeq});
    EXPECT_TRUE(at::equal(forward(*harpe->attention, x, positions),
                          forward(*rope->attention, x, positions)));
    auto harpe_cache = harpe->attention->make_cache(kBatch, kSeq);
    auto rope_cache = rope->attention->make_cache(kBatch, kSeq);
    EXPECT_TRUE(at::equal(forward(*harpe->attention, x, positions, harpe_cache.get()),
                          forward(*rope->attention, x, positions, rope_cache.get())));
}

// The options that cannot give one base per key/value head are refused before any model exists.
TEST(HarpeAttention, RefusesBaseSetsThatDoNotFitTheHeads) {
    const core::PluginRegistry registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const core::RegisteredAttention* harpe = registry.find_attention("harpe");
    ASSERT_NE(harpe, nullptr);
    sdk::CapabilityQuery query;
    query.model = model_shape();
    auto support = [&](const std::map<std::string, sdk::ParamValue>& options) {
        auto values = core::default_params(harpe->component.params).values();
        for (const auto& [key, value] : options) values[key] = value;
        return harpe->component.supports(query, sdk::Params(values));
    };
    EXPECT_TRUE(support({}).ok) << "the search picks 2 of its 134 candidates";
    const sdk::Support preset = support({{"bases", std::string("harpe-32")}});
    EXPECT_FALSE(preset.ok);
    EXPECT_NE(preset.reason.find("32 heads; this model has 2 key/value heads"), std::string::npos)
        << preset.reason;
    const sdk::Support list =
        support({{"bases", std::string("list")}, {"list", std::vector<double>{1e4, 2e4, 3e4}}});
    EXPECT_NE(list.reason.find("list has 3 bases; this model has 2 key/value heads"),
              std::string::npos)
        << list.reason;
    // 1e6 .. 1.02e6 every 3e4 holds b_min alone: no second base.
    const sdk::Support search = support({{"b_min", 1e6}, {"b_max", 1.02e6}});
    EXPECT_FALSE(search.ok);
    EXPECT_NE(search.reason.find("a candidate base for every key/value head"), std::string::npos)
        << search.reason;
}

}  // namespace
}  // namespace moelab::tests
