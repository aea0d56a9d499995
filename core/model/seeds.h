#pragma once

// Per-component seeds derived from the recipe seed, so that every module's initialisation depends
// only on (recipe seed, what it is, which layer), never on construction order.

#include <cstdint>
#include <string_view>

namespace moelab::core {

inline std::uint64_t derive_seed(std::uint64_t seed, std::string_view purpose, std::int64_t index) {
    std::uint64_t h = 0xcbf29ce484222325ULL ^ seed;  // FNV-1a over the purpose, then splitmix64
    for (char c : purpose) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    std::uint64_t z = h + 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace moelab::core
