// The host expert bank against the naive per-token oracle: outputs and gradients (input, routing
// weights, expert weights), top-1 and top-2, empty slots, experts that get no tokens, capacity
// drops under both policies, for both grouped SwiGLU kernels. The kernels themselves are tested in
// tests/kernels/grouped_swiglu_test.cpp.

#include <gtest/gtest.h>

#include <torch/autograd.h>

#include "core/moe/host_expert_bank.h"
#include "naive_moe.h"

namespace moelab::core {
namespace {

struct Case {
    const char* name;
    std::int64_t slots;
    double capacity_factor;
    bool by_weight;
    const char* kernel;
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.name; }

constexpr std::int64_t kTokens = 24, kExperts = 5, kModel = 8, kFf = 6;

// Indices that leave expert 4 without tokens, and some empty (-1) slots.
at::Tensor make_indices(std::int64_t slots, at::Generator& gen) {
    at::Tensor idx = at::randint(0, kExperts - 1, {kTokens, slots}, gen, at::kLong);
    if (slots > 1) {
        // Distinct experts per token, as a top-k router would produce.
        for (std::int64_t t = 0; t < kTokens; ++t) {
            if (idx[t][1].item<std::int64_t>() == idx[t][0].item<std::int64_t>()) {
                idx[t][1] = (idx[t][0].item<std::int64_t>() + 1) % (kExperts - 1);
            }
        }
        idx.index_put_({at::arange(0, kTokens, 5), 1}, -1);  // some tokens use one expert only
    }
    idx[3][0] = -1;  // token 3 uses fewer (maybe no) experts
    return idx;
}

class ExpertBankVsNaive : public ::testing::TestWithParam<Case> {};

TEST_P(ExpertBankVsNaive, OutputsAndGradientsMatch) {
    const Case c = GetParam();
    at::Generator gen = at::detail::createCPUGenerator(1234);
    HostExpertBank bank({"experts", kExperts, kModel, kFf, c.capacity_factor},
                        DispatchPolicy{0.0, c.by_weight}, 0.3, 0.3, 99);
    bank.to(at::kDouble);
    bank.set_kernel(c.kernel);

    const at::Tensor x = at::randn({kTokens, kModel}, gen, at::kDouble).requires_grad_();
    const at::Tensor indices = make_indices(c.slots, gen);
    const at::Tensor weights =
        at::rand({kTokens, c.slots}, gen, at::kDouble).masked_fill(indices < 0, 0).requires_grad_();
    const at::Tensor upstream = at::randn({kTokens, kModel}, gen, at::kDouble);

    const at::Tensor out = bank.mix(x, indices, weights);
    const auto grads =
        torch::autograd::grad({out}, {x, weights, bank.w_in, bank.w_out}, {upstream});

    const at::Tensor ref_w_in = bank.w_in.detach().clone().requires_grad_();
    const at::Tensor ref_w_out = bank.w_out.detach().clone().requires_grad_();
    const at::Tensor ref_x = x.detach().clone().requires_grad_();
    const at::Tensor ref_weights = weights.detach().clone().requires_grad_();
    const at::Tensor ref = tests::naive_mix(ref_x, indices, ref_weights, ref_w_in, ref_w_out,
                                            c.capacity_factor, c.by_weight);
    const auto ref_grads = torch::autograd::grad({ref}, {ref_x, ref_weights, ref_w_in, ref_w_out},
                                                 {upstream}, /*retain_graph=*/false,
                                                 /*create_graph=*/false, /*allow_unused=*/true);

    EXPECT_TRUE(at::allclose(out, ref, 1e-10, 1e-12)) << (out - ref).abs().max();
    const char* names[] = {"x", "weights", "w_in", "w_out"};
    for (int i = 0; i < 4; ++i) {
        const at::Tensor expected =
            ref_grads[i].defined() ? ref_grads[i] : at::zeros_like(grads[i]);
        EXPECT_TRUE(at::allclose(grads[i], expected, 1e-10, 1e-12))
            << names[i] << " max diff " << (grads[i] - expected).abs().max();
    }
    // Expert 4 received no tokens: its weights get exactly zero gradient.
    EXPECT_EQ(grads[2][kExperts - 1].abs().max().item<double>(), 0.0);
    EXPECT_EQ(grads[3][kExperts - 1].abs().max().item<double>(), 0.0);

    const std::vector<DispatchRecord> records = bank.take_dispatches();
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].tokens_per_expert[kExperts - 1].item<std::int64_t>(), 0);
    const std::int64_t valid = (indices >= 0).sum().item<std::int64_t>();
    EXPECT_EQ(records[0].assignments.item<std::int64_t>(), valid);
    EXPECT_EQ(records[0].tokens_per_expert.sum().item<std::int64_t>() +
                  records[0].dropped.item<std::int64_t>(),
              valid);
    if (c.capacity_factor > 0) EXPECT_GT(records[0].dropped.item<std::int64_t>(), 0) << "no drops";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ExpertBankVsNaive,
    ::testing::Values(Case{"top1", 1, 0.0, true, "grouped"}, Case{"top2", 2, 0.0, true, "grouped"},
                      Case{"top2_composed", 2, 0.0, true, "reference"},
                      Case{"top1_capacity_by_weight", 1, 0.8, true, "grouped"},
                      Case{"top2_capacity_by_weight", 2, 0.8, true, "grouped"},
                      Case{"top2_capacity_by_position", 2, 0.8, false, "grouped"},
                      Case{"top2_capacity_composed", 2, 0.8, true, "reference"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ExpertBank, FloatOutputMatchesDoubleWithinFloatTolerance) {
    at::Generator gen = at::detail::createCPUGenerator(7);
    HostExpertBank bank({"experts", 4, 16, 12, -1}, DispatchPolicy{}, 0.1, 0.1, 5);
    const at::Tensor x = at::randn({64, 16}, gen, at::kFloat);
    const at::Tensor indices = std::get<1>(at::rand({64, 4}, gen).topk(2, -1));
    const at::Tensor weights = at::rand({64, 2}, gen);
    const at::Tensor out = bank.mix(x, indices, weights);
    const at::Tensor ref = tests::naive_mix(x.to(at::kDouble), indices, weights.to(at::kDouble),
                                            bank.w_in.to(at::kDouble), bank.w_out.to(at::kDouble));
    EXPECT_TRUE(at::allclose(out.to(at::kDouble), ref, 1e-5, 1e-6));
}

TEST(ExpertBank, AllSlotsEmptyGivesZeroAndNoDispatchWork) {
    HostExpertBank bank({"experts", 3, 4, 4, -1}, DispatchPolicy{}, 0.1, 0.1, 1);
    const at::Tensor x = at::randn({5, 4}).requires_grad_();
    const at::Tensor indices = at::full({5, 2}, -1, at::kLong);
    const at::Tensor out = bank.mix(x, indices, at::zeros({5, 2}));
    EXPECT_EQ(out.abs().max().item<float>(), 0.0f);
    out.sum().backward();
    EXPECT_EQ(x.grad().abs().max().item<float>(), 0.0f);
}

TEST(ExpertBank, RejectsMalformedIndicesWithAClearMessage) {
    HostExpertBank bank({"experts", 3, 4, 4, -1}, DispatchPolicy{}, 0.1, 0.1, 1);
    try {
        bank.mix(at::randn({5, 4}), at::zeros({5, 2}, at::kInt), at::zeros({5, 2}));
        FAIL();
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("int64"), std::string::npos) << e.what();
    }
}

// Expert e is drawn from its own seed: the same expert whatever the bank's size (so sharding the
// experts across processes later cannot change the model), with the requested scales.
TEST(ExpertBank, EachExpertsInitialisationIsIndependentOfTheBankSize) {
    HostExpertBank four({"experts", 4, 32, 48, -1}, DispatchPolicy{}, 0.2, 0.05, 77);
    HostExpertBank eight({"experts", 8, 32, 48, -1}, DispatchPolicy{}, 0.2, 0.05, 77);
    EXPECT_TRUE(at::equal(four.w_in, eight.w_in.narrow(0, 0, 4)));
    EXPECT_TRUE(at::equal(four.w_out, eight.w_out.narrow(0, 0, 4)));
    EXPECT_FALSE(at::equal(eight.w_in[0], eight.w_in[1]));  // experts differ from each other
    EXPECT_NEAR(eight.w_in.std().item<double>(), 0.2, 0.01);
    EXPECT_NEAR(eight.w_out.std().item<double>(), 0.05, 0.0025);
    HostExpertBank other_seed({"experts", 4, 32, 48, -1}, DispatchPolicy{}, 0.2, 0.05, 78);
    EXPECT_FALSE(at::equal(four.w_in, other_seed.w_in));
}

TEST(ExpertBank, RunAllEqualsEachExpertApplied) {
    at::Generator gen = at::detail::createCPUGenerator(3);
    HostExpertBank bank({"experts", 3, 6, 5, -1}, DispatchPolicy{}, 0.2, 0.2, 2);
    const at::Tensor x = at::randn({7, 6}, gen);
    const at::Tensor all = bank.run_all(x);
    ASSERT_EQ(all.sizes(), (at::IntArrayRef{3, 7, 6}));
    for (std::int64_t e = 0; e < 3; ++e) {
        EXPECT_TRUE(
            at::allclose(all[e], tests::naive_swiglu(x, bank.w_in[e], bank.w_out[e]), 1e-5, 1e-6));
    }
}

}  // namespace
}  // namespace moelab::core
