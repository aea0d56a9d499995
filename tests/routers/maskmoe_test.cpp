// MaskMoE (methods.md §1): rare tokens always reach exactly their one visible expert, frequent
// tokens never reach a masked one, and the mask is model state that checkpoints carry unchanged.

#include <gtest/gtest.h>

#include "core/checkpoint/checkpoint.h"
#include "core/train/model_state.h"
#include "router_fixture.h"
#include "support/temp_dir.h"

namespace moelab::tests {
namespace {

// 16 ids where id v occurs v times; the top quarter (ids 12..15) is frequent.
const Options kOptions = {
    {"k", std::int64_t{2}}, {"visible_frequent", std::int64_t{3}}, {"frequent_fraction", 0.25}};

TEST(MaskMoe, RareTokensUseOnlyTheirVisibleExpertAndFrequentOnesNeverAMaskedOne) {
    BuiltLayer built = build_layer("maskmoe", kOptions, LayerSpec{.experts = 6});
    const at::Tensor visible = built.buffer("block.router.visible");  // (16, 6)
    ASSERT_EQ(visible.sizes(), (at::IntArrayRef{16, 6}));
    const at::Tensor per_id = visible.sum(1);
    for (std::int64_t v = 0; v < 16; ++v) {
        EXPECT_EQ(per_id[v].item<std::int64_t>(), v >= 12 ? 3 : 1) << "id " << v;
    }

    at::manual_seed(3);
    const at::Tensor ids = at::arange(16, at::kLong).repeat({40});  // every id, 40 occurrences
    for (const bool training : {true, false}) {
        const sdk::BlockOutput out = built.forward(at::randn({640, 8}), ids, training);
        const at::Tensor indices = out.routing[0].expert_indices;
        const at::Tensor weights = out.routing[0].combine_weights;
        for (std::int64_t t = 0; t < 640; ++t) {
            const std::int64_t v = ids[t].item<std::int64_t>();
            const std::int64_t first = indices[t][0].item<std::int64_t>();
            const std::int64_t second = indices[t][1].item<std::int64_t>();
            if (v < 12) {
                ASSERT_TRUE(visible[v][first].item<bool>()) << "rare id " << v;
                ASSERT_EQ(second, -1) << "rare id " << v << " got a second expert";
                ASSERT_NEAR(weights[t][0].item<double>(), 1.0, 1e-6);
                ASSERT_EQ(weights[t][1].item<double>(), 0.0);
            } else {
                ASSERT_GE(second, 0);
                ASSERT_NE(first, second);
                ASSERT_TRUE(visible[v][first].item<bool>() && visible[v][second].item<bool>())
                    << "frequent id " << v << " routed to a masked expert";
            }
        }
    }
    // Disabling the top expert leaves rare tokens with no expert at all, without NaN...
    core::Perturbation disable_top{.kind = core::PerturbationKind::kDisableTop, .strength = 1};
    const at::Tensor x = at::randn({640, 8});
    const sdk::BlockOutput perturbed = built.forward(x, ids, false, &disable_top);
    EXPECT_TRUE(perturbed.hidden.isfinite().all().item<bool>());
    const at::Tensor rare = (ids < 12).unsqueeze(1);
    EXPECT_TRUE((perturbed.routing[0].expert_indices.masked_select(rare) == -1).all().item<bool>());
    // ... or, with none_left = fallback, routes them with the unmasked router minus the disabled
    // expert: the top-2 of the full softmax after removing their one visible expert.
    disable_top.none_left = core::NoneLeft::kFallback;
    const sdk::BlockOutput fallback = built.forward(x, ids, false, &disable_top);
    const at::Tensor weight = built.parameter("block.router.weight");
    const at::Tensor unmasked =
        x.matmul(weight.t()).softmax(-1).masked_fill(visible.index_select(0, ids), 0.0);
    const at::Tensor expected = std::get<1>(unmasked.topk(2, -1));
    for (std::int64_t t = 0; t < 640; ++t) {
        if (ids[t].item<std::int64_t>() >= 12) continue;
        ASSERT_TRUE(at::equal(fallback.routing[0].expert_indices[t], expected[t])) << "token " << t;
    }
}

TEST(MaskMoe, OneTableForAllLayersUnlessPerLayer) {
    // Layers of one model: different layer seeds, the same model seed.
    auto mask = [](const Options& options, std::uint64_t seed) {
        return build_layer("maskmoe", options, LayerSpec{.experts = 6, .seed = seed})
            .buffer("block.router.visible");
    };
    Options per_layer = kOptions;
    per_layer["per_layer"] = true;
    EXPECT_FALSE(at::equal(mask(per_layer, 1), mask(per_layer, 2)));
    EXPECT_TRUE(at::equal(mask(kOptions, 1), mask(kOptions, 2)));
}

TEST(MaskMoe, SplitsByCountThreshold) {
    Options options = kOptions;
    options["frequent_by"] = std::string("count");
    options["frequent_min_count"] = std::int64_t{10};
    BuiltLayer built = build_layer("maskmoe", options, LayerSpec{.experts = 6});
    const at::Tensor per_id = built.buffer("block.router.visible").sum(1);
    for (std::int64_t v = 0; v < 16; ++v) {
        EXPECT_EQ(per_id[v].item<std::int64_t>(), v >= 10 ? 3 : 1) << "id " << v;
    }
}

TEST(MaskMoe, TheMaskSurvivesACheckpointRoundTrip) {
    BuiltLayer saved = build_layer("maskmoe", kOptions, LayerSpec{.experts = 6, .seed = 1});
    BuiltLayer restored =
        build_layer("maskmoe", kOptions, LayerSpec{.experts = 6, .seed = 2, .model_seed = 7});
    const at::Tensor original = saved.buffer("block.router.visible").clone();
    ASSERT_FALSE(at::equal(original, restored.buffer("block.router.visible")));

    TempDir dir;
    core::CheckpointContents contents;
    contents.model = core::model_tensors(*saved.layer);
    const auto step_dir = core::save_checkpoint(dir / "checkpoints", 1, contents, 1);
    core::load_model_tensors(*restored.layer, core::load_checkpoint(step_dir).model);

    const at::Tensor loaded = restored.buffer("block.router.visible");
    EXPECT_EQ(loaded.scalar_type(), at::kBool);
    EXPECT_TRUE(at::equal(loaded, original));
    at::manual_seed(4);
    const at::Tensor x = at::randn({48, 8});
    const at::Tensor ids = at::arange(48, at::kLong) % 16;
    EXPECT_TRUE(
        at::equal(saved.forward(x, ids, false).hidden, restored.forward(x, ids, false).hidden));
}

}  // namespace
}  // namespace moelab::tests
