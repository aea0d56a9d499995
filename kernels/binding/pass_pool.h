#pragma once

// A small pool of threads for the elementwise passes of the CPU kernels (gathers, the fused
// SiLU * up, the combine) and for experts run side by side. moelab keeps LibTorch's intra-op pool
// at one thread so that the BLAS has the cores (docs/threads.md); without a pool of their own these
// passes would run on one core while the BLAS's idle workers spin. The pool's threads block between
// passes and do not spin: a BLAS worker that yields gives its core to them at once.

#include <cstdint>
#include <functional>

namespace moelab::kernels::binding {

// Calls body(begin, end) on chunks covering [0, n) of at least `grain` items, on up to
// pass_threads() threads (the calling thread among them); returns when every chunk is done, and
// rethrows the first exception a chunk threw. Calls from several threads at once are serialised;
// a call from inside a body runs inline.
void run_pass(std::int64_t n, std::int64_t grain,
              const std::function<void(std::int64_t, std::int64_t)>& body);

// Calls task(i) for every i in [0, n) on up to `threads` threads of the pool (at most
// pass_parts()), each thread taking the next task in index order as it becomes free; returns when
// every task is done. A task's exception is rethrown once every thread has stopped (the calling
// thread's first, else a worker's); a thread stops taking tasks at its first exception, so some
// tasks may not run. Run from inside a pass, or with one thread, the tasks run in order on the
// calling thread.
void run_tasks(std::int64_t n, int threads, const std::function<void(std::int64_t)>& task);

// The pool's width: the CPUs this process may use, at most 8 (passes are memory-bound).
int pass_threads();

// At most `parts` chunks per pass from now on (0: the pool's width). For tests: results must not
// depend on it.
void limit_pass_parts(int parts);

// How many chunks a pass is split into at most, now: the pool's width or the limit above.
int pass_parts();

}  // namespace moelab::kernels::binding
