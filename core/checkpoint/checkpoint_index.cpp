#include "core/checkpoint/checkpoint_index.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_error.h"
#include "core/system/printable.h"

namespace moelab::core {

namespace {

// A file next to the index: a plain name, so an index cannot point outside its step directory.
bool plain_safetensors_name(const std::string& name) {
    constexpr std::string_view kSuffix = ".safetensors";
    if (name.size() <= kSuffix.size() || name.size() > 255 || name.front() == '.') return false;
    if (name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

CheckpointIndex parse_checkpoint_index(std::string_view text, const std::string& file) {
    auto fail = [&](const std::string& what) -> CheckpointIndex {
        throw CheckpointError(fmt::format("{}: {}", file, what));
    };
    const nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return fail("not valid JSON (expected a checkpoint index)");
    if (!root.is_object()) return fail("expected a JSON object with \"weight_map\"");
    CheckpointIndex index;
    const auto map = root.find("weight_map");
    if (map == root.end() || !map->is_object()) {
        return fail("expected \"weight_map\": an object from tensor names to file names");
    }
    for (const auto& [tensor, value] : map->items()) {
        if (!value.is_string() || !plain_safetensors_name(value.get<std::string>())) {
            return fail(
                fmt::format("weight_map[\"{}\"]: expected the name of a .safetensors file "
                            "in the same directory, got {}",
                            printable(tensor), printable(value.dump())));
        }
        index.weight_map[tensor] = value.get<std::string>();
    }
    if (const auto stacks = root.find("moelab_expert_stacks"); stacks != root.end()) {
        if (!stacks->is_object()) {
            return fail(
                "expected \"moelab_expert_stacks\": an object from tensor names to expert "
                "counts");
        }
        for (const auto& [tensor, value] : stacks->items()) {
            if (!value.is_number_integer() || value.get<std::int64_t>() < 1 ||
                value.get<std::int64_t>() > (1 << 20)) {
                return fail(
                    fmt::format("moelab_expert_stacks[\"{}\"]: expected an expert count in "
                                "[1, 1048576], got {}",
                                printable(tensor), printable(value.dump())));
            }
            index.stacks[tensor] = value.get<std::int64_t>();
        }
    }
    return index;
}

std::string format_checkpoint_index(const CheckpointIndex& index,
                                    const std::map<std::string, std::string>& metadata) {
    nlohmann::json root = {{"metadata", metadata},
                           {"weight_map", index.weight_map},
                           {"moelab_expert_stacks", index.stacks}};
    return root.dump(2) + "\n";
}

}  // namespace moelab::core
