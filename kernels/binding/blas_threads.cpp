#include "kernels/binding/blas_threads.h"

#include <dlfcn.h>

namespace moelab::kernels::binding {

namespace {

using GetThreads = int (*)();
using SetThreads = void (*)(int);

GetThreads openblas_get() {
    static const auto get =
        reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return get;
}

SetThreads openblas_set() {
    static const auto set =
        reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    return set;
}

}  // namespace

int blas_threads() {
    const GetThreads get = openblas_get();
    return get != nullptr && openblas_set() != nullptr ? get() : 0;
}

bool set_blas_threads(int threads) {
    const SetThreads set = openblas_set();
    if (set == nullptr || threads < 1) return false;
    set(threads);
    return true;
}

SingleThreadedBlas::SingleThreadedBlas() : before_(blas_threads()) {
    if (before_ > 1) set_blas_threads(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
    if (before_ > 1) set_blas_threads(before_);
}

}  // namespace moelab::kernels::binding
