#include "kernels/binding/blas_threads.h"

#include <dlfcn.h>

#include <mutex>

namespace moelab::kernels::binding {

namespace {

using GetInt = int (*)();
using SetThreads = void (*)(int);

GetInt openblas_get() {
    static const auto get =
        reinterpret_cast<GetInt>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return get;
}

SetThreads openblas_set() {
    static const auto set =
        reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    return set;
}

// 0: sequential build, 1: pthreads, 2: OpenMP.
GetInt openblas_parallel() {
    static const auto parallel =
        reinterpret_cast<GetInt>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
    return parallel;
}

std::mutex single_threaded_mutex;
int single_threaded_holders = 0;
int threads_before = 0;

}  // namespace

int blas_threads() {
    const GetInt get = openblas_get();
    return get != nullptr && openblas_set() != nullptr ? get() : 0;
}

bool set_blas_threads(int threads) {
    const SetThreads set = openblas_set();
    if (set == nullptr || threads < 1) return false;
    set(threads);
    return true;
}

bool blas_threads_are_global() {
    const GetInt parallel = openblas_parallel();
    return blas_threads() > 0 && parallel != nullptr && parallel() == 1;
}

SingleThreadedBlas::SingleThreadedBlas() : active_(blas_threads_are_global()) {
    if (!active_) return;
    const std::lock_guard<std::mutex> lock(single_threaded_mutex);
    if (single_threaded_holders++ == 0) {
        threads_before = blas_threads();
        if (threads_before > 1) set_blas_threads(1);
    }
}

SingleThreadedBlas::~SingleThreadedBlas() {
    if (!active_) return;
    const std::lock_guard<std::mutex> lock(single_threaded_mutex);
    if (--single_threaded_holders == 0 && threads_before > 1) set_blas_threads(threads_before);
}

}  // namespace moelab::kernels::binding
