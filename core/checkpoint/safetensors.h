#pragma once

// The safetensors format (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes   N, little-endian u64: size of the header
//   N bytes   UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [2, 3],
//             "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "value"}}
//             (we pad it with spaces to a multiple of 8 bytes so that data is aligned)
//   rest      the byte buffer; offsets are relative to its start, tensors are little-endian,
//             row-major, and together cover the buffer exactly (no holes, no overlaps).

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/checkpoint/checkpoint_error.h"
#include "core/checkpoint/safetensors_layout.h"

namespace moelab::core {

struct NamedTensor {
    std::string name;
    at::Tensor tensor;
};

// "F32", "BF16", "I64", ...; throws CheckpointError for dtypes safetensors cannot hold.
std::string safetensors_dtype(at::ScalarType type);
at::ScalarType scalar_type_of(const std::string& safetensors_dtype);

// Writes the file (not atomically: checkpoint.cpp writes into a temporary directory). Tensors are
// stored in the order given; names must be unique. CheckpointError with errno's reason (a full
// disk says so).
void write_safetensors(const std::filesystem::path& file, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

struct SafetensorsContents {
    std::map<std::string, at::Tensor> tensors;  // on the CPU
    std::map<std::string, std::string> metadata;
};

// Reads and validates a file; CheckpointError names the file and what is wrong.
SafetensorsContents read_safetensors(const std::filesystem::path& file);

}  // namespace moelab::core
