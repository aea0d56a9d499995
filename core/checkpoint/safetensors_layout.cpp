#include "core/checkpoint/safetensors_layout.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_error.h"
#include "core/checkpoint/checkpoint_state.h"
#include "core/system/printable.h"

namespace moelab::core {

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw CheckpointError(what); }

std::string entry_label(std::string_view name) { return "'" + printable(name, 80) + "'"; }

std::uint64_t offset_value(const json& value, const std::string& name) {
    if (!value.is_number_unsigned()) {
        fail(fmt::format("entry {}: data_offsets must be two non-negative integers",
                         entry_label(name)));
    }
    return value.get<std::uint64_t>();
}

}  // namespace

std::size_t safetensors_element_size(std::string_view dtype) {
    static const std::pair<std::string_view, std::size_t> kSizes[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
        {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
    for (const auto& [name, size] : kSizes) {
        if (name == dtype) return size;
    }
    return 0;
}

SafetensorsLayout parse_safetensors_layout(std::string_view header, std::uint64_t buffer_size) {
    json root;
    try {
        root = json::parse(header);
    } catch (const json::exception&) {
        fail("the header is not valid JSON");
    }
    if (!root.is_object()) fail("the header is not a JSON object");

    SafetensorsLayout layout;
    for (const auto& [name, entry] : root.items()) {
        if (name == "__metadata__") {
            if (!entry.is_object()) fail("__metadata__ must be an object of strings");
            for (const auto& [key, value] : entry.items()) {
                if (!value.is_string()) {
                    fail(fmt::format("__metadata__ value {} is not a string", entry_label(key)));
                }
                layout.metadata[key] = value.get<std::string>();
            }
            continue;
        }
        if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
            !entry.contains("data_offsets")) {
            fail(fmt::format("entry {} must be an object with dtype, shape and data_offsets",
                             entry_label(name)));
        }
        SafetensorsEntry parsed;
        parsed.name = name;
        const json& dtype = entry["dtype"];
        if (!dtype.is_string() || safetensors_element_size(dtype.get<std::string>()) == 0) {
            fail(
                fmt::format("entry {}: dtype must be one of F64, F32, F16, BF16, I64, I32, I16, "
                            "I8, U8, BOOL, got {}",
                            entry_label(name), describe_json(dtype)));
        }
        parsed.dtype = dtype.get<std::string>();
        const json& shape = entry["shape"];
        if (!shape.is_array())
            fail(fmt::format("entry {}: shape must be an array", entry_label(name)));
        // Element count with overflow checks: a forged shape must not wrap around to a small size.
        std::uint64_t bytes = safetensors_element_size(parsed.dtype);
        for (const json& d : shape) {
            if (!d.is_number_unsigned() ||
                d.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
                fail(fmt::format("entry {}: shape must hold non-negative integers",
                                 entry_label(name)));
            }
            const std::uint64_t extent = d.get<std::uint64_t>();
            if (extent != 0 && bytes > buffer_size / extent) {
                bytes = buffer_size + 1;  // larger than the buffer: reported below
            } else {
                bytes *= extent;
            }
            parsed.shape.push_back(static_cast<std::int64_t>(extent));
        }
        const json& offsets = entry["data_offsets"];
        if (!offsets.is_array() || offsets.size() != 2) {
            fail(fmt::format("entry {}: data_offsets must be [begin, end]", entry_label(name)));
        }
        parsed.begin = offset_value(offsets[0], name);
        parsed.end = offset_value(offsets[1], name);
        if (parsed.end < parsed.begin || parsed.end > buffer_size ||
            parsed.end - parsed.begin != bytes) {
            fail(fmt::format(
                "entry {}: data_offsets [{}, {}] do not fit its dtype and shape "
                "({} bytes) inside the {}-byte data section",
                entry_label(name), parsed.begin, parsed.end,
                bytes > buffer_size ? std::string("more than that") : std::to_string(bytes),
                buffer_size));
        }
        layout.entries.push_back(std::move(parsed));
    }
    std::sort(layout.entries.begin(), layout.entries.end(),
              [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
                  return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
              });
    std::uint64_t covered = 0;
    for (const SafetensorsEntry& entry : layout.entries) {
        if (entry.begin != covered) fail("the data section has holes or overlapping tensors");
        covered = entry.end;
    }
    if (covered != buffer_size) fail("the data section has bytes that no tensor owns");
    return layout;
}

}  // namespace moelab::core
