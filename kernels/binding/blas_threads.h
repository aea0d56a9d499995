#pragma once

// The threads of the process's BLAS, where it can be told: OpenBLAS, found at run time (Debian's
// LibTorch calls it through libblas.so.3; nothing links it by name). A PyTorch wheel's MKL is not
// steered from here, and neither is OpenBLAS built with OpenMP, which takes each call's thread
// count from the calling thread: there, GEMMs called from several threads at once would each start
// a team of their own, so a caller that wants that checks blas_threads_are_global() first.

namespace moelab::kernels::binding {

// OpenBLAS's thread count, or 0 when the process's BLAS is not OpenBLAS.
int blas_threads();

// Sets OpenBLAS's thread count (from now on, for the whole process); false when there is no
// OpenBLAS to tell.
bool set_blas_threads(int threads);

// Whether OpenBLAS's thread count is one setting for every calling thread (its pthreads build),
// so that SingleThreadedBlas makes GEMMs called from any thread run on that thread alone.
bool blas_threads_are_global();

// While one lives (on any thread), each GEMM runs on the thread that calls it (OpenBLAS at one
// thread), so that several threads can each run GEMMs of their own; when the last one ends, the
// count from before the first is restored. Does nothing unless blas_threads_are_global().
class SingleThreadedBlas {
  public:
    SingleThreadedBlas();
    ~SingleThreadedBlas();
    SingleThreadedBlas(const SingleThreadedBlas&) = delete;
    SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

  private:
    bool active_ = false;
};

}  // namespace moelab::kernels::binding
