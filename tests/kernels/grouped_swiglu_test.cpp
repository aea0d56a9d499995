// The grouped SwiGLU kernels: every kernel x shape family against the written-out formula (a
// naive loop over rows, gather and weighted combine included), forward and gradients; the custom
// backward against finite differences; which kernel can implement which case, and what `auto`
// picks.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include "core/system/autocast_scope.h"
#include "kernels/binding/grouped_swiglu.h"
#include "kernels/binding/pass_pool.h"
#include "kernels/binding/weight_casts.h"
#include "kernels/cpu/grouped_swiglu_cpu.h"
#include "kernels/cpu/swiglu_rows.h"
#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/kernels/grouped_swiglu.h"

namespace moelab::kernels {
namespace {

// out[t] = sum over rows r with token[r] = t of weight[r] (SiLU(x_t Wg_e) * (x_t Wu_e)) Wo_e, e the
// expert of row r: one row at a time.
at::Tensor naive_grouped(const at::Tensor& x, const at::Tensor& token, const at::Tensor& weight,
                         const at::Tensor& w_in, const at::Tensor& w_out,
                         const std::vector<std::int64_t>& counts) {
    const std::int64_t d_ff = w_out.size(1);
    at::Tensor out = at::zeros_like(x);
    std::int64_t r = 0;
    for (std::size_t e = 0; e < counts.size(); ++e) {
        for (std::int64_t i = 0; i < counts[e]; ++i, ++r) {
            const std::int64_t t = token[r].item<std::int64_t>();
            const at::Tensor h = at::matmul(x[t], w_in[e]);
            const at::Tensor gate = h.narrow(0, 0, d_ff), up = h.narrow(0, d_ff, d_ff);
            const at::Tensor a = gate * at::sigmoid(gate) * up;
            out = out.index_add(0, token.narrow(0, r, 1),
                                (weight[r] * at::matmul(a, w_out[e])).unsqueeze(0));
        }
    }
    return out;
}

RoutedRows rows_of(const at::Tensor& token, const at::Tensor& weight,
                   const std::vector<std::int64_t>& counts) {
    return {token, weight, group_ends_of(counts, at::kCPU)};
}

// A routing plan for `counts`: every row reads a random token of `tokens`.
at::Tensor random_tokens(std::int64_t rows, std::int64_t tokens, at::Generator& gen) {
    return at::randint(tokens, {rows}, gen, at::TensorOptions().dtype(at::kLong));
}

struct Shape {
    const char* name;
    std::int64_t tokens, d_model, d_ff;
    std::vector<std::int64_t> counts;  // rows per expert
};

void PrintTo(const Shape& s, std::ostream* out) { *out << s.name; }

const Shape kShapes[] = {
    {"some_experts_empty", 6, 8, 6, {3, 0, 5, 0, 2}},
    {"one_expert_gets_every_row", 9, 8, 6, {0, 0, 9, 0}},
    {"a_single_expert", 4, 8, 6, {7}},
    {"rows_fewer_than_experts", 5, 8, 6, {1, 0, 0, 1, 0, 0, 0, 0}},
    {"no_rows_at_all", 3, 8, 6, {0, 0, 0}},
    {"odd_sizes", 7, 13, 7, {5, 1, 11}},
};

// Every row of the kernel table, so that a kernel added there is tested here.
std::vector<std::string> kernel_names() {
    std::vector<std::string> names;
    for (const GroupedSwigluKernel& kernel : grouped_swiglu_kernels()) {
        names.emplace_back(kernel.name);
    }
    return names;
}

class EveryKernel : public ::testing::TestWithParam<std::tuple<std::string, Shape>> {};

TEST_P(EveryKernel, MatchesTheNaiveLoopForwardAndBackward) {
    const auto& [name, shape] = GetParam();
    const GroupedSwigluKernel* kernel = find_grouped_swiglu_kernel(name);
    ASSERT_NE(kernel, nullptr);
    const std::int64_t experts = static_cast<std::int64_t>(shape.counts.size());
    const std::int64_t n = std::accumulate(shape.counts.begin(), shape.counts.end(), 0L);
    at::Generator gen = at::detail::createCPUGenerator(17);
    const at::Tensor x =
        at::randn({shape.tokens, shape.d_model}, gen, at::kDouble).requires_grad_();
    const at::Tensor token = random_tokens(n, shape.tokens, gen);
    const at::Tensor weight = at::rand({n}, gen, at::kDouble).requires_grad_();
    const at::Tensor w_in =
        (0.4 * at::randn({experts, shape.d_model, 2 * shape.d_ff}, gen, at::kDouble))
            .requires_grad_();
    const at::Tensor w_out =
        (0.4 * at::randn({experts, shape.d_ff, shape.d_model}, gen, at::kDouble)).requires_grad_();
    const at::Tensor probe = at::randn({shape.tokens, shape.d_model}, gen, at::kDouble);

    const Verdict verdict = kernel->can_implement(describe_grouped_swiglu(x, w_in, w_out));
    if (!verdict.ok) GTEST_SKIP() << name << " cannot run float64 on the CPU: " << verdict.reason;
    const at::Tensor got =
        run_grouped_swiglu(*kernel, x, rows_of(token, weight, shape.counts), w_in, w_out);
    const at::Tensor expected = naive_grouped(x, token, weight, w_in, w_out, shape.counts);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_TRUE(at::allclose(got, expected, 1e-10, 1e-12));
    if (n == 0) return;  // nothing to differentiate

    const std::vector<at::Tensor> inputs = {x, weight, w_in, w_out};
    const auto got_grads = torch::autograd::grad({(got * probe).sum()}, inputs);
    const auto expected_grads = torch::autograd::grad({(expected * probe).sum()}, inputs);
    const char* names[] = {"x", "weight", "w_in", "w_out"};
    for (int i = 0; i < 4; ++i) {
        // An expert without rows has a zero gradient, not an undefined one.
        ASSERT_TRUE(got_grads[i].defined()) << names[i];
        EXPECT_TRUE(at::allclose(got_grads[i], expected_grads[i], 1e-10, 1e-12)) << names[i];
    }
}

INSTANTIATE_TEST_SUITE_P(Kernels, EveryKernel,
                         ::testing::Combine(::testing::ValuesIn(kernel_names()),
                                            ::testing::ValuesIn(kShapes)),
                         [](const auto& info) {
                             return std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
                         });

// Rows after the last group (empty slots, capacity drops) are not run: the result and the
// gradients equal those of the routed rows alone, and the ignored rows' weights get zero gradient.
TEST(GroupedSwiglu, RowsAfterTheLastGroupAreIgnored) {
    at::Generator gen = at::detail::createCPUGenerator(29);
    const std::vector<std::int64_t> counts = {2, 0, 3};
    const at::Tensor x = at::randn({4, 6}, gen, at::kDouble).requires_grad_();
    const at::Tensor token =
        at::tensor({1, 3, 0, 1, 2, 3, 0}, at::TensorOptions().dtype(at::kLong));
    const at::Tensor weight = at::rand({7}, gen, at::kDouble).requires_grad_();
    const at::Tensor w_in = 0.4 * at::randn({3, 6, 8}, gen, at::kDouble);
    const at::Tensor w_out = 0.4 * at::randn({3, 4, 6}, gen, at::kDouble);
    const at::Tensor expected =
        naive_grouped(x, token.narrow(0, 0, 5), weight.narrow(0, 0, 5), w_in, w_out, counts);
    for (const GroupedSwigluKernel& kernel : grouped_swiglu_kernels()) {
        if (!kernel.can_implement(describe_grouped_swiglu(x, w_in, w_out)).ok) continue;
        const at::Tensor got =
            run_grouped_swiglu(kernel, x, rows_of(token, weight, counts), w_in, w_out);
        EXPECT_TRUE(at::allclose(got, expected, 1e-10, 1e-12)) << kernel.name;
        const at::Tensor grad_weight = torch::autograd::grad({got.sum()}, {weight})[0];
        EXPECT_EQ(grad_weight.narrow(0, 5, 2).abs().sum().item<double>(), 0.0) << kernel.name;
    }
}

// Float32, the dtype of training on the CPU: kernels agree with the float64 loop to fp32 rounding.
TEST(GroupedSwiglu, Float32MatchesTheFloat64LoopToRounding) {
    at::Generator gen = at::detail::createCPUGenerator(5);
    const std::vector<std::int64_t> counts = {40, 0, 25, 63};
    const at::Tensor x = at::randn({64, 32}, gen);
    const at::Tensor token = random_tokens(128, 64, gen);
    const at::Tensor weight = at::rand({128}, gen);
    const at::Tensor w_in = 0.2 * at::randn({4, 32, 96}, gen);
    const at::Tensor w_out = 0.2 * at::randn({4, 48, 32}, gen);
    const at::Tensor expected = naive_grouped(x.to(at::kDouble), token, weight.to(at::kDouble),
                                              w_in.to(at::kDouble), w_out.to(at::kDouble), counts);
    for (const GroupedSwigluKernel& kernel : grouped_swiglu_kernels()) {
        if (!kernel.can_implement(describe_grouped_swiglu(x, w_in, w_out)).ok) continue;
        const at::Tensor got =
            run_grouped_swiglu(kernel, x, rows_of(token, weight, counts), w_in, w_out);
        EXPECT_LT((got.to(at::kDouble) - expected).abs().max().item<double>(), 1e-4) << kernel.name;
    }
}

// The float32 elementwise pass (its own vectorised exp) against the float64 formula, over gates
// from far negative to far positive, where the sigmoid saturates.
TEST(GroupedSwiglu, Float32SwigluRowsMatchTheFormula) {
    const std::int64_t d_ff = 1001;
    std::vector<float> pre(2 * d_ff), act(d_ff), grad_act(d_ff), grad_pre(2 * d_ff);
    const float weight = 0.75f;
    for (std::int64_t j = 0; j < d_ff; ++j) {
        pre[j] = -100.0f + 0.2f * static_cast<float>(j);        // gate
        pre[d_ff + j] = 1.5f - 0.003f * static_cast<float>(j);  // up
        grad_act[j] = 0.5f + 0.001f * static_cast<float>(j);
    }
    float grad_weight = 0;
    cpu::swiglu_rows(pre.data(), &weight, act.data(), 0, 1, d_ff);
    cpu::swiglu_rows_backward(pre.data(), grad_act.data(), &weight, grad_pre.data(), &grad_weight,
                              0, 1, d_ff);
    double dot = 0;
    for (std::int64_t j = 0; j < d_ff; ++j) {
        const double g = pre[j], u = pre[d_ff + j];
        const double s = 1 / (1 + std::exp(-g));
        const double silu = g * s;
        const double da = grad_act[j];
        dot += da * silu * u;
        // Relative to the size of the terms: float32 rounding of a few operations.
        auto near = [](double got, double want) {
            return std::abs(got - want) <= 1e-6 * (1 + std::abs(want));
        };
        EXPECT_PRED2(near, act[j], weight * silu * u) << "gate " << g;
        EXPECT_PRED2(near, grad_pre[j], weight * da * u * s * (1 + g * (1 - s))) << "gate " << g;
        EXPECT_PRED2(near, grad_pre[d_ff + j], weight * da * silu) << "gate " << g;
    }
    EXPECT_NEAR(grad_weight, dot, 1e-5 * std::abs(dot));
}

// The combine adds rows in row order however the passes are split: outputs and gradients are the
// same bits with the passes in one chunk and in several. With the experts side by side (an even
// split of rows; Note [Experts side by side]) each expert's GEMMs run on one thread, and they give
// the same bits on whichever thread and with any number of threads; against the experts in turn,
// whose GEMMs use the BLAS's threads, they may differ in the last bits as the BLAS's own results do
// between its thread counts.
TEST(GroupedSwiglu, GroupedKernelGivesTheSameBitsForAnySplitOfItsPasses) {
    for (const std::vector<std::int64_t>& counts :
         {std::vector<std::int64_t>{300, 10, 0, 202},
          std::vector<std::int64_t>{140, 120, 130, 122}}) {
        std::vector<std::int64_t> offsets(counts.size() + 1, 0);
        std::partial_sum(counts.begin(), counts.end(), offsets.begin() + 1);
        const bool even = counts[0] == 140;
        EXPECT_EQ(cpu::schedule_experts(offsets.data(), 4, 2).side_by_side, even);
        at::Generator gen = at::detail::createCPUGenerator(23);
        const at::Tensor x = at::randn({256, 96}, gen).requires_grad_();
        const at::Tensor token = random_tokens(512, 256, gen);
        const at::Tensor weight = at::rand({512}, gen).requires_grad_();
        const at::Tensor w_in = (0.2 * at::randn({4, 96, 160}, gen)).requires_grad_();
        const at::Tensor w_out = (0.2 * at::randn({4, 80, 96}, gen)).requires_grad_();
        const GroupedSwigluKernel& grouped = *find_grouped_swiglu_kernel("grouped");
        std::vector<std::vector<at::Tensor>> runs;
        for (int parts : {1, 2, 3}) {
            binding::limit_pass_parts(parts);
            const at::Tensor y =
                run_grouped_swiglu(grouped, x, rows_of(token, weight, counts), w_in, w_out);
            auto grads = torch::autograd::grad({(y * y).sum()}, {x, weight, w_in, w_out});
            grads.push_back(y.detach());
            runs.push_back(grads);
        }
        binding::limit_pass_parts(0);
        // runs[0]: one chunk, so the experts in turn; runs[1] and [2]: two and three chunks.
        for (std::size_t i = 0; i < runs[0].size(); ++i) {
            const std::string what =
                std::string(even ? "even" : "uneven") + " tensor " + std::to_string(i);
            EXPECT_TRUE(at::equal(runs[1][i], runs[2][i])) << what;
            if (even) {
                // Float32 rounding of a different order of sums: relative to the tensor's scale.
                const double scale = runs[0][i].abs().max().item<double>();
                EXPECT_LE((runs[0][i] - runs[1][i]).abs().max().item<double>(), 1e-5 * scale)
                    << what;
            } else {
                EXPECT_TRUE(at::equal(runs[0][i], runs[1][i])) << what;
            }
        }
    }
}

// Hand-worked: rows per expert 5, 0, 9, 5, 1 (20 in all). Largest first, ties by index: 2, 0, 3,
// 4, 1. On two threads: 9 | 5, then 5 joins the 5 (10) and 1 the 9 (10): the busiest works 10
// rows, an even share, so side by side. On three: 9 | 5 | 5, then 1 joins a 5: the busiest works
// 9 rows against an even 6.67, so in turn. One expert with every row, or one thread: in turn.
TEST(GroupedSwiglu, ExpertsRunSideBySideWhenTheirRowsShareOutEvenly) {
    const std::vector<std::int64_t> offsets = {0, 5, 5, 14, 19, 20};
    const cpu::ExpertSchedule two = cpu::schedule_experts(offsets.data(), 5, 2);
    EXPECT_EQ(two.order, (std::vector<std::int64_t>{2, 0, 3, 4, 1}));
    EXPECT_TRUE(two.side_by_side);
    EXPECT_FALSE(cpu::schedule_experts(offsets.data(), 5, 3).side_by_side);
    EXPECT_FALSE(cpu::schedule_experts(offsets.data(), 5, 1).side_by_side);
    const std::vector<std::int64_t> one_expert = {0, 20, 20};
    EXPECT_FALSE(cpu::schedule_experts(one_expert.data(), 2, 2).side_by_side);
    const std::vector<std::int64_t> none = {0, 0, 0};
    EXPECT_FALSE(cpu::schedule_experts(none.data(), 2, 2).side_by_side);
}

// The pool rethrows what a chunk throws, on whichever thread, and stays usable; a pass started
// inside a pass runs inline instead of waiting for the busy pool.
TEST(PassPool, RethrowsAChunksExceptionAndRunsNestedPassesInline) {
    EXPECT_THROW(binding::run_pass(1000, 1,
                                   [](std::int64_t, std::int64_t end) {
                                       // The last chunk: a worker's wherever there is one.
                                       if (end == 1000) throw std::runtime_error("last chunk");
                                   }),
                 std::runtime_error);
    EXPECT_THROW(binding::run_pass(1000, 1,
                                   [](std::int64_t begin, std::int64_t) {
                                       if (begin == 0) throw std::runtime_error("own chunk");
                                   }),
                 std::runtime_error);
    std::vector<int> hits(1000, 0);
    binding::run_pass(10, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            binding::run_pass(100, 1, [&](std::int64_t b, std::int64_t e) {
                for (std::int64_t j = b; j < e; ++j) ++hits[i * 100 + j];
            });
        }
    });
    EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), 1000);
}

