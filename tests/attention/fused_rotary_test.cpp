// sdk::rotate_heads (fused_rotary.h) against the operator chain it replaces (apply_rope on the
// head-major layout), forward and gradients, at odd sizes: an odd half head dimension, one table
// row or one per key/value head with grouped query heads, tables per batch row, and a strided
// input (a slice of a fused projection). The composition it falls back to off the fused path is
// checked the same way, in float64.

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "moelab/sdk/fused_rotary.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/rotary.h"

namespace moelab::sdk {
namespace {

struct Case {
    const char* name;
    std::int64_t batch, seq, heads, head_dim, rows, heads_per_row;
    bool tables_per_batch_row;
    bool strided;
};

// The chain rotate_heads replaces: x to (batch, heads, seq, head_dim), head h with table row
// h / heads_per_row, apply_rope per head.
at::Tensor chain(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                 std::int64_t heads_per_row) {
    const at::Tensor by_head = x.transpose(1, 2);
    std::vector<at::Tensor> heads;
    for (std::int64_t h = 0; h < x.size(2); ++h) {
        const std::int64_t row = cos.size(1) == 1 ? 0 : h / heads_per_row;
        heads.push_back(apply_rope(by_head.select(1, h), cos.select(1, row), sin.select(1, row)));
    }
    return at::stack(heads, 1);
}

class RotateHeads : public ::testing::TestWithParam<Case> {};

TEST_P(RotateHeads, MatchesTheChainItReplacesForwardAndBackward) {
    const Case c = GetParam();
    for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {  // fused, then composed
        at::Generator generator = make_generator(11);
        const at::Tensor inv_freq =
            at::rand({c.rows, c.head_dim / 2}, generator, at::kDouble) * 0.5 + 0.01;
        const at::Tensor positions =
            at::randint(0, 300, {c.tables_per_batch_row ? c.batch : 1, c.seq}, generator);
        auto [cos, sin] = rope_tables(inv_freq, positions);
        cos = cos.to(dtype);
        sin = sin.to(dtype);
        // A strided x: the middle slice of a projection three times as wide.
        const std::int64_t width = c.heads * c.head_dim;
        at::Tensor wide = at::randn({c.batch, c.seq, 3 * width}, generator, dtype);
        at::Tensor x =
            (c.strided ? wide.narrow(-1, width, width) : wide.narrow(-1, 0, width).clone())
                .view({c.batch, c.seq, c.heads, c.head_dim});
        const at::Tensor leaf = x.detach().clone().requires_grad_(true);
        const at::Tensor leaf_reference = x.detach().clone().requires_grad_(true);
        const at::Tensor strided_leaf =
            c.strided ? wide.detach().clone().requires_grad_(true) : at::Tensor();
        const at::Tensor input =
            c.strided ? strided_leaf.narrow(-1, width, width).view(x.sizes()) : leaf;

        const at::Tensor out = rotate_heads(input, cos, sin, c.heads_per_row);
        const at::Tensor expected = chain(leaf_reference, cos, sin, c.heads_per_row);
        ASSERT_EQ(out.sizes(), expected.sizes());
        const double tolerance = dtype == at::kFloat ? 1e-6 : 1e-12;
        EXPECT_TRUE(at::allclose(out, expected, tolerance, tolerance)) << c.name;
        if (dtype == at::kFloat) EXPECT_TRUE(out.is_contiguous()) << c.name;

        const at::Tensor upstream = at::randn(out.sizes(), generator, dtype);
        (out * upstream).sum().backward();
        (expected * upstream).sum().backward();
        const at::Tensor grad =
            c.strided ? strided_leaf.grad().narrow(-1, width, width).view(x.sizes()) : leaf.grad();
        EXPECT_TRUE(at::allclose(grad, leaf_reference.grad(), tolerance, tolerance)) << c.name;
        if (c.strided) {
            // Nothing flows into the rest of the projection.
            EXPECT_EQ(strided_leaf.grad().narrow(-1, 0, width).abs().max().item<double>(), 0);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RotateHeads,
    ::testing::Values(Case{"one_row", 2, 7, 3, 10, 1, 1, false, false},
                      Case{"rows_per_kv_head_grouped", 3, 5, 6, 6, 3, 2, false, false},
                      Case{"rows_per_head", 2, 4, 4, 2, 4, 1, false, true},
                      Case{"tables_per_batch_row", 3, 9, 2, 14, 1, 2, true, false},
                      Case{"strided_grouped_per_batch", 2, 6, 4, 8, 2, 2, true, true},
                      Case{"one_token", 1, 1, 1, 4, 1, 1, false, false}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(RotateHeadsShapes, RefuseTablesThatDoNotFitTheHeads) {
    const at::Tensor x = at::zeros({1, 3, 4, 8});
    const at::Tensor table = at::zeros({1, 3, 3, 4});  // 3 rows for 4 heads
    EXPECT_THROW(rotate_heads(x, table, table, 1), Error);
    EXPECT_THROW(rotate_heads(at::zeros({1, 3, 4, 7}), table, table, 1), Error);  // odd dim
}

}  // namespace
}  // namespace moelab::sdk
