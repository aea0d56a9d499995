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

// Makes OpenBLAS's idle threads spin for at most 2^log2_cycles processor cycles (sched_yield in
// a loop) waiting for the next product before they sleep, from now on; returns whether it did.
// OpenBLAS's default, 2^28 cycles (about 0.1 s), keeps its workers spinning through everything
// that runs between two multi-threaded products, and on a machine with few cores the threads that
// run the kernels' tasks and passes then share their cores with them: on 2 cores a fifth of the
// quickstart's CPU time went to sched_yield. OpenBLAS reads the setting when it starts its
// threads, so this stops them (the next product starts them again) and sets the environment
// variable: call it while no other thread is inside the BLAS or reads the environment (moelab does
// at a command's start, core/system/threads.h). Does nothing where OPENBLAS_THREAD_TIMEOUT is set
// in the environment (the same setting, the user's choice), or where blas_threads_are_global() is
// false or OpenBLAS does not export what this needs.
bool set_blas_idle_spin(int log2_cycles);

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