// Finite differences on the grouped kernel's hand-written backward, independent of autograd.
TEST(GroupedSwiglu, CustomBackwardMatchesFiniteDifferences) {
    at::Generator gen = at::detail::createCPUGenerator(11);
    const std::vector<std::int64_t> counts = {3, 0, 2};
    const at::Tensor token = at::tensor({2, 0, 2, 3, 0}, at::TensorOptions().dtype(at::kLong));
    const at::Tensor x = at::randn({4, 4}, gen, at::kDouble).requires_grad_();
    const at::Tensor weight = at::rand({5}, gen, at::kDouble).requires_grad_();
    const at::Tensor w_in = (0.5 * at::randn({3, 4, 6}, gen, at::kDouble)).requires_grad_();
    const at::Tensor w_out = (0.5 * at::randn({3, 3, 4}, gen, at::kDouble)).requires_grad_();
    const at::Tensor probe = at::randn({4, 4}, gen, at::kDouble);
    const GroupedSwigluKernel& grouped = *find_grouped_swiglu_kernel("grouped");
    auto objective = [&](const std::vector<at::Tensor>& in) {
        return (run_grouped_swiglu(grouped, in[0], rows_of(token, in[1], counts), in[2], in[3]) *
                probe)
            .sum();
    };
    const std::vector<at::Tensor> inputs = {x, weight, w_in, w_out};
    const auto grads = torch::autograd::grad({objective(inputs)}, inputs);
    const double eps = 1e-6;
    for (std::size_t which = 0; which < inputs.size(); ++which) {
        const at::Tensor flat = inputs[which].detach().reshape({-1});
        for (std::int64_t i = 0; i < flat.numel(); i += 2) {
            std::vector<at::Tensor> plus, minus;
            for (const at::Tensor& input : inputs) {
                plus.push_back(input.detach().clone());
                minus.push_back(input.detach().clone());
            }
            plus[which].view({-1})[i] += eps;
            minus[which].view({-1})[i] -= eps;
            const double numeric =
                (objective(plus).item<double>() - objective(minus).item<double>()) / (2 * eps);
            EXPECT_NEAR(grads[which].reshape({-1})[i].item<double>(), numeric, 1e-6)
                << "input " << which << " element " << i;
        }
    }
}

