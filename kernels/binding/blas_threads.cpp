#include "kernels/binding/blas_threads.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

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

bool set_blas_idle_spin(int log2_cycles) {
    if (!blas_threads_are_global() || std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr) {
        return false;
    }
    // openblas_read_env reads the variable into what blas_thread_init, which starts the threads,
    // takes its timeout from; blas_thread_shutdown_ stops them, and the next product that wants
    // them calls blas_thread_init again. The variable stays set, so processes started from this
    // one inherit the setting.
    using Call = void (*)();
    using Timeout = unsigned (*)();
    using Shutdown = int (*)();
    const auto read_env = reinterpret_cast<Call>(dlsym(RTLD_DEFAULT, "openblas_read_env"));
    const auto timeout = reinterpret_cast<Timeout>(dlsym(RTLD_DEFAULT, "openblas_thread_timeout"));
    const auto shutdown = reinterpret_cast<Shutdown>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"));
    if (read_env == nullptr || timeout == nullptr || shutdown == nullptr || log2_cycles < 4 ||
        log2_cycles > 30) {
        return false;
    }
    ::setenv("OPENBLAS_THREAD_TIMEOUT", std::to_string(log2_cycles).c_str(), 1);
    read_env();
    if (timeout() != static_cast<unsigned>(log2_cycles)) return false;
    shutdown();
    return true;
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
