#pragma once

// A small pool of threads for the elementwise passes of the CPU kernels (gathers, the fused
// SiLU * up, the combine). moelab keeps LibTorch's intra-op pool at one thread so that the BLAS has
// the cores (docs/threads.md); without a pool of their own these passes would run on one core
// while the BLAS's idle workers spin. The pool's threads block between passes and do not spin:
// a BLAS worker that yields gives its core to them at once.

#include <cstdint>
#include <functional>

namespace moelab::kernels::binding {

// Calls body(begin, end) on chunks covering [0, n) of at least `grain` items, on up to
// `threads()` threads (the calling thread among them); returns when every chunk is done.
// Calls from several threads at once are serialised.
void run_pass(std::int64_t n, std::int64_t grain,
              const std::function<void(std::int64_t, std::int64_t)>& body);

// The pool's width: the machine's hardware threads, at most 8 (passes are memory-bound).
int pass_threads();

}  // namespace moelab::kernels::binding
