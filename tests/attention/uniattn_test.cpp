// The built-in uniattn attention (methods.md §6) against its definition: the SuperBlock layout of
// the authors' code; layers without reuse are rope bit for bit; a reuse layer attends with the
// anchor's probabilities and its own values plus W_c x, written out with loops in float64; it
// owns no query or key weights; its value-only cache gives the logits of recomputation; its cost;
// and the least-squares calibration of W_c recovering a known linear map.

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/conformance/conformance_report.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "moelab/sdk/calibration.h"
#include "moelab/sdk/init.h"
#include "superblock_layout.h"
#include "support/attention_call.h"

namespace moelab::tests {
namespace {

constexpr std::int64_t kModel = 16, kHeads = 4, kKvHeads = 2, kHeadDim = 4, kBatch = 2, kSeq = 6;
constexpr double kBase = 500.0;
constexpr char kProbabilitiesKey[] = "uniattn/probabilities";

using plugins::uniattn::superblock_layout;

sdk::ModelShape model_shape(std::int64_t layers) {
    sdk::ModelShape model;
    model.d_model = kModel;
    model.heads = kHeads;
    model.kv_heads = kKvHeads;
    model.head_dim = kHeadDim;
    model.layers = layers;
    model.max_seq_len = 64;
    return model;
}

class UniAttn : public ::testing::Test {
  protected:
    UniAttn() : registry_(core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR})) {}

    // Layer `layer` of a `layers`-layer model of component `name` with `options` over its
    // defaults; every layer with the same seed, so that equal weights mean equal draws.
    std::shared_ptr<sdk::Attention> layer(const std::string& name, std::int64_t layer,
                                          std::int64_t layers,
                                          const std::map<std::string, sdk::ParamValue>& options) {
        const core::RegisteredAttention* component = registry_.find_attention(name);
        if (component == nullptr) throw std::runtime_error("no built-in " + name);
        sdk::AttentionContext context;
        context.model = model_shape(layers);
        context.layer_index = static_cast<int>(layer);
        context.seed = 17;
        context.init_std = 0.3;
        auto values = core::default_params(component->component.params).values();
        values["base"] = kBase;
        for (const auto& [key, value] : options) values[key] = value;
        auto attention = core::instantiate_attention(*component, context, sdk::Params(values));
        attention->eval();
        return attention;
    }

    // A two-layer SuperBlock: layer 0 the anchor, layer 1 its reuse layer.
    std::shared_ptr<sdk::Attention> superblock_layer(std::int64_t index) {
        return layer("uniattn", index, 2,
                     {{"group_size", std::int64_t{2}}, {"begin", std::int64_t{0}}});
    }

    static at::Tensor hidden(std::uint64_t seed) {
        at::Generator generator = sdk::make_generator(seed);
        return at::randn({kBatch, kSeq, kModel}, generator, at::kFloat);
    }
    static at::Tensor positions() { return at::arange(kSeq, at::kLong).unsqueeze(0); }

    core::PluginRegistry registry_;
};

TEST(SuperblockLayout, IsTheAuthorsForLlama31With32Layers) {
    // G = 4, begin = 16, end = 33 (their scripts): anchors 0..16, 20, 24, 28; reuse 17-19, 21-23,
    // 25-27, 29-31.
    const auto layout = superblock_layout(32, 4, 16, 33);
    std::set<std::int64_t> reuse;
    for (std::int64_t l = 0; l < 32; ++l) {
        if (layout.reuses(l)) reuse.insert(l);
    }
    EXPECT_EQ(reuse, (std::set<std::int64_t>{17, 18, 19, 21, 22, 23, 25, 26, 27, 29, 30, 31}));
    EXPECT_EQ(layout.reuse_layers(), 12);
    EXPECT_TRUE(layout.hands_over(16));
    EXPECT_TRUE(layout.hands_over(28));
    EXPECT_FALSE(layout.hands_over(15));
    EXPECT_FALSE(layout.hands_over(17));
    // The defaults: the upper half of 8 layers in SuperBlocks of 4.
    const auto defaults = superblock_layout(8, 4, -1, -1);
    EXPECT_EQ(defaults.begin, 4);
    EXPECT_EQ(defaults.end, 8);
    EXPECT_EQ(defaults.reuse_layers(), 3);
}

