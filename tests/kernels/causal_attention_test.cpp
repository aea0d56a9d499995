// The host's fused causal attention (kernels/binding/causal_attention.h): the forward against a
// loop over queries and keys written out from the definition, the gradients against LibTorch's
// autograd through the plain composition (mask, softmax, products) and against finite differences,
// float32 against float64, results that do not depend on the number of threads, and the inputs it
// refuses. Shapes cover one query, a tile and one more row (64, 65), several tiles with a part
// (130), grouped query heads, head and value widths that differ, and sequences past 256 (whose
// probabilities the backward recomputes).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <torch/autograd.h>

#include "kernels/binding/blas_threads.h"
#include "kernels/binding/causal_attention.h"
#include "kernels/binding/pass_pool.h"

namespace moelab::kernels {
namespace {

struct Shape {
    std::int64_t blocks, group, seq, head_dim, value_dim;
};

struct Inputs {
    at::Tensor query, key, value;
};

Inputs random_inputs(const Shape& s, at::ScalarType dtype, std::uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const at::TensorOptions options = at::TensorOptions().dtype(dtype);
    return {at::randn({s.blocks, s.group, s.seq, s.head_dim}, gen, options),
            at::randn({s.blocks, s.seq, s.head_dim}, gen, options),
            at::randn({s.blocks, s.seq, s.value_dim}, gen, options)};
}

// out[b, g, i] = sum_{j <= i} e^{scale q.k_j - m} v_j / sum_{j <= i} e^{scale q.k_j - m}, one
// query at a time, in double.
at::Tensor naive_attention(const Inputs& in, double scale) {
    const at::Tensor q = in.query.to(at::kDouble), k = in.key.to(at::kDouble),
                     v = in.value.to(at::kDouble);
    const std::int64_t n = q.size(0), group = q.size(1), seq = q.size(2), hd = q.size(3),
                       dv = v.size(2);
    at::Tensor out = at::zeros({n, group, seq, dv}, at::kDouble);
    auto qa = q.accessor<double, 4>();
    auto ka = k.accessor<double, 3>();
    auto va = v.accessor<double, 3>();
    auto oa = out.accessor<double, 4>();
    for (std::int64_t b = 0; b < n; ++b) {
        for (std::int64_t g = 0; g < group; ++g) {
            for (std::int64_t i = 0; i < seq; ++i) {
                std::vector<double> score(static_cast<std::size_t>(i + 1));
                double top = -INFINITY;
                for (std::int64_t j = 0; j <= i; ++j) {
                    double dot = 0;
                    for (std::int64_t c = 0; c < hd; ++c) dot += qa[b][g][i][c] * ka[b][j][c];
                    score[static_cast<std::size_t>(j)] = scale * dot;
                    top = std::max(top, scale * dot);
                }
                double sum = 0;
                for (double& s : score) sum += (s = std::exp(s - top));
                for (std::int64_t j = 0; j <= i; ++j) {
                    const double p = score[static_cast<std::size_t>(j)] / sum;
                    for (std::int64_t c = 0; c < dv; ++c) oa[b][g][i][c] += p * va[b][j][c];
                }
            }
        }
    }
    return out;
}

// The plain composition, differentiable by LibTorch's autograd: scores, a boolean mask, softmax,
// the product with the values.
at::Tensor composed_attention(const at::Tensor& query, const at::Tensor& key,
                              const at::Tensor& value, double scale) {
    const std::int64_t seq = query.size(2);
    const at::Tensor scores = at::matmul(query, key.unsqueeze(1).transpose(-1, -2)) * scale;
    const at::Tensor future = at::ones({seq, seq}, at::kBool).triu(1);
    const at::Tensor probabilities = scores.masked_fill(future, -INFINITY).softmax(-1);
    return at::matmul(probabilities, value.unsqueeze(1));
}

struct Gradients {
    at::Tensor out, query, key, value;
};

// Output and input gradients of sum(out * weights) through `attention`.
template <class Attention>
Gradients gradients_of(Attention&& attention, const Inputs& in, const at::Tensor& weights) {
    const at::Tensor q = in.query.clone().requires_grad_();
    const at::Tensor k = in.key.clone().requires_grad_();
    const at::Tensor v = in.value.clone().requires_grad_();
    const at::Tensor out = attention(q, k, v);
    (out * weights).sum().backward();
    return {out.detach(), q.grad(), k.grad(), v.grad()};
}

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
    const at::Tensor bd = b.to(at::kDouble);
    return (a.to(at::kDouble) - bd).abs().max().item<double>() /
           (1.0 + bd.abs().max().item<double>());
}

const std::vector<Shape> kShapes = {
    {3, 1, 1, 4, 4},   {2, 1, 5, 3, 7},  {2, 1, 64, 8, 8},  {2, 1, 65, 5, 6},
    {3, 2, 130, 8, 4}, {1, 3, 97, 6, 6}, {2, 1, 300, 4, 5}, {1, 2, 257, 3, 3},
};

TEST(CausalAttention, ForwardMatchesTheDefinitionQueryByQuery) {
    for (const Shape& s : kShapes) {
        const Inputs in = random_inputs(s, at::kDouble, 1 + s.seq);
        const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
        const at::Tensor out = binding::causal_attention(in.query, in.key, in.value, scale);
        ASSERT_EQ(out.sizes(), (at::IntArrayRef{s.blocks, s.group, s.seq, s.value_dim}));
        EXPECT_LT(relative_difference(out, naive_attention(in, scale)), 1e-12)
            << "seq " << s.seq << ", group " << s.group;
    }
}

TEST(CausalAttention, GradientsMatchAutogradThroughTheComposition) {
    for (const Shape& s : kShapes) {
        const Inputs in = random_inputs(s, at::kDouble, 100 + s.seq);
        const at::Tensor weights = at::randn({s.blocks, s.group, s.seq, s.value_dim}, at::kDouble);
        const double scale = 0.37;
        const Gradients fused = gradients_of(
            [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
                return binding::causal_attention(q, k, v, scale);
            },
            in, weights);
        const Gradients composed =
            gradients_of([&](const at::Tensor& q, const at::Tensor& k,
                             const at::Tensor& v) { return composed_attention(q, k, v, scale); },
                         in, weights);
        EXPECT_LT(relative_difference(fused.out, composed.out), 1e-12) << "seq " << s.seq;
        EXPECT_LT(relative_difference(fused.query, composed.query), 1e-12) << "seq " << s.seq;
        EXPECT_LT(relative_difference(fused.key, composed.key), 1e-12) << "seq " << s.seq;
        EXPECT_LT(relative_difference(fused.value, composed.value), 1e-12) << "seq " << s.seq;
    }
}

TEST(CausalAttention, GradientsMatchFiniteDifferences) {
    // Two tiles and a part, grouped heads; both the kept (70) and the recomputed (260)
    // probabilities.
    for (const std::int64_t seq : {70, 260}) {
        const Shape s{1, 2, seq, 3, 2};
        const Inputs in = random_inputs(s, at::kDouble, 7);
        const at::Tensor weights = at::randn({1, 2, seq, 2}, at::kDouble);
        const double scale = 0.8;
        auto loss = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
            return (binding::causal_attention(q, k, v, scale) * weights).sum().item<double>();
        };
        const Gradients grads = gradients_of(
            [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
                return binding::causal_attention(q, k, v, scale);
            },
            in, weights);
        const double h = 1e-6;
        // A few coordinates of each input: first, last and middle rows.
        for (int which = 0; which < 3; ++which) {
            const at::Tensor& input = which == 0 ? in.query : which == 1 ? in.key : in.value;
            const at::Tensor& grad = which == 0   ? grads.query
                                     : which == 1 ? grads.key
                                                  : grads.value;
            const at::Tensor flat_grad = grad.reshape(-1);
            for (const std::int64_t index :
                 {std::int64_t{0}, input.numel() / 2, input.numel() - 1}) {
                at::Tensor plus = in.query.clone(), plus_k = in.key.clone(),
                           plus_v = in.value.clone();
                at::Tensor minus = in.query.clone(), minus_k = in.key.clone(),
                           minus_v = in.value.clone();
                at::Tensor& p = which == 0 ? plus : which == 1 ? plus_k : plus_v;
                at::Tensor& m = which == 0 ? minus : which == 1 ? minus_k : minus_v;
                p.view(-1)[index] += h;
                m.view(-1)[index] -= h;
                const double numeric =
                    (loss(plus, plus_k, plus_v) - loss(minus, minus_k, minus_v)) / (2 * h);
                EXPECT_NEAR(flat_grad[index].item<double>(), numeric, 1e-6)
                    << "input " << which << ", element " << index << ", seq " << seq;
            }
        }
    }
}

