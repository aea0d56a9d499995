#pragma once

// The GEMM of the process's BLAS, called directly: the Fortran sgemm_/dgemm_ of the OpenBLAS that
// Debian's LibTorch calls too (found at run time, as in blas_threads.h). ATen's own entry point to
// it is not exported, and going through at::mm costs a few microseconds of dispatch per call,
// which the many small products of attention by tiles would pay thousands of times a step.

#include "kernels/cpu/cpu_executor.h"

namespace moelab::kernels::binding {

// Runs the product and returns true; false, having done nothing, where the process's BLAS is not
// OpenBLAS (a PyTorch wheel's MKL is inside libtorch_cpu, not visible) or a size does not fit the
// BLAS's 32-bit integers. The caller then goes through ATen.
bool blas_gemm(const cpu::GemmArgs<float>& args);
bool blas_gemm(const cpu::GemmArgs<double>& args);

}  // namespace moelab::kernels::binding
