// The `grouped_cuda` kernel's tiles run on the CPU, thread by thread and block by block, in the
// order a CUDA block runs them (kernels/cuda/grouped_gemm_tile.h): the whole forward and backward
// of the grouped SwiGLU experts against a float64 loop, in float32 and bfloat16, over plans with
// empty experts, one expert with every row, tiles cut at every edge and unrouted rows whose tokens
// would fault if read. The launch itself runs only where a GPU is (GroupedSwigluCuda.*).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "kernels/binding/rows_by_token.h"
#include "kernels/cpu/grouped_swiglu_cpu.h"
#include "kernels/cpu/swiglu_rows.h"
#include "kernels/cuda/grouped_swiglu_steps.h"

namespace moelab::kernels::cuda {
namespace {

using tile::Element;

// A grid of blocks, each block's threads one after another between the barriers.
void run_on_cpu(const tile::GemmProblem& problem, bool weight_gemm, std::int64_t rows) {
    const std::int64_t row_tiles =
        weight_gemm ? (problem.height + tile::kRows - 1) / tile::kRows * problem.experts
                    : tile::rows_tile_bound(rows, problem.experts);
    const std::int64_t column_tiles = (problem.columns + tile::kCols - 1) / tile::kCols;
    auto shared = std::make_unique<tile::Shared>();
    std::vector<tile::Accumulator> acc(tile::kThreads);
    for (std::int64_t bx = 0; bx < row_tiles; ++bx) {
        for (std::int64_t by = 0; by < column_tiles; ++by) {
            const tile::Tile t =
                weight_gemm ? tile::weight_tile(problem, bx, by) : tile::rows_tile(problem, bx, by);
            if (!t.valid) continue;
            for (tile::Accumulator& a : acc) a = tile::Accumulator{};
            for (std::int64_t k0 = 0; k0 < t.depth(); k0 += tile::kDepth) {
                for (int th = 0; th < tile::kThreads; ++th) tile::load(problem, t, k0, th, *shared);
                for (int th = 0; th < tile::kThreads; ++th) {
                    tile::multiply(problem, *shared, th, acc[th]);
                }
            }
            for (int th = 0; th < tile::kThreads; ++th) tile::finish(problem, t, th, acc[th]);
        }
    }
}

// A tensor's values stored as `element`: float32, or bfloat16 bits as int16 (the launchers see
// raw bytes).
at::Tensor stored(const at::Tensor& t, Element element) {
    const at::Tensor f = t.to(at::kFloat).contiguous();
    return element == Element::kFloat32 ? f : f.to(at::kBFloat16).view(at::kShort);
}

at::Tensor values(const at::Tensor& t, Element element) {
    return element == Element::kFloat32 ? t.to(at::kDouble) : t.view(at::kBFloat16).to(at::kDouble);
}

at::Tensor empty_rows(std::int64_t rows, std::int64_t width, Element element) {
    // A value no step computes: rows a step skips keep it.
    return stored(at::full({rows, width}, 12345.0, at::kFloat), element);
}

void combine_on_cpu(const at::Tensor& rows, const binding::RowsByToken& index, std::int64_t tokens,
                    const at::Tensor& out) {
    const tile::Output output{out.data_ptr(), Element::kFloat32, rows.size(1), 0};
    for (std::int64_t t = 0; t < tokens; ++t) {
        for (std::int64_t j = 0; j < rows.size(1); ++j) {
            tile::put(output, 0, t, j,
                      tile::combined(rows.data_ptr<float>(), rows.size(1),
                                     index.token_offsets.data_ptr<std::int64_t>(),
                                     index.rows_of_token.data_ptr<std::int64_t>(), t, j));
        }
    }
}

struct Case {
    const char* name;
    std::int64_t tokens, d_model, d_ff;
    std::vector<std::int64_t> counts;
    std::int64_t unrouted;  // rows after the last group
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.name; }

const Case kCases[] = {
    {"some_experts_empty", 6, 8, 6, {3, 0, 5, 0, 2}, 3},
    {"one_expert_gets_every_row", 9, 8, 6, {0, 0, 9, 0}, 0},
    {"rows_fewer_than_experts", 5, 8, 6, {1, 0, 0, 1, 0, 0, 0, 0}, 2},
    {"no_rows_at_all", 3, 8, 6, {0, 0, 0}, 4},
    // Tiles cut at every edge: 64-row tiles inside and across experts, 64-column tiles, 16-deep
    // steps with a remainder (d_model 70, d_ff 90: 2 d_ff = 180).
    {"tiles_cut_at_every_edge", 50, 70, 90, {130, 1, 64, 0, 65}, 17},
};

class GroupedCudaTiles : public ::testing::TestWithParam<std::tuple<Case, Element>> {};

TEST_P(GroupedCudaTiles, ForwardAndBackwardMatchTheLoop) {
    const auto& [c, element] = GetParam();
    const std::int64_t experts = static_cast<std::int64_t>(c.counts.size());
    const std::int64_t routed = std::accumulate(c.counts.begin(), c.counts.end(), 0L);
    const std::int64_t rows = routed + c.unrouted;
    const std::int64_t d = c.d_model, f = c.d_ff;
    at::Generator gen = at::detail::createCPUGenerator(41);
    const at::TensorOptions int64 = at::TensorOptions().dtype(at::kLong);
    // Inputs as the kernel stores them, and their float64 values for the loop.
    const at::Tensor x = stored(at::randn({c.tokens, d}, gen), element);
    const at::Tensor dy = stored(at::randn({c.tokens, d}, gen), element);
    const at::Tensor w_in = 0.3 * at::randn({experts, d, 2 * f}, gen);
    const at::Tensor w_out = 0.3 * at::randn({experts, f, d}, gen);
    const at::Tensor weight = at::rand({rows}, gen);
    at::Tensor token = at::randint(c.tokens, {rows}, gen, int64);
    // Rows that are not routed carry tokens that would fault if any step read them.
    if (c.unrouted > 0) token.narrow(0, routed, c.unrouted).fill_(std::int64_t{1} << 40);
    std::vector<std::int64_t> ends(experts);
    std::partial_sum(c.counts.begin(), c.counts.end(), ends.begin());
    const at::Tensor group_ends = at::tensor(ends, int64);

    SwigluPlan plan;
    plan.tokens = c.tokens;
    plan.rows = rows;
    plan.experts = experts;
    plan.d_model = d;
    plan.d_ff = f;
    plan.token = token.data_ptr<std::int64_t>();
    plan.group_ends = group_ends.data_ptr<std::int64_t>();
    plan.element = element;

    // The index of the ordered combine (the binding's, on the CPU here) is the counting sort's.
    const binding::RowsByToken index = binding::rows_by_token(token, group_ends, c.tokens);
    {
        std::vector<std::int64_t> offsets(c.tokens + 1), by_token(routed);
        cpu::index_rows_by_token(token.data_ptr<std::int64_t>(), routed, c.tokens, offsets.data(),
                                 by_token.data());
        EXPECT_TRUE(at::equal(index.token_offsets, at::tensor(offsets, int64)));
        EXPECT_TRUE(
            at::equal(index.rows_of_token.narrow(0, 0, routed), at::tensor(by_token, int64)));
    }

    // Forward.
    at::Tensor pre = empty_rows(rows, 2 * f, element);
    at::Tensor act = empty_rows(rows, f, element);
    at::Tensor expert_rows = at::empty({rows, d});
    at::Tensor out = at::empty({c.tokens, d});
    run_on_cpu(gate_up_step(plan, x.data_ptr(), w_in.data_ptr<float>(), weight.data_ptr<float>(),
                            pre.data_ptr(), act.data_ptr()),
               false, rows);
    run_on_cpu(
        down_step(plan, act.data_ptr(), w_out.data_ptr<float>(), expert_rows.data_ptr<float>()),
        false, rows);
    combine_on_cpu(expert_rows, index, c.tokens, out);

    // Backward; the SwiGLU backward between the GEMMs is the CPU kernel's loop on the stored
    // values (the CUDA one is kernels/cuda/swiglu_rows_cuda.cu, the same formulas).
    at::Tensor grad_act = empty_rows(rows, f, element);
    run_on_cpu(grad_act_step(plan, dy.data_ptr(), w_out.data_ptr<float>(), grad_act.data_ptr()),
               false, rows);
    const at::Tensor pre_f = values(pre, element).to(at::kFloat).contiguous();
    const at::Tensor grad_act_f = values(grad_act, element).to(at::kFloat).contiguous();
    at::Tensor grad_pre_f = at::zeros({rows, 2 * f});
    at::Tensor grad_weight = at::zeros({rows});
    cpu::swiglu_rows_backward(pre_f.data_ptr<float>(), grad_act_f.data_ptr<float>(),
                              weight.data_ptr<float>(), grad_pre_f.data_ptr<float>(),
                              grad_weight.data_ptr<float>(), 0, routed, f);
    const at::Tensor grad_pre = stored(grad_pre_f, element);
    at::Tensor grad_rows = at::empty({rows, d});
    at::Tensor grad_x = at::empty({c.tokens, d});
    at::Tensor grad_w_in = at::full({experts, d, 2 * f}, 7.0);  // every element is written
    at::Tensor grad_w_out = at::full({experts, f, d}, 7.0);
    run_on_cpu(grad_rows_step(plan, grad_pre.data_ptr(), w_in.data_ptr<float>(),
                              grad_rows.data_ptr<float>()),
               false, rows);
    combine_on_cpu(grad_rows, index, c.tokens, grad_x);
    run_on_cpu(grad_w_out_step(plan, act.data_ptr(), dy.data_ptr(), grad_w_out.data_ptr<float>()),
               true, rows);
    run_on_cpu(grad_w_in_step(plan, x.data_ptr(), grad_pre.data_ptr(), grad_w_in.data_ptr<float>()),
               true, rows);

    // The float64 loop, from the stored inputs.
    std::vector<at::Tensor> inputs = {values(x, element), weight.to(at::kDouble),
                                      w_in.to(at::kDouble), w_out.to(at::kDouble)};
    for (at::Tensor& t : inputs) t.requires_grad_();
    // Zero, but in the graph of every input: an input no row reaches gets a zero gradient.
    at::Tensor expected = 0 * (inputs[0] + inputs[1].sum() + inputs[2].sum() + inputs[3].sum());
    std::int64_t r = 0;
    for (std::int64_t e = 0; e < experts; ++e) {
        for (std::int64_t i = 0; i < c.counts[e]; ++i, ++r) {
            const at::Tensor h = at::matmul(inputs[0][token[r].item<std::int64_t>()], inputs[2][e]);
            const at::Tensor g = h.narrow(0, 0, f), u = h.narrow(0, f, f);
            expected = expected.index_add(
                0, token.narrow(0, r, 1),
                (inputs[1][r] * at::matmul(g * at::sigmoid(g) * u, inputs[3][e])).unsqueeze(0));
        }
    }
    const auto expected_grads =
        torch::autograd::grad({(expected * values(dy, element)).sum()}, inputs,
                              /*grad_outputs=*/{});
    // float32: sums of float32 products; bfloat16: each stored intermediate rounded to 8 bits.
    const double tolerance = element == Element::kFloat32 ? 1e-4 : 3e-2;
    auto close = [&](const at::Tensor& got, const at::Tensor& want) {
        if (got.numel() == 0) return want.numel() == 0;
        const at::Tensor w = want.to(at::kDouble);
        return (got.to(at::kDouble) - w).abs().max().item<double>() <=
               tolerance * (1 + w.abs().max().item<double>());
    };
    EXPECT_TRUE(close(out, expected.detach())) << "out";
    EXPECT_TRUE(close(grad_x, expected_grads[0])) << "x";
    EXPECT_TRUE(close(grad_weight.narrow(0, 0, routed), expected_grads[1].narrow(0, 0, routed)))
        << "weight";
    EXPECT_TRUE(close(grad_w_in, expected_grads[2])) << "w_in";
    EXPECT_TRUE(close(grad_w_out, expected_grads[3])) << "w_out";
}

INSTANTIATE_TEST_SUITE_P(Kernels, GroupedCudaTiles,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(Element::kFloat32,
                                                              Element::kBfloat16)),
                         [](const auto& info) {
                             return std::string(std::get<0>(info.param).name) +
                                    (std::get<1>(info.param) == Element::kFloat32 ? "_float32"
                                                                                  : "_bfloat16");
                         });

// The kernel's bfloat16 rounding is LibTorch's: to nearest, ties to even, NaN kept.
TEST(GroupedCudaTiles, RoundsToBfloat16AsLibTorchDoes) {
    at::Generator gen = at::detail::createCPUGenerator(5);
    at::Tensor samples = at::cat({at::randn({4096}, gen) * 1e3, at::randn({4096}, gen) * 1e-30,
                                  at::tensor({0.0f, -0.0f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256,
                                              3.4e38f, -3.4e38f, INFINITY, -INFINITY})});
    const at::Tensor theirs = samples.to(at::kBFloat16).view(at::kShort);
    for (std::int64_t i = 0; i < samples.numel(); ++i) {
        const float value = samples[i].item<float>();
        ASSERT_EQ(static_cast<std::int16_t>(tile::float_to_bfloat16(value)),
                  theirs[i].item<std::int16_t>())
            << value;
        ASSERT_EQ(tile::bfloat16_to_float(tile::float_to_bfloat16(value)),
                  at::tensor(value).to(at::kBFloat16).to(at::kFloat).item<float>());
    }
    EXPECT_TRUE(std::isnan(tile::bfloat16_to_float(tile::float_to_bfloat16(NAN))));
}

}  // namespace
}  // namespace moelab::kernels::cuda