TEST(GroupedSwiglu, AutoPicksTheGroupedKernelOnTheCpuAndTheReferenceOnCuda) {
    GroupedSwigluDesc desc{8, 64, 128, ElementType::kFloat32, Backend::kCpu};
    EXPECT_EQ(choose_grouped_swiglu_kernel("auto", desc).kernel->name, "grouped");
    desc.element = ElementType::kBfloat16;  // the grouped kernel computes in float32 or float64
    EXPECT_EQ(choose_grouped_swiglu_kernel("auto", desc).kernel->name, "reference");
    desc.backend = Backend::kCuda;
    desc.element = ElementType::kBfloat16;
    const KernelChoice on_cuda = choose_grouped_swiglu_kernel("auto", desc);
    ASSERT_TRUE(on_cuda.verdict.ok);
    EXPECT_EQ(on_cuda.kernel->name, "reference");

    const KernelChoice forced = choose_grouped_swiglu_kernel("grouped", desc);
    EXPECT_FALSE(forced.verdict.ok);
    EXPECT_NE(forced.verdict.reason.find("CPU only"), std::string::npos) << forced.verdict.reason;

    const KernelChoice unknown = choose_grouped_swiglu_kernel("cutlass", desc);
    EXPECT_EQ(unknown.kernel, nullptr);
    EXPECT_NE(unknown.verdict.reason.find("expected one of auto, grouped, reference"),
              std::string::npos)
        << unknown.verdict.reason;
}

