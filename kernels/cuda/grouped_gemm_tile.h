#pragma once

// One tile of moelab's hand-written grouped GEMMs (the `grouped_cuda` kernel), in plain C++ that
// nvcc compiles for the GPU and the host compiler for the tests. A CUDA block runs
//
//   tile = rows_tile(...) or weight_tile(...);  if (!tile.valid) return;
//   Accumulator acc{};
//   for (k0 = 0; k0 < tile.depth(); k0 += kDepth) {
//       load(problem, tile, k0, thread, shared);  __syncthreads();
//       multiply(problem, shared, thread, acc);   __syncthreads();
//   }
//   finish(problem, tile, thread, acc);
//
// and tests/kernels/grouped_gemm_tile_test.cpp runs the same steps thread by thread on the CPU,
// so that the index arithmetic (groups found on the device, gathers, transposes, edges, the SwiGLU
// epilogue) is tested where no GPU is.
//
// Two shapes of grouped GEMM, both over the rows of a routing plan grouped by expert (group_ends
// read on the device: no host synchronisation):
//   rows GEMM    C[r, n] = sum_k A(r, k) B_e(k, n) for the rows r of each expert e
//                (the expert's rows are the M dimension; K and N are fixed)
//   weight GEMM  C_e[m, n] = sum over the rows r of expert e of A(m, r) B(r, n)
//                (the expert's rows are the K dimension: the weight gradients)
// Operands are read through `fetch`, which applies an optional row gather (the routed tokens:
// the gather is fused into the loads) and a transpose, and converts bfloat16 to float32; sums are
// float32. Master weights are read as they are stored (float32), never cast per call.
//
// A SIMT kernel (no tensor cores): correct on every GPU moelab builds for, far from the tensor-core
// peak; on sm90 with LibTorch >= 2.8 the `grouped_mm` kernel uses CUTLASS's grouped GEMM instead.
// C++17 (nvcc).

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cuda/element.h"

#if defined(__CUDACC__)
#define MOELAB_HD __host__ __device__ inline
#else
#define MOELAB_HD inline
#endif

namespace moelab::kernels::cuda::tile {

constexpr int kRows = 64;      // M per tile
constexpr int kCols = 64;      // N per tile
constexpr int kDepth = 16;     // K per step
constexpr int kThreads = 256;  // 16 x 16 threads
constexpr int kSide = 16;      // threads per side
constexpr int kPerThread = 4;  // 4 x 4 outputs per thread: (ty + 16 i, tx + 16 j)
static_assert(kSide * kSide == kThreads && kSide * kPerThread == kRows && kRows == kCols);

using cuda::Element;

MOELAB_HD float float_of_bits(std::uint32_t bits) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
#endif
}

MOELAB_HD std::uint32_t bits_of_float(float value) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(value);
#else
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
#endif
}

// bfloat16 is the upper half of a float32.
MOELAB_HD float bfloat16_to_float(std::uint16_t bits) {
    return float_of_bits(static_cast<std::uint32_t>(bits) << 16);
}

