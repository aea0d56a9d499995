#pragma once

// The CpuExecutor every CPU launcher of the binding runs on: the process's BLAS for products
// (called directly where it can be, blas_gemm.h, else through ATen), the pass pool for loops and
// tasks, and single-threaded products inside tasks (Note [Experts side by side]).

#include "kernels/cpu/cpu_executor.h"

namespace moelab::kernels::binding {

const cpu::CpuExecutor& cpu_executor();

// The product through ATen, which cpu_executor() uses where the BLAS cannot be called directly
// (declared for the tests, which run both).
void aten_gemm(const cpu::GemmArgs<float>& args);
void aten_gemm(const cpu::GemmArgs<double>& args);

}  // namespace moelab::kernels::binding
