#include "core/checkpoint/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace moelab::core {

namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

const std::vector<std::pair<at::ScalarType, std::string>>& dtype_names() {
    static const std::vector<std::pair<at::ScalarType, std::string>> names = {
        {at::kDouble, "F64"}, {at::kFloat, "F32"},  {at::kHalf, "F16"},  {at::kBFloat16, "BF16"},
        {at::kLong, "I64"},   {at::kInt, "I32"},    {at::kShort, "I16"}, {at::kChar, "I8"},
        {at::kByte, "U8"},    {at::kBool, "BOOL"}};
    return names;
}

}  // namespace

std::string safetensors_dtype(at::ScalarType type) {
    for (const auto& [t, name] : dtype_names()) {
        if (t == type) return name;
    }
    throw CheckpointError(fmt::format("dtype {} cannot be stored in safetensors",
                                      c10::toString(type)));
}

at::ScalarType scalar_type_of(const std::string& dtype) {
    for (const auto& [t, name] : dtype_names()) {
        if (name == dtype) return t;
    }
    throw CheckpointError(fmt::format("unknown safetensors dtype '{}'", dtype));
}

void write_safetensors(const std::filesystem::path& file, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::vector<at::Tensor> contiguous;
    std::set<std::string> names;
    std::uint64_t offset = 0;
    for (const NamedTensor& entry : tensors) {
        if (entry.name == "__metadata__" || !names.insert(entry.name).second) {
            throw CheckpointError(fmt::format("{}: tensor name '{}' is reserved or repeated",
                                              file.string(), entry.name));
        }
        at::Tensor t = entry.tensor.detach().to(at::kCPU).contiguous();
        const std::uint64_t bytes = t.numel() * t.element_size();
        header[entry.name] = {{"dtype", safetensors_dtype(t.scalar_type())},
                              {"shape", t.sizes().vec()},
                              {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        contiguous.push_back(std::move(t));
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    const std::uint64_t header_size = text.size();

    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    if (!out) throw CheckpointError("cannot create " + file.string());
    out.write(reinterpret_cast<const char*>(&header_size), 8);  // little-endian hosts
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const at::Tensor& t : contiguous) {
        out.write(static_cast<const char*>(t.data_ptr()),
                  static_cast<std::streamsize>(t.numel() * t.element_size()));
    }
    out.flush();
    if (!out) throw CheckpointError("cannot write " + file.string());
}

SafetensorsContents read_safetensors(const std::filesystem::path& file) {
    auto fail = [&](const std::string& what) -> CheckpointError {
        return CheckpointError(fmt::format("{}: not a valid safetensors file: {}", file.string(),
                                           what));
    };
    std::ifstream in(file, std::ios::binary);
    if (!in) throw CheckpointError("cannot open " + file.string());
    const std::uint64_t file_size = std::filesystem::file_size(file);
    std::uint64_t header_size = 0;
    in.read(reinterpret_cast<char*>(&header_size), 8);
    if (!in || header_size > kMaxHeaderBytes || 8 + header_size > file_size) {
        throw fail("header size field is out of range");
    }
    std::string text(header_size, '\0');
    in.read(text.data(), static_cast<std::streamsize>(header_size));
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw fail(std::string("header is not JSON: ") + e.what());
    }
    if (!header.is_object()) throw fail("header is not a JSON object");

    const std::uint64_t buffer_size = file_size - 8 - header_size;
    SafetensorsContents contents;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
    std::string buffer(buffer_size, '\0');
    in.read(buffer.data(), static_cast<std::streamsize>(buffer_size));
    if (!in) throw fail("truncated data section");
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            for (const auto& [key, value] : entry.items()) {
                if (!value.is_string()) throw fail("metadata values must be strings");
                contents.metadata[key] = value.get<std::string>();
            }
            continue;
        }
        if (!entry.contains("dtype") || !entry.contains("shape") ||
            !entry.contains("data_offsets")) {
            throw fail(fmt::format("entry '{}' lacks dtype, shape or data_offsets", name));
        }
        const at::ScalarType type = scalar_type_of(entry["dtype"].get<std::string>());
        const std::vector<std::int64_t> shape = entry["shape"].get<std::vector<std::int64_t>>();
        const auto offsets = entry["data_offsets"].get<std::vector<std::uint64_t>>();
        std::int64_t numel = 1;
        for (std::int64_t d : shape) {
            if (d < 0) throw fail(fmt::format("entry '{}' has a negative dimension", name));
            numel *= d;
        }
        const std::uint64_t bytes = static_cast<std::uint64_t>(numel) * c10::elementSize(type);
        if (offsets.size() != 2 || offsets[1] < offsets[0] || offsets[1] - offsets[0] != bytes ||
            offsets[1] > buffer_size) {
            throw fail(fmt::format("entry '{}' has data_offsets inconsistent with its dtype, "
                                   "shape or the file size",
                                   name));
        }
        spans.emplace_back(offsets[0], offsets[1]);
        at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(type));
        std::memcpy(tensor.data_ptr(), buffer.data() + offsets[0], bytes);
        contents.tensors.emplace(name, std::move(tensor));
    }
    // The buffer must be covered exactly.
    std::sort(spans.begin(), spans.end());
    std::uint64_t covered = 0;
    for (const auto& [begin, end] : spans) {
        if (begin != covered) throw fail("data section has holes or overlapping tensors");
        covered = end;
    }
    if (covered != buffer_size) throw fail("data section has bytes no tensor owns");
    return contents;
}

}  // namespace moelab::core
