#include "core/system/allocator.h"

#include <climits>
#include <cstdlib>
#include <initializer_list>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace moelab::core {

void tune_allocator_for_training() {
#if defined(__GLIBC__)
    for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                             "MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES"}) {
        if (std::getenv(name) != nullptr) return;
    }
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
    mallopt(M_TOP_PAD, 256 << 20);
#endif
}

}  // namespace moelab::core