TEST(GroupedSwiglu, GroupedMmSaysWhatItNeeds) {
    const GroupedSwigluKernel& grouped_mm = *find_grouped_swiglu_kernel("grouped_mm");
    GroupedSwigluDesc desc{8, 64, 128, ElementType::kFloat32, Backend::kCpu};
    EXPECT_NE(grouped_mm.can_implement(desc).reason.find("CUDA only"), std::string::npos);
    desc.backend = Backend::kCuda;
    EXPECT_NE(grouped_mm.can_implement(desc).reason.find("LibTorch 2.8"), std::string::npos);
    desc.has_grouped_mm = true;
    desc.cuda_capability = 80;
    EXPECT_NE(grouped_mm.can_implement(desc).reason.find("has 8.0"), std::string::npos);
    desc.cuda_capability = 90;
    EXPECT_NE(grouped_mm.can_implement(desc).reason.find("model.dtype = \"bfloat16\""),
              std::string::npos);
    desc.compute = ElementType::kBfloat16;
    desc.d_ff = 100;
    EXPECT_NE(grouped_mm.can_implement(desc).reason.find("divisible by 8"), std::string::npos);
    desc.d_ff = 128;
    EXPECT_TRUE(grouped_mm.can_implement(desc).ok);
    // Not yet run on a GPU: `auto` keeps to the reference until it has.
    EXPECT_EQ(choose_grouped_swiglu_kernel("auto", desc).kernel->name, "reference");
}

