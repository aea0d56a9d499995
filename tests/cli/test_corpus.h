#pragma once

// A temporary working directory with a tiny corpus at ./corpus (train/validation/test.txt),
// removed when the object goes out of scope.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace moelab::tests {

class TestCorpus {
  public:
    // `words` > 0 writes that many pseudo-random words per split (documents of 8 sentences),
    // enough text to train a tiny model on; 0 writes two short documents.
    explicit TestCorpus(int words = 0) {
        std::filesystem::create_directories(root_ / "corpus");
        std::uint32_t state = 12345;
        for (const char* split : {"train", "validation", "test"}) {
            std::ofstream out(root_ / "corpus" / (std::string(split) + ".txt"));
            if (words == 0) {
                out << "The quick brown fox jumps over the lazy dog.\n\nA second document.\n";
                continue;
            }
            static const char* kWords[] = {"the",   "a",    "model", "expert", "routes",  "token",
                                           "to",    "of",   "and",   "learns", "mixture", "layer",
                                           "small", "text", "is",    "in",     "one",     "every"};
            for (int w = 0, sentence = 0; w < words; ++w) {
                state = state * 1664525u + 1013904223u;
                out << kWords[(state >> 16) % 18];
                if ((state >> 8) % 9 == 0) {
                    out << ".\n";
                    if (++sentence % 8 == 0) out << "\n";
                } else {
                    out << ' ';
                }
            }
            out << ".\n";
        }
    }
    const std::filesystem::path& root() const { return temp_.path(); }

  private:
    TempDir temp_{"moelab-corpus"};
    const std::filesystem::path& root_ = temp_.path();
};

// tests/recipes/tiny.toml, absolute, as a shell word: a run of it needs ./corpus (a TestCorpus
// root as the working directory).
inline std::string tiny_recipe_file() {
    return "'" +
           (std::filesystem::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml").string() +
           "'";
}

}  // namespace moelab::tests