TEST_F(UniAttn, WithoutReuseLayersEveryLayerIsRopeBitForBit) {
    const at::Tensor x = hidden(5);
    for (std::int64_t l = 0; l < 4; ++l) {
        auto uni = layer("uniattn", l, 4, {{"begin", std::int64_t{4}}});
        auto rope = layer("rope", l, 4, {});
        sdk::ForwardState a, b;
        EXPECT_TRUE(at::equal(attend(*uni, x, positions(), a), attend(*rope, x, positions(), b)))
            << "layer " << l;
        EXPECT_FALSE(a.contains(kProbabilitiesKey)) << "nothing to hand over";
    }
}

TEST_F(UniAttn, AnAnchorIsRopeAndLeavesItsCausalSoftmax) {
    auto anchor = superblock_layer(0);
    auto rope = layer("rope", 0, 2, {});
    const at::Tensor x = hidden(6);
    sdk::ForwardState state, rope_state;
    EXPECT_TRUE(at::equal(attend(*anchor, x, positions(), state),
                          attend(*rope, x, positions(), rope_state)));
    const at::Tensor p = state.get(kProbabilitiesKey);
    ASSERT_TRUE(p.defined());
    ASSERT_EQ(p.sizes(), (at::IntArrayRef{kBatch * kKvHeads, kHeads / kKvHeads * kSeq, kSeq}));
    const at::Tensor per_head = p.view({kBatch, kHeads, kSeq, kSeq});
    EXPECT_TRUE(at::allclose(per_head.sum(-1), at::ones({kBatch, kHeads, kSeq}), 1e-6, 1e-6));
    EXPECT_EQ(per_head.triu(1).abs().max().item<float>(), 0.0f) << "no query sees a later key";
}

// out[b][s] = W_o concat_h( sum_t P[b,h,s,t] W_v^{g(h)} x[b][t] ) + W_c x[b][s], in float64.
at::Tensor written_out_reuse(sdk::Attention& reuse, const at::Tensor& x, const at::Tensor& p) {
    auto weights = reuse.named_parameters();
    const auto wv = weights["w_value"].to(at::kDouble);
    const auto wo = weights["w_output"].to(at::kDouble);
    const auto wc = weights["w_compensation"].to(at::kDouble);
    const auto probs = p.view({kBatch, kHeads, kSeq, -1}).to(at::kDouble);
    const auto xd = x.to(at::kDouble);
    at::Tensor out = at::zeros({kBatch, kSeq, kModel}, at::kDouble);
    for (std::int64_t b = 0; b < kBatch; ++b) {
        for (std::int64_t s = 0; s < kSeq; ++s) {
            std::vector<at::Tensor> heads;
            for (std::int64_t h = 0; h < kHeads; ++h) {
                const std::int64_t g = h / (kHeads / kKvHeads);
                at::Tensor mixed = at::zeros({kHeadDim}, at::kDouble);
                for (std::int64_t t = 0; t < kSeq; ++t) {
                    mixed += probs[b][h][s][t].item<double>() *
                             at::mv(wv.narrow(0, g * kHeadDim, kHeadDim), xd[b][t]);
                }
                heads.push_back(mixed);
            }
            out[b][s] = at::mv(wo, at::cat(heads)) + at::mv(wc, xd[b][s]);
        }
    }
    return out;
}

TEST_F(UniAttn, AReuseLayerAttendsWithItsAnchorsSoftmaxAndItsOwnValuesPlusTheCompensation) {
    auto anchor = superblock_layer(0);
    auto reuse = superblock_layer(1);
    {
        // A compensation that is not zero, so that the test sees it.
        torch::NoGradGuard no_grad;
        at::Generator generator = sdk::make_generator(3);
        reuse->named_parameters()["w_compensation"].copy_(
            at::randn({kModel, kModel}, generator, at::kFloat) * 0.1);
    }
    sdk::ForwardState state;
    attend(*anchor, hidden(7), positions(), state);
    const at::Tensor p = state.get(kProbabilitiesKey);
    const at::Tensor x = hidden(8);  // the stream has moved on by the reuse layer
    const at::Tensor got = attend(*reuse, x, positions(), state).to(at::kDouble);
    EXPECT_TRUE(at::allclose(got, written_out_reuse(*reuse, x, p), 1e-5, 1e-5));

    sdk::ForwardState empty;
    EXPECT_THROW(attend(*reuse, x, positions(), empty), std::exception)
        << "a reuse layer without an anchor before it";
}