// A bank's weights in bfloat16 are cast once per change of the weights, not per call, and the
// copy passes gradients back to the float32 master like a cast.
TEST(WeightCasts, CastOncePerChangeAndPassGradientsBack) {
    WeightCasts casts;
    const at::Tensor master = at::randn({3, 4}).requires_grad_();
    EXPECT_TRUE(casts.as(master, at::kFloat).is_same(master));  // already that dtype
    const at::Tensor first = casts.as(master, at::kBFloat16);
    const at::Tensor again = casts.as(master, at::kBFloat16);
    EXPECT_EQ(casts.casts(), 1);
    EXPECT_TRUE(at::equal(first, master.detach().to(at::kBFloat16)));
    // Gradient: as through master.to(bfloat16), into float32.
    const at::Tensor probe = at::randn({3, 4}).to(at::kBFloat16);
    const at::Tensor grad = torch::autograd::grad({(again * probe).sum()}, {master})[0];
    const at::Tensor cast_grad =
        torch::autograd::grad({(master.to(at::kBFloat16) * probe).sum()}, {master})[0];
    EXPECT_EQ(grad.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(grad, cast_grad));
    // An optimizer step writes the master in place: the next call casts again.
    {
        at::NoGradGuard no_grad;
        master.add_(1.0);
    }
    const at::Tensor stepped = casts.as(master, at::kBFloat16);
    EXPECT_EQ(casts.casts(), 2);
    EXPECT_TRUE(at::equal(stepped, master.detach().to(at::kBFloat16)));
    // In inference mode (generation) nothing is kept: a copy made there could not be saved for a
    // later training step's backward.
    {
        c10::InferenceMode inference;
        EXPECT_TRUE(at::equal(casts.as(master, at::kBFloat16), master.detach().to(at::kBFloat16)));
        EXPECT_EQ(casts.casts(), 2);
    }
    // Another tensor has its own copy.
    const at::Tensor other = at::randn({2, 2});
    EXPECT_TRUE(at::equal(casts.as(other, at::kBFloat16), other.to(at::kBFloat16)));
    EXPECT_EQ(casts.casts(), 3);
}

