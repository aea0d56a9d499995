// Rules about our own sources that protect against problems outside our code, and remove_tree.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/system/remove_tree.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

// PyTorch wheels export a broken copy of std::filesystem::remove_all (see remove_tree.h).
TEST(SourceRules, NothingCallsStdFilesystemRemoveAll) {
    const std::string needle = std::string("remove") + "_all(";
    int files = 0;
    for (const char* top : {"core", "plugins", "tools", "tests", "sdk", "kernels"}) {
        for (const auto& entry : fs::recursive_directory_iterator(fs::path(MOELAB_SOURCE_DIR) / top)) {
            const std::string ext = entry.path().extension().string();
            if (ext != ".cpp" && ext != ".h" && ext != ".cu") continue;
            ++files;
            std::ifstream in(entry.path());
            int line_number = 0;
            for (std::string line; std::getline(in, line);) {
                ++line_number;
                EXPECT_EQ(line.find(needle), std::string::npos)
                    << entry.path() << ":" << line_number << ": use core::remove_tree instead";
            }
        }
    }
    EXPECT_GT(files, 50);
}

TEST(RemoveTree, RemovesNestedTreesButNotWhatLinksPointTo) {
    char pattern[] = "/tmp/moelab-rm-XXXXXX";  // not TempDir: remove_tree is under test
    ASSERT_NE(mkdtemp(pattern), nullptr);
    const fs::path root = pattern;
    fs::create_directories(root / "tree" / "a" / "b");
    fs::create_directories(root / "outside");
    std::ofstream(root / "tree" / "a" / "b" / "file") << "x";
    std::ofstream(root / "outside" / "keep") << "y";
    fs::create_directory_symlink(root / "outside", root / "tree" / "link");
    remove_tree(root / "tree");
    EXPECT_FALSE(fs::exists(root / "tree"));
    EXPECT_TRUE(fs::exists(root / "outside" / "keep"));
    remove_tree(root / "tree");  // already gone: not an error
    remove_tree(root / "outside" / "keep");  // a single file
    EXPECT_FALSE(fs::exists(root / "outside" / "keep"));
    remove_tree(root);
    EXPECT_FALSE(fs::exists(root));
}

}  // namespace
}  // namespace moelab::core