TEST_F(UniAttn, ReuseLayersOwnNoQueryOrKeyWeights) {
    std::set<std::string> names;
    for (const auto& item : superblock_layer(1)->named_parameters()) names.insert(item.key());
    EXPECT_EQ(names, (std::set<std::string>{"w_value", "w_output", "w_compensation"}));
    std::set<std::string> without;
    for (const auto& item :
         layer(
             "uniattn", 1, 2,
             {{"group_size", std::int64_t{2}}, {"begin", std::int64_t{0}}, {"compensation", false}})
             ->named_parameters()) {
        without.insert(item.key());
    }
    EXPECT_EQ(without, (std::set<std::string>{"w_value", "w_output"}));
    std::set<std::string> anchor;
    for (const auto& item : superblock_layer(0)->named_parameters()) anchor.insert(item.key());
    EXPECT_EQ(anchor, (std::set<std::string>{"w_query", "w_key", "w_value", "w_output"}))
        << "rope's names, so that a rope run initialises it";
}

TEST_F(UniAttn, TheValueOnlyCacheGivesTheOutputsOfRecomputation) {
    auto anchor = superblock_layer(0);
    auto reuse = superblock_layer(1);
    const at::Tensor x0 = hidden(9), x1 = hidden(10);
    sdk::ForwardState whole;
    const at::Tensor expected0 = attend(*anchor, x0, positions(), whole);
    const at::Tensor expected1 = attend(*reuse, x1, positions(), whole);

    auto anchor_cache = anchor->make_cache(kBatch, kSeq);
    auto reuse_cache = reuse->make_cache(kBatch, kSeq);
    // A prompt of 3 tokens, then one token at a time.
    std::vector<at::Tensor> got0, got1;
    for (const auto& [first, count] :
         std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 3}, {3, 1}, {4, 1}, {5, 1}}) {
        sdk::ForwardState step;
        const at::Tensor where = at::arange(first, first + count, at::kLong).unsqueeze(0);
        got0.push_back(
            attend(*anchor, x0.narrow(1, first, count), where, step, anchor_cache.get()));
        got1.push_back(attend(*reuse, x1.narrow(1, first, count), where, step, reuse_cache.get()));
    }
    EXPECT_TRUE(at::allclose(at::cat(got0, 1), expected0, 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(at::cat(got1, 1), expected1, 1e-5, 1e-6));
    // float32: the anchor keeps keys and values (2 x kv_heads x head_dim) and a position per
    // token, the reuse layer values only.
    EXPECT_EQ(anchor_cache->bytes_per_token(), 2 * kKvHeads * kHeadDim * 4 + 8);
    EXPECT_EQ(reuse_cache->bytes_per_token(), kKvHeads * kHeadDim * 4);
}

TEST_F(UniAttn, AReuseLayerCostsNoQueryKeyWork) {
    const double d = kModel, q = kHeads * kHeadDim, kv = kKvHeads * kHeadDim, context = 100;
    EXPECT_DOUBLE_EQ(superblock_layer(0)->cost(100).flops_per_token,
                     2 * d * (2 * q + 2 * kv) + 4 * q * context);
    EXPECT_DOUBLE_EQ(superblock_layer(1)->cost(100).flops_per_token,
                     2 * d * (q + kv) + 2 * d * d + 2 * q * context);
}