TEST(GroupedSwiglu, GroupedCudaSaysWhatItNeeds) {
    const GroupedSwigluKernel& grouped_cuda = *find_grouped_swiglu_kernel("grouped_cuda");
    GroupedSwigluDesc desc{8, 70, 90, ElementType::kFloat32, Backend::kCpu};
    EXPECT_NE(grouped_cuda.can_implement(desc).reason.find("CUDA only"), std::string::npos);
    desc.backend = Backend::kCuda;
    EXPECT_NE(grouped_cuda.can_implement(desc).reason.find("cuda preset"), std::string::npos);
    desc.has_cuda_kernels = true;
    desc.cuda_capability = 75;  // any GPU, any size, float32 or bfloat16
    EXPECT_TRUE(grouped_cuda.can_implement(desc).ok);
    desc.compute = ElementType::kBfloat16;
    EXPECT_TRUE(grouped_cuda.can_implement(desc).ok);
    desc.compute = ElementType::kFloat64;
    EXPECT_NE(grouped_cuda.can_implement(desc).reason.find("float32 or bfloat16"),
              std::string::npos);
    // Not yet run on a GPU: `auto` keeps to the reference until it has.
    desc.compute = ElementType::kFloat32;
    EXPECT_EQ(choose_grouped_swiglu_kernel("auto", desc).kernel->name, "reference");
}

