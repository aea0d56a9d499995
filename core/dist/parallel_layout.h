#pragma once

// Note [Parallel layout]: how a job of `world` processes is laid out for expert parallelism of
// degree E ([parallel] expert).
//   - Data parallelism over every process: each optimizer step's global batch (the recipe's
//     batch_size sequences per micro-batch) is cut into `world` equal contiguous parts; process r
//     takes part r. Every parameter outside the routed experts is replicated in every process and
//     its gradient is averaged over all of them.
//   - Expert parallelism inside groups of E consecutive ranks: group g = ranks [g E, (g + 1) E).
//     Member i of a group (its expert rank) holds routed experts [i n / E, (i + 1) n / E) of every
//     routed bank (n experts per bank); the group's processes send each other the token rows for
//     those experts (all-to-all).
//   - The world / E processes with the same expert rank hold the same experts (an expert
//     replica group); their expert gradients are summed over that group.
// So the arithmetic of a step does not depend on the layout: degree 1 in one process, degree 2 in
// two, and degree 2 with data parallelism 2 in four all compute the same global batch. The one
// exception is expert capacity ([moe] capacity_factor > 0): it is computed from the rows that
// meet at the experts, the whole batch when E = world, an expert group's share of it otherwise.

#include <cstdint>
#include <vector>

namespace moelab::core {

struct ParallelLayout {
    int world = 1;
    int rank = 0;
    int expert_degree = 1;  // E
    int local_rank = 0;     // among the processes of this machine (its GPU)

    int expert_rank() const { return rank % expert_degree; }
    int expert_group() const { return rank / expert_degree; }
    int expert_replicas() const { return world / expert_degree; }
    // Ranks of this process's expert-parallel group, ascending.
    std::vector<int> expert_group_members() const;
    // Ranks that hold the same experts as this process, ascending.
    std::vector<int> expert_replica_members() const;
    // This process's rows of a global batch of `rows`: [first, first + count).
    std::int64_t first_row(std::int64_t rows) const { return rank * (rows / world); }
    std::int64_t local_rows(std::int64_t rows) const { return rows / world; }
};

}  // namespace moelab::core
