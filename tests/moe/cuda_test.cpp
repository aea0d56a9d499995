// The MoE path on CUDA (skipped without a device): the expert bank on the GPU equals the CPU
// oracle, bf16 autocast keeps routing in fp32, and a model trains a few steps in bf16.

#include <gtest/gtest.h>

#include <torch/autograd.h>
#include <torch/cuda.h>

#include "core/moe/host_expert_bank.h"
#include "core/moe/standard_block.h"
#include "core/system/autocast_scope.h"
#include "naive_moe.h"

namespace moelab::core {
namespace {

#define MOELAB_REQUIRE_CUDA() \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

TEST(Cuda, ExpertBankMatchesTheCpuOracleWithGradients) {
    MOELAB_REQUIRE_CUDA();
    at::Generator gen = at::detail::createCPUGenerator(5);
    HostExpertBank bank({"experts", 6, 32, 24, 0.0}, DispatchPolicy{}, 0.1, 0.1, 3);
    const at::Tensor x_cpu = at::randn({100, 32}, gen);
    const at::Tensor indices = std::get<1>(at::rand({100, 6}, gen).topk(2, -1));
    const at::Tensor weights_cpu = at::rand({100, 2}, gen);
    const at::Tensor ref =
        tests::naive_mix(x_cpu.to(at::kDouble), indices, weights_cpu.to(at::kDouble),
                         bank.w_in.to(at::kDouble), bank.w_out.to(at::kDouble));
    bank.to(at::kCUDA);
    const at::Tensor x = x_cpu.to(at::kCUDA).requires_grad_();
    const at::Tensor out = bank.mix(x, indices.to(at::kCUDA), weights_cpu.to(at::kCUDA));
    EXPECT_TRUE(at::allclose(out.cpu().to(at::kDouble), ref, 1e-4, 1e-5));
    out.sum().backward();
    EXPECT_TRUE(x.grad().defined());
    EXPECT_TRUE(bank.w_in.grad().defined());
}

class SpyRouter : public sdk::Router {
  public:
    sdk::RoutingDecision route(const sdk::RouterInput& input) override {
        logits_dtype = at::matmul(input.hidden, weight.t()).scalar_type();
        sdk::RoutingDecision d;
        d.probs = at::matmul(input.hidden, weight.t()).softmax(-1);
        std::tie(d.combine_weights, d.expert_indices) = d.probs.topk(2, -1);
        return d;
    }
    at::Tensor weight = at::randn({4, 16}, at::kCUDA);
    at::ScalarType logits_dtype = at::kByte;
};

TEST(Cuda, Bf16AutocastKeepsRoutingInFp32AndExpertsInBf16) {
    MOELAB_REQUIRE_CUDA();
    auto spy = std::make_shared<SpyRouter>();
    auto bank = std::make_shared<HostExpertBank>(sdk::ExpertBankSpec{"experts", 4, 16, 8, 0.0},
                                                 DispatchPolicy{}, 0.1, 0.1, 1);
    auto plugin = std::make_shared<PluginInfo>();
    plugin->name = "spy";
    StandardMoeBlock block(spy, plugin, bank, nullptr, 16, 1e-5);
    block.to(at::kCUDA);
    sdk::BlockInput input;
    input.hidden = at::randn({10, 16}, at::kCUDA).requires_grad_();
    input.token_ids = at::zeros({10}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
    sdk::BlockOutput output;
    {
        CudaAutocastScope autocast(true);
        output = block.forward(input);
    }
    EXPECT_EQ(spy->logits_dtype, at::kFloat);
    EXPECT_EQ(output.routing[0].combine_weights.scalar_type(), at::kFloat);
    output.hidden.to(at::kFloat).sum().backward();
    EXPECT_TRUE(input.hidden.grad().defined());
}

}  // namespace
}  // namespace moelab::core
