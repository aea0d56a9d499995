#pragma once

// The host's recipe choices as types. Recipes spell them as strings ("moe", "bfloat16", ...);
// the options binding turns them into these enums once, so core compares types, not strings,
// and a misspelt comparison cannot compile.

#include <cstddef>
#include <string_view>

namespace moelab::core {

enum class FfnKind { kDense, kMoe };                // [model] ffn
enum class ComputeDtype { kFloat32, kBfloat16 };    // [model] dtype
enum class DropPolicy { kProbability, kPosition };  // [moe] drop_policy
enum class DeviceChoice { kAuto, kCpu, kCuda };     // [train] device

// The recipe spelling of each value, in enum order: what recipes, resolved recipes, messages and
// capability queries say.
template <class Choice>
struct ChoiceNames;
template <>
struct ChoiceNames<FfnKind> {
    static constexpr std::string_view names[] = {"dense", "moe"};
};
template <>
struct ChoiceNames<ComputeDtype> {
    static constexpr std::string_view names[] = {"float32", "bfloat16"};
};
template <>
struct ChoiceNames<DropPolicy> {
    static constexpr std::string_view names[] = {"probability", "position"};
};
template <>
struct ChoiceNames<DeviceChoice> {
    static constexpr std::string_view names[] = {"auto", "cpu", "cuda"};
};

template <class Choice>
constexpr std::string_view name_of(Choice choice) {
    return ChoiceNames<Choice>::names[static_cast<std::size_t>(choice)];
}

}  // namespace moelab::core
