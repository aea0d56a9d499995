// Experts sharded over two processes compute what one process holding every expert computes:
// outputs, every gradient (tokens, routing weights, expert weights) and the dispatch statistics,
// dropless and with capacity (Note [Parallel layout]; sharded_expert_bank.h).

#include <gtest/gtest.h>
#include <torch/autograd.h>

#include "core/dist/distributed_job.h"
#include "core/dist/launch_environment.h"
#include "core/moe/host_expert_bank.h"
#include "core/moe/sharded_expert_bank.h"
#include "moelab/sdk/error.h"
#include "support/rank_processes.h"

namespace moelab::core {
namespace {

constexpr std::int64_t kTokens = 12, kSlots = 2, kExperts = 4, kModel = 8, kFf = 6;

struct Routing {
    at::Tensor x, indices, weights, grad_out;
};

enum class Skew { kNone, kFirstChoiceExpert0, kOnlyFirstProcess };

// The whole batch, the same in every process.
Routing whole_batch(Skew skew) {
    at::Generator generator = at::detail::createCPUGenerator(123);
    Routing r;
    r.x = at::randn({kTokens, kModel}, generator);
    r.indices = at::randint(-1, kExperts, {kTokens, kSlots}, generator);
    if (skew == Skew::kFirstChoiceExpert0) r.indices.select(1, 0).fill_(0);
    // Experts 0 and 1 only, both in process 0: process 1's experts receive no rows.
    if (skew == Skew::kOnlyFirstProcess) r.indices = r.indices.remainder(2);
    r.weights = at::rand({kTokens, kSlots}, generator);
    r.grad_out = at::randn({kTokens, kModel}, generator);
    return r;
}

void check_against_one_process(double capacity_factor, bool keep_highest_weight, Skew skew,
                               const std::string& kernel = "auto") {
    const auto job = DistributedJob::connect(*launch_environment(), Transport::kGloo);
    const std::shared_ptr<ProcessGroup> group = job->world();
    const int me = group->rank();
    const sdk::ExpertBankSpec spec{"experts", kExperts, kModel, kFf, -1.0};
    const DispatchPolicy policy{capacity_factor, keep_highest_weight, kernel};
    HostExpertBank whole(spec, policy, 0.3, 0.2, 11);
    ShardedExpertBank part(spec, policy, 0.3, 0.2, 11, group);
    const ExpertShard shard = part.shard();
    EXPECT_EQ(shard.first, me * 2);
    EXPECT_EQ(shard.count, 2);
    // Initialisation is seeded per global expert: a shard holds exactly those experts' weights.
    EXPECT_TRUE(at::equal(part.w_in, whole.w_in.narrow(0, shard.first, shard.count)));
    EXPECT_TRUE(at::equal(part.w_out, whole.w_out.narrow(0, shard.first, shard.count)));

    const Routing batch = whole_batch(skew);
    const at::Tensor x_all = batch.x.clone().requires_grad_(true);
    const at::Tensor w_all = batch.weights.clone().requires_grad_(true);
    const at::Tensor reference = whole.mix(x_all, batch.indices, w_all);
    (reference * batch.grad_out).sum().backward();

    const std::int64_t half = kTokens / 2, first = me * half;
    const at::Tensor x = batch.x.narrow(0, first, half).clone().requires_grad_(true);
    const at::Tensor w = batch.weights.narrow(0, first, half).clone().requires_grad_(true);
    const at::Tensor out = part.mix(x, batch.indices.narrow(0, first, half), w);
    (out * batch.grad_out.narrow(0, first, half)).sum().backward();

    const double rtol = 1e-5, atol = 1e-6;
    EXPECT_TRUE(at::allclose(out, reference.narrow(0, first, half), rtol, atol));
    EXPECT_TRUE(at::allclose(x.grad(), x_all.grad().narrow(0, first, half), rtol, atol));
    EXPECT_TRUE(at::allclose(w.grad(), w_all.grad().narrow(0, first, half), rtol, atol));
    // The expert gradients of the whole batch: every process's rows reached these experts.
    EXPECT_TRUE(at::allclose(part.w_in.grad(),
                             whole.w_in.grad().narrow(0, shard.first, shard.count), rtol, atol));
    EXPECT_TRUE(at::allclose(part.w_out.grad(),
                             whole.w_out.grad().narrow(0, shard.first, shard.count), rtol, atol));

    // Statistics: summed over the processes, the one-process record.
    const DispatchRecord expected = whole.take_dispatches().at(0);
    DispatchRecord mine = part.take_dispatches().at(0);
    at::Tensor per_expert = mine.tokens_per_expert.clone();
    at::Tensor totals = at::stack({mine.assignments, mine.dropped});
    group->all_reduce_sum(per_expert);
    group->all_reduce_sum(totals);
    EXPECT_TRUE(at::equal(per_expert, expected.tokens_per_expert));
    EXPECT_EQ(totals[0].item<std::int64_t>(), expected.assignments.item<std::int64_t>());
    EXPECT_EQ(totals[1].item<std::int64_t>(), expected.dropped.item<std::int64_t>());
    if (capacity_factor > 0) EXPECT_GT(expected.dropped.item<std::int64_t>(), 0);
}

TEST(ShardedExpertBank, DroplessMatchesOneProcess) {
    if (!tests::in_rank_process(2)) return;
    check_against_one_process(0.0, true, Skew::kNone);
}

TEST(ShardedExpertBank, CapacityKeepsTheHeaviestOfTheWholeBatch) {
    if (!tests::in_rank_process(2)) return;
    check_against_one_process(0.75, true, Skew::kFirstChoiceExpert0);
}

TEST(ShardedExpertBank, CapacityKeepsTheEarliestTokensOfTheWholeBatch) {
    if (!tests::in_rank_process(2)) return;
    check_against_one_process(0.75, false, Skew::kFirstChoiceExpert0);
}

TEST(ShardedExpertBank, OneExpertTakesEveryToken) {
    if (!tests::in_rank_process(2)) return;
    // Expert 0 lives in process 0: process 1's own experts receive only second choices.
    check_against_one_process(0.0, true, Skew::kFirstChoiceExpert0);
}

// The reference kernel returns a fresh zero tensor for no rows; the backward exchanges must still
// run in every process (else process 0 waits for process 1 forever).
TEST(ShardedExpertBank, AProcessWhoseExpertsGetNoRowsStillTakesPartInBackward) {
    if (!tests::in_rank_process(2, 60)) return;
    check_against_one_process(0.0, true, Skew::kOnlyFirstProcess, "reference");
}

TEST(ShardedExpertBank, RefusesRunAllAndUnevenShares) {
    if (!tests::in_rank_process(2)) return;
    const auto job = DistributedJob::connect(*launch_environment(), Transport::kGloo);
    ShardedExpertBank part({"experts", 4, 8, 6, -1.0}, DispatchPolicy{}, 0.3, 0.2, 1, job->world());
    try {
        part.run_all(at::zeros({3, 8}));
        ADD_FAILURE() << "run_all on a sharded bank must throw";
    } catch (const sdk::Error& error) {
        EXPECT_NE(std::string(error.what()).find("parallel.sharded_experts"), std::string::npos);
    }
    EXPECT_THROW(
        ShardedExpertBank({"experts", 3, 8, 6, -1.0}, DispatchPolicy{}, 0.3, 0.2, 1, job->world()),
        sdk::Error);
}

}  // namespace
}  // namespace moelab::core