TEST_F(UniAttn, CrossLayerKeyValueSharingAttendsWithItsOwnQueriesToTheAnchorsKeysAndValues) {
    const std::map<std::string, sdk::ParamValue> options{{"group_size", std::int64_t{2}},
                                                         {"begin", std::int64_t{0}},
                                                         {"share", std::string("key_value")}};
    auto anchor = layer("uniattn", 0, 2, options);
    auto reuse = layer("uniattn", 1, 2, options);
    std::set<std::string> names;
    for (const auto& item : reuse->named_parameters()) names.insert(item.key());
    EXPECT_EQ(names, (std::set<std::string>{"w_query", "w_output"}));
    // Both layers drew the same weights (the same seed here): with the anchor's input the reuse
    // layer computes exactly the anchor's attention.
    const at::Tensor x = hidden(11);
    sdk::ForwardState state;
    const at::Tensor expected = attend(*anchor, x, positions(), state);
    EXPECT_TRUE(at::allclose(attend(*reuse, x, positions(), state), expected, 1e-6, 1e-6));

    // Decoding: the anchor's cache serves both; the reuse layer's holds nothing.
    auto anchor_cache = anchor->make_cache(kBatch, kSeq);
    auto reuse_cache = reuse->make_cache(kBatch, kSeq);
    std::vector<at::Tensor> got;
    for (std::int64_t t = 0; t < kSeq; ++t) {
        sdk::ForwardState step;
        const at::Tensor where = at::full({1, 1}, t, at::kLong);
        attend(*anchor, x.narrow(1, t, 1), where, step, anchor_cache.get());
        got.push_back(attend(*reuse, x.narrow(1, t, 1), where, step, reuse_cache.get()));
    }
    EXPECT_TRUE(at::allclose(at::cat(got, 1), expected, 1e-5, 1e-6));
    EXPECT_EQ(reuse_cache->length(), kSeq);
    EXPECT_EQ(reuse_cache->bytes_per_token(), 0);
    const double d = kModel, q = kHeads * kHeadDim;
    EXPECT_DOUBLE_EQ(reuse->cost(100).flops_per_token, 4 * d * q + 4 * q * 100);
}

// Calibration data whose target is exactly x W^T for a known W: least squares must find W.
sdk::CalibrationData linear_target(const at::Tensor& w, std::int64_t samples, std::int64_t seq) {
    at::Generator generator = sdk::make_generator(21);
    sdk::CalibrationData data;
    data.samples = samples;
    data.seq = seq;
    data.input = at::randn({samples, seq, kModel}, generator, at::kFloat);
    data.target = at::matmul(data.input.to(at::kDouble), w.t()).to(at::kFloat);
    return data;
}

TEST_F(UniAttn, CalibrationFitsTheCompensationByLeastSquares) {
    at::Generator generator = sdk::make_generator(4);
    const at::Tensor w = at::randn({kModel, kModel}, generator, at::kDouble);
    for (const std::string fit : {"position_mean", "tokens"}) {
        auto reuse = layer("uniattn", 1, 2,
                           {{"group_size", std::int64_t{2}},
                            {"begin", std::int64_t{0}},
                            {"calibration_fit", fit}});
        auto* calibrated = dynamic_cast<sdk::Calibrated*>(reuse.get());
        ASSERT_NE(calibrated, nullptr);
        ASSERT_TRUE(calibrated->calibrates());
        // Position-wise means need at least d_model positions for a unique answer.
        calibrated->calibrate(linear_target(w, 8, 2 * kModel));
        EXPECT_TRUE(at::allclose(reuse->named_parameters()["w_compensation"].to(at::kDouble), w,
                                 1e-4, 1e-4))
            << fit;
        // Fitting again on the same target keeps it: the layer's own compensation counts.
        calibrated->calibrate(linear_target(at::zeros_like(w), 8, 2 * kModel));
        EXPECT_TRUE(at::allclose(reuse->named_parameters()["w_compensation"].to(at::kDouble), w,
                                 1e-4, 1e-4))
            << fit << ": a zero residual leaves the fitted W_c as it is";
    }
    EXPECT_EQ(dynamic_cast<sdk::Calibrated*>(superblock_layer(0).get()), nullptr)
        << "anchors have nothing to fit";
}

}  // namespace
}  // namespace moelab::tests
