#pragma once

// Content hashes for cache keys (FNV-1a, 64 bit): stable across runs, machines and versions.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace moelab::core {

// splitmix64 of seed and salt: decorrelated seeds for consecutive things (banks of a layer; the
// batch, layer and router of a routing perturbation).
inline std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t salt) {
    std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (salt + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

class ContentHash {
  public:
    ContentHash& add(std::string_view bytes) {
        for (unsigned char c : bytes) state_ = (state_ ^ c) * 0x100000001b3ULL;
        // Separator, so that add("ab").add("c") differs from add("a").add("bc").
        state_ = (state_ ^ 0xffU) * 0x100000001b3ULL;
        return *this;
    }
    // Adds the bytes of a file; throws std::runtime_error if it cannot be read.
    ContentHash& add_file(const std::filesystem::path& file) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read " + file.string());
        char buffer[1 << 16];
        while (in) {
            in.read(buffer, sizeof buffer);
            const std::streamsize n = in.gcount();
            for (std::streamsize i = 0; i < n; ++i) {
                state_ = (state_ ^ static_cast<unsigned char>(buffer[i])) * 0x100000001b3ULL;
            }
        }
        return add("");
    }
    std::uint64_t value() const { return state_; }
    std::string hex() const {
        static const char digits[] = "0123456789abcdef";
        std::string out(16, '0');
        for (int i = 0; i < 16; ++i) out[15 - i] = digits[(state_ >> (4 * i)) & 0xf];
        return out;
    }

  private:
    std::uint64_t state_ = 0xcbf29ce484222325ULL;
};

}  // namespace moelab::core