// On a GPU: every kernel that can run the case, under bfloat16 autocast and in float32, against the
// float64 loop on the CPU, forward and gradients, to bfloat16 accuracy (inputs of order 1, d_model
// 64: a few bfloat16 roundings of sums of 64 products) or float32's.
TEST(GroupedSwigluCuda, EveryKernelMatchesTheLoopInBfloat16AndFloat32) {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    at::Generator gen = at::detail::createCPUGenerator(31);
    const std::vector<std::int64_t> counts = {70, 0, 33, 153};
    const std::int64_t rows = 256 + 44;  // 44 unrouted rows after the last group
    const at::Tensor x = at::randn({128, 64}, gen, at::kDouble);
    const at::Tensor token = random_tokens(rows, 128, gen);
    const at::Tensor weight = at::rand({rows}, gen, at::kDouble);
    const at::Tensor w_in = 0.15 * at::randn({4, 64, 96}, gen, at::kDouble);
    const at::Tensor w_out = 0.15 * at::randn({4, 48, 64}, gen, at::kDouble);
    std::vector<at::Tensor> cpu = {x, weight, w_in, w_out};
    for (at::Tensor& t : cpu) t = t.clone().requires_grad_();
    const at::Tensor expected = naive_grouped(cpu[0], token.narrow(0, 0, 256),
                                              cpu[1].narrow(0, 0, 256), cpu[2], cpu[3], counts);
    const at::Tensor probe = at::randn({128, 64}, gen, at::kDouble);
    const auto expected_grads = torch::autograd::grad({(expected * probe).sum()}, cpu);
    for (const bool bfloat16 : {true, false}) {
        for (const GroupedSwigluKernel& kernel : grouped_swiglu_kernels()) {
            std::vector<at::Tensor> gpu;
            for (const at::Tensor& t : {x, weight, w_in, w_out}) {
                gpu.push_back(t.to(at::kFloat).to(at::kCUDA).requires_grad_());
            }
            core::CudaAutocastScope autocast(bfloat16);
            if (!kernel.can_implement(describe_grouped_swiglu(gpu[0], gpu[2], gpu[3])).ok) continue;
            const at::Tensor got = run_grouped_swiglu(
                kernel, gpu[0], {token.to(at::kCUDA), gpu[1], group_ends_of(counts, at::kCUDA)},
                gpu[2], gpu[3]);
            const auto grads =
                torch::autograd::grad({(got.to(at::kDouble).cpu() * probe).sum()}, gpu);
            const double tolerance = bfloat16 ? 0.02 : 1e-4;
            auto close = [tolerance](const at::Tensor& a, const at::Tensor& b) {
                return (a.to(at::kDouble).cpu() - b).abs().max().item<double>() <=
                       tolerance * (1 + b.abs().max().item<double>());
            };
            const char* mode = bfloat16 ? " bfloat16" : " float32";
            EXPECT_TRUE(close(got, expected)) << kernel.name << mode;
            const char* names[] = {"x", "weight", "w_in", "w_out"};
            for (int i = 0; i < 4; ++i) {
                EXPECT_TRUE(close(grads[i], expected_grads[i]))
                    << kernel.name << mode << " " << names[i];
            }
        }
    }
}

TEST(GroupedSwiglu, TheBindingRefusesPlansAndShapesThatDisagree) {
    const at::Tensor x = at::zeros({4, 8});
    const at::Tensor w_in = at::zeros({2, 8, 12});
    const at::Tensor w_out = at::zeros({2, 6, 8});
    const at::Tensor token = at::tensor({0, 1, 3}, at::TensorOptions().dtype(at::kLong));
    const at::Tensor weight = at::ones({3});
    // d_ff 5, but w_in says 6
    EXPECT_THROW(describe_grouped_swiglu(x, w_in, at::zeros({2, 5, 8})), std::invalid_argument);
    for (const GroupedSwigluKernel& kernel : grouped_swiglu_kernels()) {
        // counts sum to 4, more than the 3 rows
        EXPECT_THROW(run_grouped_swiglu(kernel, x, rows_of(token, weight, {1, 3}), w_in, w_out),
                     std::invalid_argument)
            << kernel.name;
        // a weight per row
        EXPECT_THROW(
            run_grouped_swiglu(kernel, x, rows_of(token, at::ones({2}), {1, 2}), w_in, w_out),
            std::invalid_argument)
            << kernel.name;
    }
    // The grouped kernel indexes with raw pointers: a token outside x is refused, not read.
    const at::Tensor outside = at::tensor({0, 4, 1}, at::TensorOptions().dtype(at::kLong));
    EXPECT_THROW(run_grouped_swiglu(*find_grouped_swiglu_kernel("grouped"), x,
                                    rows_of(outside, weight, {1, 2}), w_in, w_out),
                 std::invalid_argument);
}

}  // namespace
}  // namespace moelab::kernels
