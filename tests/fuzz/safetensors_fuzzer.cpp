// Fuzzes the safetensors header parser (core/checkpoint/safetensors_layout.h) the way
// read_safetensors() (core/checkpoint/safetensors.cpp) uses it. The input is a whole file: an
// 8-byte little-endian header size N, N bytes of JSON header, then the data buffer. The header size
// is checked as read_safetensors() checks it, the layout is parsed for the rest of the input, and
// each tensor's bytes are copied out of the buffer as read_safetensors() copies them, so that under
// AddressSanitizer an offset past the input is a finding even when no invariant below catches it.
//
// On success the layout must be what the parser promises: entries in buffer order that cover the
// buffer exactly, each of a known dtype with end - begin == product(shape) * element size.

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/checkpoint/checkpoint_error.h"
#include "core/checkpoint/safetensors_layout.h"
#include "harness.h"

namespace {

using moelab::core::SafetensorsEntry;
using moelab::core::SafetensorsLayout;

// product(shape) * element_size, or false if that does not fit in 64 bits (a zero extent makes
// the product 0 whatever the others are).
bool byte_size(const SafetensorsEntry& entry, std::size_t element_size, std::uint64_t& bytes) {
    for (const std::int64_t extent : entry.shape) {
        if (extent == 0) {
            bytes = 0;
            return true;
        }
    }
    bytes = element_size;
    for (const std::int64_t extent : entry.shape) {
        if (__builtin_mul_overflow(bytes, static_cast<std::uint64_t>(extent), &bytes)) return false;
    }
    return true;
}

void check_layout(const SafetensorsLayout& layout, std::uint64_t buffer_size) {
    std::set<std::string> names;
    std::uint64_t covered = 0;
    for (const SafetensorsEntry& entry : layout.entries) {
        MOELAB_FUZZ_CHECK(entry.name != "__metadata__");
        MOELAB_FUZZ_CHECK(names.insert(entry.name).second);
        const std::size_t element_size = moelab::core::safetensors_element_size(entry.dtype);
        MOELAB_FUZZ_CHECK(element_size != 0);
        for (const std::int64_t extent : entry.shape) MOELAB_FUZZ_CHECK(extent >= 0);
        // In buffer order, without holes or overlaps.
        MOELAB_FUZZ_CHECK(entry.begin == covered);
        MOELAB_FUZZ_CHECK(entry.begin <= entry.end);
        MOELAB_FUZZ_CHECK(entry.end <= buffer_size);
        std::uint64_t bytes = 0;
        MOELAB_FUZZ_CHECK(byte_size(entry, element_size, bytes));
        MOELAB_FUZZ_CHECK(entry.end - entry.begin == bytes);
        covered = entry.end;
    }
    MOELAB_FUZZ_CHECK(covered == buffer_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // read_safetensors(): the size field, then its bounds, before the parser sees anything.
    if (size < 8) return 0;
    std::uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = header_size << 8 | data[i];
    if (header_size > moelab::core::kMaxSafetensorsHeaderBytes || header_size > size - 8) return 0;
    const std::uint64_t buffer_size = size - 8 - header_size;
    const std::string_view header(reinterpret_cast<const char*>(data) + 8, header_size);

    SafetensorsLayout layout;
    try {
        layout = moelab::core::parse_safetensors_layout(header, buffer_size);
    } catch (const moelab::core::CheckpointError& error) {
        MOELAB_FUZZ_CHECK(!std::string_view(error.what()).empty());
        return 0;
    }
    check_layout(layout, buffer_size);

    const std::uint8_t* buffer = data + 8 + header_size;
    for (const SafetensorsEntry& entry : layout.entries) {
        const std::vector<std::uint8_t> bytes(buffer + entry.begin, buffer + entry.end);
        MOELAB_FUZZ_CHECK(bytes.size() == entry.end - entry.begin);
    }
    return 0;
}