TEST(CausalAttention, Float32AgreesWithFloat64) {
    for (const Shape& s : kShapes) {
        const Inputs in64 = random_inputs(s, at::kDouble, 200 + s.seq);
        const Inputs in32{in64.query.to(at::kFloat), in64.key.to(at::kFloat),
                          in64.value.to(at::kFloat)};
        const at::Tensor weights = at::randn({s.blocks, s.group, s.seq, s.value_dim}, at::kDouble);
        const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
        auto fused = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
            return binding::causal_attention(q, k, v, scale);
        };
        const Gradients single = gradients_of(fused, in32, weights.to(at::kFloat));
        const Gradients reference = gradients_of(fused, in64, weights);
        EXPECT_EQ(single.out.scalar_type(), at::kFloat);
        EXPECT_LT(relative_difference(single.out, reference.out), 2e-6) << "seq " << s.seq;
        EXPECT_LT(relative_difference(single.query, reference.query), 1e-5) << "seq " << s.seq;
        EXPECT_LT(relative_difference(single.key, reference.key), 1e-5) << "seq " << s.seq;
        EXPECT_LT(relative_difference(single.value, reference.value), 1e-5) << "seq " << s.seq;
    }
}

TEST(CausalAttention, TheSameBitsOnOneThreadAsOnMany) {
    if (!binding::blas_threads_are_global() || binding::pass_threads() < 2) {
        GTEST_SKIP() << "the blocks run side by side only with OpenBLAS's pthreads build on 2 or "
                        "more cores";
    }
    const Shape s{6, 2, 150, 8, 8};
    const Inputs in = random_inputs(s, at::kFloat, 3);
    const at::Tensor weights = at::randn({6, 2, 150, 8});
    auto fused = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
        return binding::causal_attention(q, k, v, 0.3);
    };
    const Gradients many = gradients_of(fused, in, weights);
    binding::limit_pass_parts(1);
    const Gradients one = gradients_of(fused, in, weights);
    binding::limit_pass_parts(0);
    EXPECT_TRUE(at::equal(one.out, many.out));
    EXPECT_TRUE(at::equal(one.query, many.query));
    EXPECT_TRUE(at::equal(one.key, many.key));
    EXPECT_TRUE(at::equal(one.value, many.value));
}

TEST(CausalAttention, RefusesWhatItCannotRunAndSaysWhy) {
    const Inputs in = random_inputs({2, 1, 8, 4, 4}, at::kFloat, 5);
    EXPECT_FALSE(binding::causal_attention_refusal(in.query, in.key, in.value).has_value());

    const auto half = binding::causal_attention_refusal(
        in.query.to(at::kBFloat16), in.key.to(at::kBFloat16), in.value.to(at::kBFloat16));
    ASSERT_TRUE(half.has_value());
    EXPECT_NE(half->find("float32 or float64"), std::string::npos) << *half;

    const auto mixed =
        binding::causal_attention_refusal(in.query, in.key.to(at::kDouble), in.value);
    EXPECT_TRUE(mixed.has_value());

    const auto shapes =
        binding::causal_attention_refusal(in.query, in.key.narrow(1, 0, 7), in.value);
    ASSERT_TRUE(shapes.has_value());
    EXPECT_NE(shapes->find("(n, seq, d)"), std::string::npos) << *shapes;
    EXPECT_THROW(binding::causal_attention(in.query, in.key.narrow(1, 0, 7), in.value, 1.0),
                 std::invalid_argument);
}

}  // namespace
}  // namespace moelab::kernels
