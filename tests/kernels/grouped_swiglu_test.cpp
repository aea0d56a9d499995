// The grouped SwiGLU kernels: every kernel x shape family against the written-out formula (a
// naive loop over rows), forward and gradients; the custom backward against finite differences;
// which kernel can implement which case, and what `auto` picks.

#include <gtest/gtest.h>

#include <numeric>

#include <torch/autograd.h>

#include "kernels/binding/grouped_swiglu.h"
#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/kernels/grouped_swiglu.h"

namespace moelab::kernels {
namespace {

// y_r = (SiLU(x_r Wg_e) * (x_r Wu_e)) Wo_e for the expert e of row r, one row at a time.
at::Tensor naive_grouped(const at::Tensor& rows, const at::Tensor& w_in, const at::Tensor& w_out,
                         const std::vector<std::int64_t>& counts) {
    const std::int64_t d_ff = w_out.size(1);
    at::Tensor out = at::zeros({rows.size(0), w_out.size(2)}, rows.options());
    std::int64_t r = 0;
    for (std::size_t e = 0; e < counts.size(); ++e) {
        for (std::int64_t i = 0; i < counts[e]; ++i, ++r) {
            const at::Tensor h = at::matmul(rows[r], w_in[e]);
            const at::Tensor gate = h.narrow(0, 0, d_ff), up = h.narrow(0, d_ff, d_ff);
            const at::Tensor a = gate * at::sigmoid(gate) * up;
            out[r] = at::matmul(a, w_out[e]);
        }
    }
    return out;
}

struct Shape {
    const char* name;
    std::int64_t d_model, d_ff;
    std::vector<std::int64_t> counts;  // rows per expert
};

void PrintTo(const Shape& s, std::ostream* out) { *out << s.name; }

const Shape kShapes[] = {
    {"some_experts_empty", 8, 6, {3, 0, 5, 0, 2}},
    {"one_expert_gets_every_row", 8, 6, {0, 0, 9, 0}},
    {"a_single_expert", 8, 6, {7}},
    {"rows_fewer_than_experts", 8, 6, {1, 0, 0, 1, 0, 0, 0, 0}},
    {"no_rows_at_all", 8, 6, {0, 0, 0}},
    {"odd_sizes", 13, 7, {5, 1, 11}},
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
    const at::Tensor rows = at::randn({n, shape.d_model}, gen, at::kDouble).requires_grad_();
    const at::Tensor w_in =
        (0.4 * at::randn({experts, shape.d_model, 2 * shape.d_ff}, gen, at::kDouble))
            .requires_grad_();
    const at::Tensor w_out =
        (0.4 * at::randn({experts, shape.d_ff, shape.d_model}, gen, at::kDouble)).requires_grad_();
    const at::Tensor probe = at::randn({n, shape.d_model}, gen, at::kDouble);

    const at::Tensor got = run_grouped_swiglu(*kernel, rows, w_in, w_out, shape.counts);
    const at::Tensor expected = naive_grouped(rows, w_in, w_out, shape.counts);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_TRUE(at::allclose(got, expected, 1e-10, 1e-12));
    if (n == 0) return;  // nothing to differentiate

    const auto got_grads = torch::autograd::grad({(got * probe).sum()}, {rows, w_in, w_out});
    const auto expected_grads =
        torch::autograd::grad({(expected * probe).sum()}, {rows, w_in, w_out});
    const char* names[] = {"rows", "w_in", "w_out"};
    for (int i = 0; i < 3; ++i) {
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

// Float32, the dtype of training on the CPU: kernels agree with the float64 loop to fp32 rounding.
TEST(GroupedSwiglu, Float32MatchesTheFloat64LoopToRounding) {
    at::Generator gen = at::detail::createCPUGenerator(5);
    const std::vector<std::int64_t> counts = {40, 0, 25, 63};
    const at::Tensor rows = at::randn({128, 32}, gen);
    const at::Tensor w_in = 0.2 * at::randn({4, 32, 96}, gen);
    const at::Tensor w_out = 0.2 * at::randn({4, 48, 32}, gen);
    const at::Tensor expected =
        naive_grouped(rows.to(at::kDouble), w_in.to(at::kDouble), w_out.to(at::kDouble), counts);
    for (const GroupedSwigluKernel& kernel : grouped_swiglu_kernels()) {
        const at::Tensor got = run_grouped_swiglu(kernel, rows, w_in, w_out, counts);
        EXPECT_LT((got.to(at::kDouble) - expected).abs().max().item<double>(), 1e-4) << kernel.name;
    }
}

// Finite differences on the grouped kernel's hand-written backward, independent of autograd.
TEST(GroupedSwiglu, CustomBackwardMatchesFiniteDifferences) {
    at::Generator gen = at::detail::createCPUGenerator(11);
    const std::vector<std::int64_t> counts = {3, 0, 2};
    const at::Tensor rows = at::randn({5, 4}, gen, at::kDouble).requires_grad_();
    const at::Tensor w_in = (0.5 * at::randn({3, 4, 6}, gen, at::kDouble)).requires_grad_();
    const at::Tensor w_out = (0.5 * at::randn({3, 3, 4}, gen, at::kDouble)).requires_grad_();
    const at::Tensor probe = at::randn({5, 4}, gen, at::kDouble);
    const GroupedSwigluKernel& grouped = *find_grouped_swiglu_kernel("grouped");
    auto objective = [&](const at::Tensor& r, const at::Tensor& a, const at::Tensor& b) {
        return (run_grouped_swiglu(grouped, r, a, b, counts) * probe).sum();
    };
    const auto grads = torch::autograd::grad({objective(rows, w_in, w_out)}, {rows, w_in, w_out});
    const double eps = 1e-6;
    const std::vector<at::Tensor> inputs = {rows, w_in, w_out};
    for (int which = 0; which < 3; ++which) {
        const at::Tensor flat = inputs[which].detach().reshape({-1});
        for (std::int64_t i = 0; i < flat.numel(); i += 3) {
            std::vector<at::Tensor> plus, minus;
            for (int k = 0; k < 3; ++k) {
                plus.push_back(inputs[k].detach().clone());
                minus.push_back(inputs[k].detach().clone());
            }
            plus[which].view({-1})[i] += eps;
            minus[which].view({-1})[i] -= eps;
            const double numeric = (objective(plus[0], plus[1], plus[2]).item<double>() -
                                    objective(minus[0], minus[1], minus[2]).item<double>()) /
                                   (2 * eps);
            EXPECT_NEAR(grads[which].reshape({-1})[i].item<double>(), numeric, 1e-6)
                << "input " << which << " element " << i;
        }
    }
}

TEST(GroupedSwiglu, AutoPicksTheGroupedKernelOnTheCpuAndTheReferenceOnCuda) {
    GroupedSwigluDesc desc{8, 64, 128, ElementType::kFloat32, Backend::kCpu};
    EXPECT_EQ(choose_grouped_swiglu_kernel("auto", desc).kernel->name, "grouped");
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

TEST(GroupedSwiglu, TheBindingRefusesShapesThatDisagree) {
    const at::Tensor rows = at::zeros({4, 8});
    const at::Tensor w_in = at::zeros({2, 8, 12});
    const at::Tensor w_out = at::zeros({2, 5, 8});  // d_ff 5, but w_in says 6
    EXPECT_THROW(describe_grouped_swiglu(rows, w_in, w_out), std::invalid_argument);
    EXPECT_THROW(run_grouped_swiglu(*find_grouped_swiglu_kernel("reference"), rows, w_in,
                                    at::zeros({2, 6, 8}), {1, 2}),
                 std::invalid_argument);  // counts sum to 3, not 4
}

}  // namespace
}  // namespace moelab::kernels
