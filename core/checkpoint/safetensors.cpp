#include "core/checkpoint/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/system/file_writer.h"
#include "core/system/read_file.h"

namespace moelab::core {

namespace {

const std::vector<std::pair<at::ScalarType, std::string>>& dtype_names() {
    static const std::vector<std::pair<at::ScalarType, std::string>> names = {
        {at::kDouble, "F64"}, {at::kFloat, "F32"}, {at::kHalf, "F16"},  {at::kBFloat16, "BF16"},
        {at::kLong, "I64"},   {at::kInt, "I32"},   {at::kShort, "I16"}, {at::kChar, "I8"},
        {at::kByte, "U8"},    {at::kBool, "BOOL"}};
    return names;
}

}  // namespace

std::string safetensors_dtype(at::ScalarType type) {
    for (const auto& [t, name] : dtype_names()) {
        if (t == type) return name;
    }
    throw CheckpointError(
        fmt::format("dtype {} cannot be stored in safetensors", c10::toString(type)));
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

    FileWriter out(file);
    out.write(&header_size, 8);  // little-endian hosts
    out.write(text.data(), text.size());
    for (const at::Tensor& t : contiguous) {
        out.write(t.data_ptr(), t.numel() * t.element_size());
    }
    out.close();
}

SafetensorsContents read_safetensors(const std::filesystem::path& file) {
    auto fail = [&](const std::string& what) -> CheckpointError {
        return CheckpointError(
            fmt::format("{}: not a valid safetensors file: {}", printable_path(file), what));
    };
    std::string bytes;
    try {
        bytes = read_file(file, kMaxCheckpointFileBytes, "checkpoint file");
    } catch (const FileError& error) {
        throw CheckpointError(error.what());
    }
    std::uint64_t header_size = 0;
    if (bytes.size() < 8) throw fail("shorter than its 8-byte header size field");
    std::memcpy(&header_size, bytes.data(), 8);
    if (header_size > kMaxSafetensorsHeaderBytes || header_size > bytes.size() - 8) {
        throw fail("the header size field is out of range");
    }
    const std::uint64_t buffer_size = bytes.size() - 8 - header_size;
    SafetensorsLayout layout;
    try {
        layout =
            parse_safetensors_layout(std::string_view(bytes).substr(8, header_size), buffer_size);
    } catch (const CheckpointError& error) {
        throw fail(error.what());
    }
    SafetensorsContents contents;
    contents.metadata = std::move(layout.metadata);
    const char* buffer = bytes.data() + 8 + header_size;
    for (const SafetensorsEntry& entry : layout.entries) {
        at::Tensor tensor =
            at::empty(entry.shape, at::TensorOptions().dtype(scalar_type_of(entry.dtype)));
        std::memcpy(tensor.data_ptr(), buffer + entry.begin, entry.end - entry.begin);
        contents.tensors.emplace(entry.name, std::move(tensor));
    }
    return contents;
}

}  // namespace moelab::core
