#pragma once

// The header of a safetensors file, parsed and validated without touching tensor data (torch-free,
// so that it can be fuzzed on its own). safetensors.h builds tensors from a validated layout.
//
// Validation: the header is a JSON object of entries {"dtype": known string, "shape": array of
// non-negative integers, "data_offsets": [begin, end]} plus an optional "__metadata__" object of
// strings; each entry's byte size (product of the shape, checked for overflow, times the element
// size) equals end - begin; the entries cover the data buffer exactly, without holes or overlaps.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace moelab::core {

struct SafetensorsEntry {
    std::string name;
    std::string dtype;  // "F32", "BF16", "I64", ...
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;  // byte offsets in the data buffer
    std::uint64_t end = 0;
};

struct SafetensorsLayout {
    std::vector<SafetensorsEntry> entries;  // in buffer order
    std::map<std::string, std::string> metadata;
};

// Element size in bytes of a safetensors dtype name, 0 if the name is not one moelab reads.
std::size_t safetensors_element_size(std::string_view dtype);

// Parses `header` (the JSON text) for a data buffer of `buffer_size` bytes. Throws CheckpointError
// with what is wrong (without a file name: the caller adds it).
SafetensorsLayout parse_safetensors_layout(std::string_view header, std::uint64_t buffer_size);

// Largest header moelab accepts (the format allows 100 MB).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;

}  // namespace moelab::core
