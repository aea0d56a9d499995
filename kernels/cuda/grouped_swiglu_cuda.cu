#include "kernels/cuda/grouped_swiglu_cuda.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace moelab::kernels::cuda {

namespace {

// One tile per block, the steps of kernels/cuda/grouped_gemm_tile.h.
template <bool kWeightGemm>
__global__ void __launch_bounds__(tile::kThreads) grouped_gemm(const tile::GemmProblem problem) {
    __shared__ tile::Shared shared;
    const tile::Tile t = kWeightGemm ? tile::weight_tile(problem, blockIdx.x, blockIdx.y)
                                     : tile::rows_tile(problem, blockIdx.x, blockIdx.y);
    if (!t.valid) return;  // the same for every thread of the block
    tile::Accumulator acc{};
    const int thread = static_cast<int>(threadIdx.x);
    for (std::int64_t k0 = 0; k0 < t.depth(); k0 += tile::kDepth) {
        tile::load(problem, t, k0, thread, shared);
        __syncthreads();
        tile::multiply(problem, shared, thread, acc);
        __syncthreads();
    }
    tile::finish(problem, t, thread, acc);
}

// One block per token, threads along the row.
__global__ void combine(const float* rows, std::int64_t width, const std::int64_t* token_offsets,
                        const std::int64_t* rows_of_token, void* out, tile::Element out_element) {
    const std::int64_t token = blockIdx.x;
    const tile::Output output{out, out_element, width, 0};
    for (std::int64_t j = threadIdx.x; j < width; j += blockDim.x) {
        tile::put(output, 0, token, j,
                  tile::combined(rows, width, token_offsets, rows_of_token, token, j));
    }
}

void check_launch(const char* what) {
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
    }
}

unsigned column_tiles(const tile::GemmProblem& problem) {
    return static_cast<unsigned>((problem.columns + tile::kCols - 1) / tile::kCols);
}

}  // namespace

// The number of routed rows is on the device: the grid covers the most tiles any plan of these
// rows can need (rows_tile_bound), and the blocks past the plan's tiles return at once.
void launch_rows_gemm(const tile::GemmProblem& problem, std::int64_t rows, void* stream) {
    const std::int64_t row_tiles = tile::rows_tile_bound(rows, problem.experts);
    if (rows == 0 || problem.columns == 0) return;
    grouped_gemm<false><<<dim3(static_cast<unsigned>(row_tiles), column_tiles(problem)),
                          tile::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(problem);
    check_launch("grouped_cuda rows GEMM");
}

void launch_weight_gemm(const tile::GemmProblem& problem, void* stream) {
    const std::int64_t row_tiles =
        (problem.height + tile::kRows - 1) / tile::kRows * problem.experts;
    if (row_tiles == 0 || problem.columns == 0) return;
    grouped_gemm<true><<<dim3(static_cast<unsigned>(row_tiles), column_tiles(problem)),
                         tile::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(problem);
    check_launch("grouped_cuda weight GEMM");
}

void launch_combine(const float* rows, std::int64_t width, const std::int64_t* token_offsets,
                    const std::int64_t* rows_of_token, std::int64_t tokens, void* out,
                    tile::Element out_element, void* stream) {
    if (tokens == 0 || width == 0) return;
    combine<<<static_cast<unsigned>(tokens), 128, 0, static_cast<cudaStream_t>(stream)>>>(
        rows, width, token_offsets, rows_of_token, out, out_element);
    check_launch("grouped_cuda combine");
}

}  // namespace moelab::kernels::cuda
