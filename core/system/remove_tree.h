#pragma once

// Recursive removal of a directory tree (or a single file), like `rm -rf`.
//
// Why not std::filesystem::remove_all: PyTorch's wheels export their own statically linked copy of
// libstdc++'s std::filesystem::remove_all from libtorch.so, which interposes over the system
// library's and crashes (it jumps to a null address; seen with LibTorch 2.11). This uses POSIX
// nftw(3) instead. tests/system/source_rules_test.cpp keeps remove_all out of the code base.

#include <filesystem>

namespace moelab::core {

// Removes `path` and everything below it; a missing path is not an error. Does not follow
// symbolic links. Throws std::runtime_error naming the entry that could not be removed.
void remove_tree(const std::filesystem::path& path);

}  // namespace moelab::core
