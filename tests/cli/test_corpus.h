#pragma once

// A temporary working directory with a tiny corpus at ./corpus (train/validation/test.txt),
// removed when the object goes out of scope.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace moelab::tests {

class TestCorpus {
public:
    TestCorpus() {
        char pattern[] = "/tmp/moelab-corpus-XXXXXX";
        root_ = mkdtemp(pattern);
        std::filesystem::create_directories(root_ / "corpus");
        for (const char* split : {"train", "validation", "test"}) {
            std::ofstream(root_ / "corpus" / (std::string(split) + ".txt"))
                << "The quick brown fox jumps over the lazy dog.\n\nA second document.\n";
        }
    }
    ~TestCorpus() { std::filesystem::remove_all(root_); }
    TestCorpus(const TestCorpus&) = delete;
    TestCorpus& operator=(const TestCorpus&) = delete;

    const std::filesystem::path& root() const { return root_; }

private:
    std::filesystem::path root_;
};

}  // namespace moelab::tests
