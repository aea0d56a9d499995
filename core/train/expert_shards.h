#pragma once

// A process of an expert-parallel run holds a share of each routed bank's experts (Note [Parallel
// layout]). It saves them per expert, keyed by global expert id (Note [Expert shards] in
// checkpoint.h), and after a load, which puts whole banks back together, it keeps its own: so a
// checkpoint written with degree 2 loads with degree 1 and back, and --resume may change the
// degree.

#include <map>
#include <string>
#include <vector>

#include "core/checkpoint/safetensors.h"
#include "core/moe/managed_expert_bank.h"

namespace moelab::core {

// The parameter a checkpoint tensor belongs to: the name itself, or what follows the optimizer
// state's "<kind>/" prefix ("exp_avg/<parameter>"); `shards` is searched for either.
const ExpertShard* expert_shard_of(const std::string& tensor_name,
                                   const std::map<std::string, ExpertShard>& shards);

// `tensors` with every sharded one replaced by its experts, "<name>.<e>" for global expert e;
// `stacks` receives each such name with the bank's expert count.
std::vector<NamedTensor> split_into_experts(const std::vector<NamedTensor>& tensors,
                                            const std::map<std::string, ExpertShard>& shards,
                                            std::map<std::string, std::int64_t>& stacks);

// This process's share of every sharded tensor of a loaded checkpoint. Throws CheckpointError
// naming the tensor when it does not hold the model's number of experts (a checkpoint of another
// model, never loaded into the wrong experts).
std::map<std::string, at::Tensor> select_expert_shards(
    std::map<std::string, at::Tensor> tensors, const std::map<std::string, ExpertShard>& shards);

}  // namespace moelab::core
