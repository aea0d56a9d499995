// sdk::blocked_causal_attention (blocked_attention.h) against causal attention written out as one
// product in float64 (scores, causal mask, softmax, values), forward and the gradients of query,
// key and value, at odd sizes: blocks that do not divide the sequence, one block, blocks of one
// row, and grouped query heads sharing a key/value head. Then the rotary attention at a length
// that takes the blocked path against the same attention forced onto the one-product path.

#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "moelab/sdk/blocked_attention.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/rotary_attention.h"

namespace moelab::sdk {
namespace {

// query (n, g, s, d), key (n, s, d), value (n, s, dv), all float64.
at::Tensor written_out(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                       double scale) {
    const std::int64_t seq = query.size(2);
    const at::Tensor scores = at::matmul(query, key.unsqueeze(1).transpose(-2, -1)) * scale;
    const at::Tensor future = at::ones({seq, seq}, at::kBool).triu(1);
    return at::matmul(scores.masked_fill(future, -INFINITY).softmax(-1), value.unsqueeze(1));
}

struct Shape {
    const char* name;
    std::int64_t n, group, seq, dim, value_dim, block;
};

class BlockedAttention : public ::testing::TestWithParam<Shape> {};

TEST_P(BlockedAttention, MatchesTheWrittenOutMethodForwardAndBackward) {
    const Shape c = GetParam();
    at::Generator generator = make_generator(7);
    const at::Tensor q = at::randn({c.n, c.group, c.seq, c.dim}, generator);
    const at::Tensor k = at::randn({c.n, c.seq, c.dim}, generator);
    const at::Tensor v = at::randn({c.n, c.seq, c.value_dim}, generator);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.dim));
    std::vector<at::Tensor> mine, reference;
    for (const at::Tensor& t : {q, k, v}) {
        mine.push_back(t.clone().requires_grad_(true));
        reference.push_back(t.to(at::kDouble).requires_grad_(true));
    }
    const at::Tensor out = blocked_causal_attention(mine[0], mine[1], mine[2], scale, c.block);
    const at::Tensor expected = written_out(reference[0], reference[1], reference[2], scale);
    EXPECT_LT((out.to(at::kDouble) - expected).abs().max().item<double>(), 1e-5) << c.name;

    const at::Tensor upstream = at::randn(out.sizes(), generator, at::kDouble);
    (out.to(at::kDouble) * upstream).sum().backward();
    (expected * upstream).sum().backward();
    for (int i = 0; i < 3; ++i) {
        EXPECT_LT((mine[i].grad().to(at::kDouble) - reference[i].grad()).abs().max().item<double>(),
                  1e-5)
            << c.name << " input " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlockedAttention,
                         ::testing::Values(Shape{"blocks_not_dividing", 3, 1, 11, 6, 5, 4},
                                           Shape{"one_block", 2, 1, 9, 4, 4, 16},
                                           Shape{"rows_of_one", 1, 1, 6, 3, 2, 1},
                                           Shape{"grouped_heads", 2, 3, 10, 8, 8, 3}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                             return std::string(info.param.name);
                         });

// A sequence longer than RotaryAttention's block takes the blocked path when its positions are one
// shared row; the same positions given per batch row take the one-product path. Both compute
// the same attention.
TEST(RotaryAttentionLongSequences, TheBlockedPathComputesWhatTheOneProductPathDoes) {
    AttentionContext context;
    context.model.d_model = 16;
    context.model.heads = 4;
    context.model.kv_heads = 2;
    context.model.head_dim = 4;
    context.model.layers = 2;
    context.model.max_seq_len = 1024;
    context.seed = 3;
    context.init_std = 0.3;
    const std::int64_t batch = 2, seq = 300;
    RotaryAttention attention(context, rope_inv_freq(10000.0, 4).unsqueeze(0));
    at::Generator generator = make_generator(9);
    const at::Tensor hidden = at::randn({batch, seq, 16}, generator);
    const at::Tensor shared = at::arange(seq, at::kLong).unsqueeze(0);
    std::vector<at::Tensor> outputs, grads;
    for (const at::Tensor& positions : {shared, shared.expand({batch, seq}).contiguous()}) {
        ForwardState state;
        AttentionInput input;
        input.hidden = hidden.clone().requires_grad_(true);
        input.positions = positions;
        input.state = &state;
        const at::Tensor out = attention.forward(input);
        out.pow(2).sum().backward();
        outputs.push_back(out.detach());
        grads.push_back(input.hidden.grad());
        for (auto& p : attention.parameters()) grads.push_back(p.grad().clone());
        attention.zero_grad();
    }
    EXPECT_LT((outputs[0] - outputs[1]).abs().max().item<double>(), 1e-5);
    const std::size_t half = grads.size() / 2;
    for (std::size_t i = 0; i < half; ++i) {
        const double scale = grads[half + i].abs().max().item<double>();
        EXPECT_LT((grads[i] - grads[half + i]).abs().max().item<double>(), 1e-5 * scale) << i;
    }
}

}  // namespace
}  // namespace moelab::sdk
