// The c10d collectives and the differentiable all-to-all, in real processes over Gloo (the test
// binary runs each test again as every rank of a job with a file store: rank_processes.h).

#include <vector>

#include <gtest/gtest.h>
#include <torch/autograd.h>

#include "core/dist/differentiable_all_to_all.h"
#include "core/dist/distributed_job.h"
#include "core/dist/launch_environment.h"
#include "support/rank_processes.h"

namespace moelab::core {
namespace {

using Table = std::vector<std::vector<std::int64_t>>;  // rows[from][to]

std::shared_ptr<DistributedJob> join() {
    return DistributedJob::connect(*launch_environment(), Transport::kGloo);
}

// Row j of process p's input: (1000 p + 10 j, 1000 p + 10 j + 1).
at::Tensor input_of(int process, std::int64_t rows) {
    const at::Tensor j = at::arange(rows, at::kDouble).unsqueeze(1) * 10 + 1000.0 * process;
    return at::cat({j, j + 1}, 1).to(at::kFloat);
}

// The exchange worked out row by row: for every receiving process d, the rows every process p
// sends it, in p's order; and the loss weights C_d[i] = ((d + 1) (i + 1), (d + 1) (i + 1) + 0.5).
void check_exchange(const Table& table) {
    const auto job = join();
    ProcessGroup& group = *job->world();
    const int me = group.rank();
    const int n = group.size();
    std::vector<std::int64_t> send = table[me], receive;
    for (int p = 0; p < n; ++p) receive.push_back(table[p][me]);
    std::int64_t rows = 0;
    for (std::int64_t r : send) rows += r;

    const at::Tensor x = input_of(me, rows).requires_grad_(true);
    const at::Tensor received = differentiable_all_to_all(group, x, send, receive);

    std::vector<at::Tensor> expected_parts;
    for (int p = 0; p < n; ++p) {
        std::int64_t offset = 0;
        for (int d = 0; d < me; ++d) offset += table[p][d];
        std::int64_t total = 0;
        for (std::int64_t r : table[p]) total += r;
        expected_parts.push_back(input_of(p, total).narrow(0, offset, table[p][me]));
    }
    EXPECT_TRUE(at::equal(received, at::cat(expected_parts)));

    auto weights_of = [](int d, std::int64_t rows_received) {
        const at::Tensor i = (at::arange(rows_received, at::kDouble) + 1).unsqueeze(1) * (d + 1);
        return at::cat({i, i + 0.5}, 1).to(at::kFloat);
    };
    (received * weights_of(me, received.size(0))).sum().backward();

    // Row j of my input went to process d at position (rows p < me sent to d) + (my rows to d
    // before j); its gradient is C_d there.
    std::vector<at::Tensor> expected_grad;
    for (int d = 0; d < n; ++d) {
        std::int64_t before = 0, received_by_d = 0;
        for (int p = 0; p < n; ++p) {
            if (p < me) before += table[p][d];
            received_by_d += table[p][d];
        }
        expected_grad.push_back(weights_of(d, received_by_d).narrow(0, before, table[me][d]));
    }
    EXPECT_TRUE(at::equal(x.grad(), at::cat(expected_grad)));
}

TEST(DifferentiableAllToAll, UnevenAndZeroSplits) {
    if (!tests::in_rank_process(3)) return;
    check_exchange({{1, 0, 3}, {2, 2, 0}, {0, 0, 4}});
}

TEST(DifferentiableAllToAll, OneProcessReceivesEverything) {
    if (!tests::in_rank_process(3)) return;
    check_exchange({{0, 0, 2}, {0, 0, 5}, {0, 0, 1}});
}

TEST(DifferentiableAllToAll, NothingToSendAnywhere) {
    if (!tests::in_rank_process(2)) return;
    check_exchange({{0, 0}, {0, 0}});
}

TEST(ProcessGroup, GatherBroadcastAndBfloat16Rows) {
    if (!tests::in_rank_process(2)) return;
    const auto job = join();
    ProcessGroup& group = *job->world();
    const int me = group.rank();
    const at::Tensor gathered = group.all_gather(at::full({2}, me + 1, at::kLong));
    EXPECT_TRUE(at::equal(gathered, at::tensor({1, 1, 2, 2}, at::kLong).view({2, 2})));
    EXPECT_EQ(broadcast_text(group, me == 0 ? "runs/x-1" : "", 0, at::kCPU), "runs/x-1");
    EXPECT_TRUE(any_member(group, me == 1, at::kCPU));
    EXPECT_FALSE(any_member(group, false, at::kCPU));
    // bfloat16 rows arrive bit for bit (Gloo of LibTorch 1.13 would abort on the dtype itself).
    const at::Tensor mine = (at::arange(6, at::kFloat).view({3, 2}) / 7 + me).to(at::kBFloat16);
    const std::vector<std::int64_t> receive =
        me == 0 ? std::vector<std::int64_t>{1, 1} : std::vector<std::int64_t>{2, 2};
    const at::Tensor theirs = group.all_to_all(mine, {1, 2}, receive);
    const at::Tensor other =
        (at::arange(6, at::kFloat).view({3, 2}) / 7 + (1 - me)).to(at::kBFloat16);
    const at::Tensor expected = me == 0 ? at::cat({mine.narrow(0, 0, 1), other.narrow(0, 0, 1)})
                                        : at::cat({other.narrow(0, 1, 2), mine.narrow(0, 1, 2)});
    EXPECT_EQ(theirs.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(theirs, expected));
    at::Tensor sum = at::full({3}, static_cast<double>(me + 1));
    group.all_reduce_sum(sum);
    EXPECT_TRUE(at::equal(sum, at::full({3}, 3.0)));
}

}  // namespace
}  // namespace moelab::core
