#pragma once

// The `grouped_cuda` kernel's launchers, torch-free: grouped SwiGLU experts on any CUDA GPU in
// float32 or bfloat16, the plan's group ends read on the device (no host synchronisation), the
// gather of routed tokens fused into the GEMMs' loads and SwiGLU with the routing weight into the
// first GEMM's epilogue (kernels/cuda/grouped_swiglu_steps.h), and a deterministic combine.
// `stream` is a cudaStream_t. C++17 (nvcc).

#include <cstdint>

#include "kernels/cuda/grouped_swiglu_steps.h"

namespace moelab::kernels::cuda {

// Runs one grouped GEMM problem as a rows GEMM (an expert's rows are M; `rows`: the plan's rows,
// routed or not) or a weight GEMM (an expert's rows are K; one output matrix per expert).
void launch_rows_gemm(const tile::GemmProblem& problem, std::int64_t rows, void* stream);
void launch_weight_gemm(const tile::GemmProblem& problem, void* stream);

// out(t, j) = sum of rows(r, j) over the rows of token t in ascending order (out: tokens x width,
// `out_element`); token_offsets (tokens + 1) and rows_of_token index the rows by token.
void launch_combine(const float* rows, std::int64_t width, const std::int64_t* token_offsets,
                    const std::int64_t* rows_of_token, std::int64_t tokens, void* out,
                    tile::Element out_element, void* stream);

}  // namespace moelab::kernels::cuda
