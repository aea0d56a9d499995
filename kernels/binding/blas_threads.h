#pragma once

// The threads of the process's BLAS, where it can be told: OpenBLAS, found at run time (Debian's
// LibTorch calls it through libblas.so.3; nothing links it by name). A PyTorch wheel's MKL is not
// steered from here: its calls made on several threads at once would each start a team of their
// own, so callers that need single-threaded GEMMs on several threads check `blas_threads_known`.

namespace moelab::kernels::binding {

// OpenBLAS's thread count, or 0 when the process's BLAS is not OpenBLAS.
int blas_threads();

// Sets OpenBLAS's thread count (from now on, for the whole process); false when there is no
// OpenBLAS to tell.
bool set_blas_threads(int threads);

// While it lives, each GEMM runs on the thread that calls it (OpenBLAS at one thread), so that
// several threads can each run GEMMs of their own; the count before is restored at the end.
// `active()` is false when the BLAS cannot be told.
class SingleThreadedBlas {
  public:
    SingleThreadedBlas();
    ~SingleThreadedBlas();
    SingleThreadedBlas(const SingleThreadedBlas&) = delete;
    SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

    bool active() const { return before_ > 0; }

  private:
    int before_ = 0;
};

}  // namespace moelab::kernels::binding
