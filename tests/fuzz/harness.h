#pragma once

// Shared by the fuzz harnesses. A harness runs under libFuzzer (clang, tests/fuzz/CMakeLists.txt)
// and, through replay_main.cpp, as a regression test of the main build (gcc, no sanitizers), so
// a broken invariant must stop the process on both: it is reported, then trapped. A trap is a
// crash to libFuzzer (the input is saved) and a failed test to ctest.

#include <cstddef>
#include <cstdint>
#include <cstdio>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace moelab::fuzz {

[[noreturn]] inline void invariant_failed(const char* condition, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, condition);
    std::fflush(stderr);
    __builtin_trap();
}

}  // namespace moelab::fuzz

#define MOELAB_FUZZ_CHECK(condition)                                          \
    do {                                                                      \
        if (!(condition)) {                                                   \
            ::moelab::fuzz::invariant_failed(#condition, __FILE__, __LINE__); \
        }                                                                     \
    } while (false)