// Round to nearest, ties to even (what __float2bfloat16 does); NaN stays NaN.
MOELAB_HD std::uint16_t float_to_bfloat16(float value) {
    const std::uint32_t bits = bits_of_float(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// The value `value` becomes when stored as `element`.
MOELAB_HD float rounded(Element element, float value) {
    return element == Element::kFloat32 ? value : bfloat16_to_float(float_to_bfloat16(value));
}

// A matrix operand. Logical element (i, j) is physical (i, j), or (j, i) when `transposed`;
// physical row p is stored at row gather[p] when there is a gather; each expert's matrix starts
// expert_stride elements after the one before (0: one matrix for all).
struct Operand {
    const void* data = nullptr;
    Element element = Element::kFloat32;
    std::int64_t ld = 0;
    std::int64_t expert_stride = 0;
    const std::int64_t* gather = nullptr;
    bool transposed = false;
};

MOELAB_HD float fetch(const Operand& op, std::int64_t expert, std::int64_t i, std::int64_t j) {
    std::int64_t row = op.transposed ? j : i;
    const std::int64_t col = op.transposed ? i : j;
    if (op.gather != nullptr) row = op.gather[row];
    const std::int64_t at = expert * op.expert_stride + row * op.ld + col;
    return op.element == Element::kFloat32
               ? static_cast<const float*>(op.data)[at]
               : bfloat16_to_float(static_cast<const std::uint16_t*>(op.data)[at]);
}

// A matrix written by the epilogue, addressed like an Operand without gather or transpose.
struct Output {
    void* data = nullptr;
    Element element = Element::kFloat32;
    std::int64_t ld = 0;
    std::int64_t expert_stride = 0;
};

MOELAB_HD void put(const Output& out, std::int64_t expert, std::int64_t i, std::int64_t j,
                   float value) {
    const std::int64_t at = expert * out.expert_stride + i * out.ld + j;
    if (out.element == Element::kFloat32) {
        static_cast<float*>(out.data)[at] = value;
    } else {
        static_cast<std::uint16_t*>(out.data)[at] = float_to_bfloat16(value);
    }
}

enum class Epilogue : std::uint8_t {
    kStore,   // c(r, n) = the sum
    kSwiglu,  // the first expert GEMM: B has 2 n columns, gate (n) then up (n + columns);
              // c = pre (gate | up, 2 n per row), act(r, n) = weight[r] SiLU(gate) up
};

struct GemmProblem {
    Operand a;                                 // logical (M, K)
    Operand b;                                 // logical (K, N), per expert
    std::int64_t columns = 0;                  // N (for kSwiglu: d_ff; B has 2 d_ff columns)
    std::int64_t depth = 0;                    // rows GEMM: K
    std::int64_t height = 0;                   // weight GEMM: M
    const std::int64_t* group_ends = nullptr;  // experts, on the device
    std::int64_t experts = 0;
    Epilogue epilogue = Epilogue::kStore;
    Output c;
    Output act;                     // kSwiglu
    const float* weight = nullptr;  // kSwiglu: the routing weight of each row
};

// The output rows [m_begin, m_end) and depth [k_begin, k_end) of one tile of expert `expert`,
// columns from n_begin.
struct Tile {
    bool valid = false;
    std::int64_t expert = 0;
    std::int64_t m_begin = 0, m_end = 0;
    std::int64_t k_begin = 0, k_end = 0;
    std::int64_t n_begin = 0;

    MOELAB_HD std::int64_t depth() const { return k_end - k_begin; }
};

MOELAB_HD std::int64_t group_begin(const GemmProblem& p, std::int64_t expert) {
    return expert == 0 ? 0 : p.group_ends[expert - 1];
}

// Rows GEMM: row tile `block_m` counts the tiles of every expert's rows in expert order; a grid
// of rows_tile_bound(rows, experts) row tiles covers any plan, and the tiles past the plan's are
// not valid.
MOELAB_HD Tile rows_tile(const GemmProblem& p, std::int64_t block_m, std::int64_t block_n) {
    Tile tile;
    std::int64_t start = 0;
    for (std::int64_t e = 0; e < p.experts; ++e) {
        const std::int64_t end = p.group_ends[e];
        const std::int64_t tiles = end > start ? (end - start + kRows - 1) / kRows : 0;
        if (block_m < tiles) {
            tile.valid = true;
            tile.expert = e;
            tile.m_begin = start + block_m * kRows;
            tile.m_end = tile.m_begin + kRows < end ? tile.m_begin + kRows : end;
            tile.k_begin = 0;
            tile.k_end = p.depth;
            tile.n_begin = block_n * kCols;
            return tile;
        }
        block_m -= tiles;
        start = end > start ? end : start;
    }
    return tile;
}

// Each expert's rows take at most one partial tile beyond rows / kRows.
MOELAB_HD std::int64_t rows_tile_bound(std::int64_t rows, std::int64_t experts) {
    return (rows + kRows - 1) / kRows + experts;
}

// Weight GEMM: block_m = expert * height tiles + the tile of M.
MOELAB_HD Tile weight_tile(const GemmProblem& p, std::int64_t block_m, std::int64_t block_n) {
    const std::int64_t per_expert = (p.height + kRows - 1) / kRows;
    Tile tile;
    tile.valid = per_expert > 0 && block_m < per_expert * p.experts;
    if (!tile.valid) return tile;
    tile.expert = block_m / per_expert;
    tile.m_begin = (block_m % per_expert) * kRows;
    tile.m_end = tile.m_begin + kRows < p.height ? tile.m_begin + kRows : p.height;
    tile.k_begin = group_begin(p, tile.expert);
    tile.k_end = p.group_ends[tile.expert];
    if (tile.k_end < tile.k_begin) tile.k_end = tile.k_begin;
    tile.n_begin = block_n * kCols;
    return tile;
}

struct Shared {
    float a[kDepth][kRows];
    float b[kDepth][kCols];
    float b_up[kDepth][kCols];  // kSwiglu: the up columns
};

struct Accumulator {
    float sum[kPerThread][kPerThread];
    float up[kPerThread][kPerThread];  // kSwiglu
};

// Thread `thread` loads its share of the tile's step k0: A (rows x depth) and B (depth x columns),
// zero outside the matrices. Consecutive threads read along each operand's contiguous dimension.
MOELAB_HD void load(const GemmProblem& p, const Tile& t, std::int64_t k0, int thread, Shared& s) {
    for (int i = thread; i < kDepth * kRows; i += kThreads) {
        const bool k_fast = !p.a.transposed;  // physical rows of A run along M
        const int kk = k_fast ? i % kDepth : i / kRows;
        const int mm = k_fast ? i / kDepth : i % kRows;
        const std::int64_t m = t.m_begin + mm, k = t.k_begin + k0 + kk;
        s.a[kk][mm] = m < t.m_end && k < t.k_end ? fetch(p.a, t.expert, m, k) : 0.0f;
    }
    const bool swiglu = p.epilogue == Epilogue::kSwiglu;
    for (int i = thread; i < kDepth * kCols; i += kThreads) {
        const bool k_fast = p.b.transposed;
        const int kk = k_fast ? i % kDepth : i / kCols;
        const int nn = k_fast ? i / kDepth : i % kCols;
        const std::int64_t n = t.n_begin + nn, k = t.k_begin + k0 + kk;
        const bool inside = n < p.columns && k < t.k_end;
        s.b[kk][nn] = inside ? fetch(p.b, t.expert, k, n) : 0.0f;
        if (swiglu) s.b_up[kk][nn] = inside ? fetch(p.b, t.expert, k, n + p.columns) : 0.0f;
    }
}

MOELAB_HD void multiply(const GemmProblem& p, const Shared& s, int thread, Accumulator& acc) {
    const int ty = thread / kSide, tx = thread % kSide;
    const bool swiglu = p.epilogue == Epilogue::kSwiglu;
    for (int kk = 0; kk < kDepth; ++kk) {
        float a[kPerThread], b[kPerThread], b_up[kPerThread];
        for (int i = 0; i < kPerThread; ++i) a[i] = s.a[kk][ty + kSide * i];
        for (int j = 0; j < kPerThread; ++j) {
            b[j] = s.b[kk][tx + kSide * j];
            b_up[j] = swiglu ? s.b_up[kk][tx + kSide * j] : 0.0f;
        }
        for (int i = 0; i < kPerThread; ++i) {
            for (int j = 0; j < kPerThread; ++j) acc.sum[i][j] += a[i] * b[j];
        }
        if (!swiglu) continue;
        for (int i = 0; i < kPerThread; ++i) {
            for (int j = 0; j < kPerThread; ++j) acc.up[i][j] += a[i] * b_up[j];
        }
    }
}

MOELAB_HD float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

MOELAB_HD void finish(const GemmProblem& p, const Tile& t, int thread, const Accumulator& acc) {
    const int ty = thread / kSide, tx = thread % kSide;
    for (int i = 0; i < kPerThread; ++i) {
        const std::int64_t m = t.m_begin + ty + kSide * i;
        if (m >= t.m_end) continue;
        for (int j = 0; j < kPerThread; ++j) {
            const std::int64_t n = t.n_begin + tx + kSide * j;
            if (n >= p.columns) continue;
            if (p.epilogue == Epilogue::kStore) {
                put(p.c, t.expert, m, n, acc.sum[i][j]);
                continue;
            }
            // The activation from the values the backward will read (pre as stored).
            const float gate = rounded(p.c.element, acc.sum[i][j]);
            const float up = rounded(p.c.element, acc.up[i][j]);
            put(p.c, 0, m, n, gate);
            put(p.c, 0, m, n + p.columns, up);
            put(p.act, 0, m, n, p.weight[m] * gate * sigmoid(gate) * up);
        }
    }
}

// The combine: out(t, j) = sum of rows(r, j) over the rows r of token t in ascending order
// (rows_of_token[token_offsets[t] .. token_offsets[t + 1])): a fixed order, so deterministic.
MOELAB_HD float combined(const float* rows, std::int64_t width, const std::int64_t* token_offsets,
                         const std::int64_t* rows_of_token, std::int64_t token, std::int64_t j) {
    float sum = 0.0f;
    for (std::int64_t i = token_offsets[token]; i < token_offsets[token + 1]; ++i) {
        sum += rows[rows_of_token[i] * width + j];
    }
    return sum;
}

}  // namespace moelab::kernels::cuda::tile
