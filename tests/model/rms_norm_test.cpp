// sdk::RmsNorm's one-pass CPU path (float32) against the formula written out in float64 with
// LibTorch's autograd: outputs and the gradients of the input and the weight, for odd widths, one
// row, a part of a chunk and several chunks, 3-d inputs; the same bits on one intra-op thread as on
// two; other dtypes keep the operator chain.

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include "moelab/sdk/rms_norm.h"

namespace moelab::sdk {
namespace {

struct Result {
    at::Tensor out, grad_x, grad_weight;
};

// y = x (mean(x^2) + eps)^-1/2 w, in float64.
Result reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& upstream,
                 double eps) {
    const at::Tensor x64 = x.to(at::kDouble).requires_grad_();
    const at::Tensor w64 = weight.to(at::kDouble).requires_grad_();
    const at::Tensor out = x64 * at::rsqrt(x64.square().mean(-1, true) + eps) * w64;
    (out * upstream.to(at::kDouble)).sum().backward();
    return {out.detach(), x64.grad(), w64.grad()};
}

Result fused(RmsNorm& norm, const at::Tensor& x, const at::Tensor& upstream) {
    const at::Tensor input = x.clone().requires_grad_();
    norm.weight.mutable_grad() = at::Tensor();
    const at::Tensor out = norm.forward(input);
    // The one-pass path ran: its node is the output's (a view of it for 2-d inputs too).
    const auto& view_of = out.grad_fn()->next_edges().at(0).function;
    EXPECT_NE(view_of->name().find("FusedRmsNorm"), std::string::npos) << view_of->name();
    (out * upstream).sum().backward();
    return {out.detach(), input.grad(), norm.weight.grad().clone()};
}

double relative(const at::Tensor& a, const at::Tensor& b) {
    return (a.to(at::kDouble) - b).abs().max().item<double>() /
           (1.0 + b.abs().max().item<double>());
}

TEST(RmsNorm, OnePassMatchesTheFormulaAndItsGradients) {
    const std::vector<std::vector<std::int64_t>> shapes = {{1, 5},     {3, 13},     {63, 8},
                                                           {130, 256}, {2, 65, 24}, {4, 3, 9}};
    at::Generator gen = at::detail::createCPUGenerator(11);
    for (const auto& shape : shapes) {
        const std::int64_t dim = shape.back();
        RmsNorm norm(dim, 1e-5);
        {
            torch::NoGradGuard no_grad;
            norm.weight.copy_(at::randn({dim}, gen));
        }
        const at::Tensor x = at::randn(shape, gen) * 3;
        const at::Tensor upstream = at::randn(shape, gen);
        const Result got = fused(norm, x, upstream);
        const Result want = reference(x, norm.weight.detach(), upstream, 1e-5);
        EXPECT_EQ(got.out.scalar_type(), at::kFloat);
        EXPECT_EQ(got.out.sizes(), x.sizes());
        EXPECT_LT(relative(got.out, want.out), 1e-6) << "dim " << dim;
        EXPECT_LT(relative(got.grad_x, want.grad_x), 1e-5) << "dim " << dim;
        EXPECT_LT(relative(got.grad_weight, want.grad_weight), 1e-5) << "dim " << dim;
    }
}

TEST(RmsNorm, TheSameBitsOnOneThreadAsOnTwo) {
    at::Generator gen = at::detail::createCPUGenerator(12);
    RmsNorm norm(40, 1e-6);
    const at::Tensor x = at::randn({300, 40}, gen);
    const at::Tensor upstream = at::randn({300, 40}, gen);
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    const Result one = fused(norm, x, upstream);
    at::set_num_threads(2);
    const Result two = fused(norm, x, upstream);
    at::set_num_threads(threads);
    EXPECT_TRUE(at::equal(one.out, two.out));
    EXPECT_TRUE(at::equal(one.grad_x, two.grad_x));
    EXPECT_TRUE(at::equal(one.grad_weight, two.grad_weight));
}

TEST(RmsNorm, Float64KeepsTheOperatorChainInFloat32Statistics) {
    // The header's contract for other dtypes: statistics in float32, the input's dtype out.
    RmsNorm norm(6, 1e-5);
    const at::Tensor x = at::randn({4, 6}, at::kDouble);
    const at::Tensor out = norm.forward(x);
    EXPECT_EQ(out.scalar_type(), at::kDouble);
    const at::Tensor x32 = x.to(at::kFloat);
    const at::Tensor want = (x32 * at::rsqrt(x32.square().mean(-1, true) + 1e-5)).to(at::kDouble);
    EXPECT_TRUE(at::allclose(out, want, 1e-6, 1e-6));
}

}  // namespace
}  // namespace moelab::sdk
