#include "core/train/expert_shards.h"

#include <fmt/format.h>

#include "core/checkpoint/checkpoint_error.h"
#include "core/system/tensor_text.h"

namespace moelab::core {

const ExpertShard* expert_shard_of(const std::string& tensor_name,
                                   const std::map<std::string, ExpertShard>& shards) {
    auto it = shards.find(tensor_name);
    if (it == shards.end()) {
        const std::size_t slash = tensor_name.find('/');
        if (slash != std::string::npos) it = shards.find(tensor_name.substr(slash + 1));
    }
    return it == shards.end() ? nullptr : &it->second;
}

std::vector<NamedTensor> split_into_experts(const std::vector<NamedTensor>& tensors,
                                            const std::map<std::string, ExpertShard>& shards,
                                            std::map<std::string, std::int64_t>& stacks) {
    std::vector<NamedTensor> out;
    for (const NamedTensor& named : tensors) {
        const ExpertShard* shard = expert_shard_of(named.name, shards);
        if (shard == nullptr) {
            out.push_back(named);
            continue;
        }
        stacks[named.name] = shard->experts;
        for (std::int64_t i = 0; i < shard->count; ++i) {
            out.push_back({fmt::format("{}.{}", named.name, shard->first + i),
                           named.tensor.select(0, i).detach().contiguous()});
        }
    }
    return out;
}

std::map<std::string, at::Tensor> select_expert_shards(
    std::map<std::string, at::Tensor> tensors, const std::map<std::string, ExpertShard>& shards) {
    for (auto& [name, tensor] : tensors) {
        const ExpertShard* shard = expert_shard_of(name, shards);
        if (shard == nullptr) continue;
        if (tensor.dim() == 0 || tensor.size(0) != shard->experts) {
            throw CheckpointError(fmt::format(
                "the checkpoint does not fit this model: '{}' has shape {}, but the model's bank "
                "has {} experts (its first dimension)",
                name, shape_text(tensor.sizes()), shard->experts));
        }
        tensor = tensor.narrow(0, shard->first, shard->count).contiguous();
    }
    return tensors;
}

}  // namespace moelab::core
