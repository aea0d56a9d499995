#include "core/dist/parallel_layout.h"

namespace moelab::core {

std::vector<int> ParallelLayout::expert_group_members() const {
    std::vector<int> members;
    for (int i = 0; i < expert_degree; ++i) members.push_back(expert_group() * expert_degree + i);
    return members;
}

std::vector<int> ParallelLayout::expert_replica_members() const {
    std::vector<int> members;
    for (int g = 0; g < expert_replicas(); ++g)
        members.push_back(g * expert_degree + expert_rank());
    return members;
}

}  // namespace moelab::core
