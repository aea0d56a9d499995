#include "kernels/cuda/swiglu_rows_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace moelab::kernels::cuda {

namespace {

constexpr int kThreads = 256;
// The block reduction halves its width: a power of two.
static_assert((kThreads & (kThreads - 1)) == 0);

__device__ inline float load(const float* p, std::int64_t i) { return p[i]; }
__device__ inline float load(const __nv_bfloat16* p, std::int64_t i) {
    return __bfloat162float(p[i]);
}
__device__ inline void store(float* p, std::int64_t i, float v) { p[i] = v; }
__device__ inline void store(__nv_bfloat16* p, std::int64_t i, float v) {
    p[i] = __float2bfloat16(v);
}

__device__ inline float sigmoid(float g) { return 1.0f / (1.0f + __expf(-g)); }

// One block per row; threads stride over the row's d_ff columns.
template <class T>
__global__ void forward_rows(const T* __restrict__ pre, const float* __restrict__ weight,
                             T* __restrict__ act, std::int64_t rows, std::int64_t d_ff,
                             const std::int64_t* __restrict__ routed_end) {
    const std::int64_t r = blockIdx.x;
    if (r >= rows) return;
    const bool routed = r < *routed_end;
    const T* gate = pre + r * 2 * d_ff;
    const T* up = gate + d_ff;
    T* out = act + r * d_ff;
    const float w = routed ? weight[r] : 0.0f;
    for (std::int64_t j = threadIdx.x; j < d_ff; j += blockDim.x) {
        if (!routed) {
            store(out, j, 0.0f);
            continue;
        }
        const float g = load(gate, j);
        store(out, j, w * g * sigmoid(g) * load(up, j));
    }
}

template <class T>
__global__ void backward_rows(const T* __restrict__ pre, const T* __restrict__ grad_act,
                              const float* __restrict__ weight, T* __restrict__ grad_pre,
                              float* __restrict__ grad_weight, std::int64_t rows, std::int64_t d_ff,
                              const std::int64_t* __restrict__ routed_end) {
    __shared__ float partial[kThreads];
    const std::int64_t r = blockIdx.x;
    if (r >= rows) return;
    const bool routed = r < *routed_end;
    const T* gate = pre + r * 2 * d_ff;
    const T* up = gate + d_ff;
    const T* da = grad_act + r * d_ff;
    T* d_gate = grad_pre + r * 2 * d_ff;
    T* d_up = d_gate + d_ff;
    const float w = routed ? weight[r] : 0.0f;
    float dot = 0.0f;
    for (std::int64_t j = threadIdx.x; j < d_ff; j += blockDim.x) {
        if (!routed) {
            store(d_gate, j, 0.0f);
            store(d_up, j, 0.0f);
            continue;
        }
        const float g = load(gate, j), u = load(up, j), a = load(da, j);
        const float s = sigmoid(g);
        const float silu = g * s;
        dot += a * silu * u;
        const float d = w * a;
        store(d_gate, j, d * u * s * (1.0f + g * (1.0f - s)));
        store(d_up, j, d * silu);
    }
    // A fixed-shape tree over the block's partial sums: the same order on every run.
    partial[threadIdx.x] = dot;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) grad_weight[r] = routed ? partial[0] : 0.0f;
}

void check_launch(const char* what) {
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
    }
}

}  // namespace

void swiglu_rows_forward(Element type, const void* pre, const float* weight, void* act,
                         std::int64_t rows, std::int64_t d_ff, const std::int64_t* routed_end,
                         void* stream) {
    if (rows == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    if (type == Element::kFloat32) {
        forward_rows<<<rows, kThreads, 0, s>>>(static_cast<const float*>(pre), weight,
                                               static_cast<float*>(act), rows, d_ff, routed_end);
    } else {
        forward_rows<<<rows, kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(pre), weight,
                                               static_cast<__nv_bfloat16*>(act), rows, d_ff,
                                               routed_end);
    }
    check_launch("swiglu_rows_forward");
}

void swiglu_rows_backward(Element type, const void* pre, const void* grad_act, const float* weight,
                          void* grad_pre, float* grad_weight, std::int64_t rows, std::int64_t d_ff,
                          const std::int64_t* routed_end, void* stream) {
    if (rows == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    if (type == Element::kFloat32) {
        backward_rows<<<rows, kThreads, 0, s>>>(
            static_cast<const float*>(pre), static_cast<const float*>(grad_act), weight,
            static_cast<float*>(grad_pre), grad_weight, rows, d_ff, routed_end);
    } else {
        backward_rows<<<rows, kThreads, 0, s>>>(
            static_cast<const __nv_bfloat16*>(pre), static_cast<const __nv_bfloat16*>(grad_act),
            weight, static_cast<__nv_bfloat16*>(grad_pre), grad_weight, rows, d_ff, routed_end);
    }
    check_launch("swiglu_rows_backward");
}

}  // namespace moelab::kernels::cuda
