#pragma once

// The index of a checkpoint written in expert shards (Note [Expert shards] in checkpoint.h):
// model.safetensors.index.json / optimizer.safetensors.index.json, Hugging Face's layout
// ({"metadata": {...}, "weight_map": {tensor: file}}) plus the stacked tensors moelab splits per
// expert ({"moelab_expert_stacks": {tensor: experts}}). Torch-free: the index is untrusted input
// with its own fuzzer (tests/fuzz).

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace moelab::core {

struct CheckpointIndex {
    std::map<std::string, std::string> weight_map;  // tensor -> file in the step directory
    std::map<std::string, std::int64_t> stacks;     // stacked tensor -> its expert count
};

// Throws CheckpointError naming `file` and what is wrong unless `text` is such an index whose
// files are plain names of .safetensors files in the same directory (no paths).
CheckpointIndex parse_checkpoint_index(std::string_view text, const std::string& file);

std::string format_checkpoint_index(const CheckpointIndex& index,
                                    const std::map<std::string, std::string>& metadata);

}  // namespace moelab::core
