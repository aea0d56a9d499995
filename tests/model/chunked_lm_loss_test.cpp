// core/model/chunked_lm_loss.h against the LM head and cross-entropy written as two LibTorch
// operators in float64 (at::linear, at::cross_entropy_loss), summed and mean, with ignored
// targets, at chunk sizes of one row, of rows that do not divide the tokens, and of all of them:
// the loss and the gradients of the hidden states and of the head's weight.

#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "core/model/chunked_lm_loss.h"
#include "moelab/sdk/init.h"

namespace moelab::core {
namespace {

TEST(ChunkedLmLoss, MatchesTheHeadAndCrossEntropyWrittenAsTwoOperators) {
    constexpr std::int64_t kTokens = 10, kModel = 6, kVocab = 13;
    at::Generator generator = sdk::make_generator(21);
    const at::Tensor hidden = at::randn({kTokens, kModel}, generator);
    const at::Tensor weight = at::randn({kVocab, kModel}, generator);
    at::Tensor targets = at::randint(0, kVocab, {kTokens}, generator);
    targets[2] = kIgnoredTarget;
    targets[7] = kIgnoredTarget;
    for (const bool sum : {true, false}) {
        for (const std::int64_t chunk : {1, 3, 64}) {
            const at::Tensor h = hidden.clone().requires_grad_(true);
            const at::Tensor w = weight.clone().requires_grad_(true);
            const at::Tensor h64 = hidden.to(at::kDouble).requires_grad_(true);
            const at::Tensor w64 = weight.to(at::kDouble).requires_grad_(true);
            const at::Tensor loss = chunked_lm_loss(h, w, targets, sum, chunk);
            const at::Tensor expected = at::cross_entropy_loss(
                at::linear(h64, w64), targets, {}, sum ? at::Reduction::Sum : at::Reduction::Mean,
                kIgnoredTarget);
            EXPECT_NEAR(loss.item<double>(), expected.item<double>(), 1e-5)
                << "sum " << sum << " chunk " << chunk;
            // An upstream gradient other than 1, as under gradient accumulation.
            (loss * 0.25).backward();
            (expected * 0.25).backward();
            EXPECT_LT((h.grad().to(at::kDouble) - h64.grad()).abs().max().item<double>(), 1e-6);
            EXPECT_LT((w.grad().to(at::kDouble) - w64.grad()).abs().max().item<double>(), 1e-6);
            // Nothing flows from the ignored rows.
            EXPECT_EQ(h.grad()[2].abs().max().item<double>(), 0);
        }
    }
}

TEST(ChunkedLmLoss, WithoutGradientsGivesTheSameLossAndTheMeanOfNothingIsNaN) {
    at::Generator generator = sdk::make_generator(4);
    const at::Tensor hidden = at::randn({5, 4}, generator);
    const at::Tensor weight = at::randn({7, 4}, generator).requires_grad_(true);
    const at::Tensor targets = at::tensor({1, 0, 6, 3, 2}, at::kLong);
    const double with_graph = chunked_lm_loss(hidden, weight, targets, false, 2).item<double>();
    torch::NoGradGuard no_grad;
    EXPECT_DOUBLE_EQ(chunked_lm_loss(hidden, weight, targets, false, 2).item<double>(), with_graph);
    const at::Tensor none = at::full({5}, kIgnoredTarget, at::kLong);
    EXPECT_TRUE(std::isnan(chunked_lm_loss(hidden, weight, none, false).item<double>()));
    EXPECT_EQ(chunked_lm_loss(hidden, weight, none, true).item<double>(), 0);
    EXPECT_THROW(chunked_lm_loss(hidden, weight.t(), targets, true), std::invalid_argument);
}

// The mean over no counted target is NaN as a value, but nothing flows back from it: zero
// gradients, as at::cross_entropy_loss gives.
TEST(ChunkedLmLoss, TheMeanOfNothingHasZeroGradients) {
    at::Generator generator = sdk::make_generator(6);
    const at::Tensor hidden = at::randn({4, 3}, generator).requires_grad_(true);
    const at::Tensor weight = at::randn({5, 3}, generator).requires_grad_(true);
    const at::Tensor none = at::full({4}, kIgnoredTarget, at::kLong);
    chunked_lm_loss(hidden, weight, none, false).backward();
    EXPECT_EQ(hidden.grad().abs().max().item<double>(), 0);
    EXPECT_EQ(weight.grad().abs().max().item<double>(), 0);
}

}  // namespace
}  // namespace moelab::core
