#pragma once

// RMSNorm (Zhang & Sennrich, 2019), the norm of every pre-norm block in moelab. Shared by the host
// and plugins so that every block normalises identically. Statistics are computed in fp32 whatever
// the input dtype; the output has the input's dtype.
//
// Since 5.6, float32 CPU inputs normalise in one pass per row forward and backward
// (detail::FusedRmsNorm) instead of a chain of LibTorch operators (square, mean, rsqrt and two
// products forward, about twice as many passes backward, every one over the whole activation).
// The same formula; sums in another order, so the two agree to rounding. Its backward is not
// itself differentiable (no second derivatives, which no moelab training step takes). Since 5.6.1
// its row loops are vector code in release builds too (vectorize.h).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>
#include <torch/nn/module.h>

#include "moelab/sdk/vectorize.h"

namespace moelab::sdk {

namespace detail {

// Sum of a[j] * b[j] over n elements in eight interleaved partial sums (each a dependency chain
// of its own, which the compiler keeps in vector registers), added in a fixed order.
inline float dot8(const float* __restrict a, const float* __restrict b, std::int64_t n) {
    float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int k = 0; k < 8; ++k) partial[k] += a[j + k] * b[j + k];
    }
    for (int k = 0; j < n; ++j, ++k) partial[k] += a[j] * b[j];
    return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
           ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

// One row of the forward: y = x r w, r = (mean(x^2) + eps)^-1/2; returns r.
MOELAB_SDK_VECTORIZE inline float rms_norm_row(const float* __restrict x, const float* __restrict w,
                                               float* __restrict y, std::int64_t dim, float eps) {
    const float mean_square = dot8(x, x, dim) / static_cast<float>(dim);
    const float scale = 1.0f / std::sqrt(mean_square + eps);
    for (std::int64_t j = 0; j < dim; ++j) y[j] = x[j] * scale * w[j];
    return scale;
}

// One row of the backward (see FusedRmsNorm::backward): its input gradient, and its share of the
// weight gradient added to `weight_grad`. `scratch` holds dim floats.
MOELAB_SDK_VECTORIZE inline void rms_norm_row_backward(
    const float* __restrict x, const float* __restrict grad, const float* __restrict w, float r,
    float* __restrict scratch, float* __restrict grad_x, float* __restrict weight_grad,
    std::int64_t dim) {
    for (std::int64_t j = 0; j < dim; ++j) scratch[j] = grad[j] * w[j];
    const float coefficient = r * r * r / static_cast<float>(dim) * dot8(scratch, x, dim);
    for (std::int64_t j = 0; j < dim; ++j) {
        grad_x[j] = r * scratch[j] - x[j] * coefficient;
        weight_grad[j] += grad[j] * x[j] * r;
    }
}

struct FusedRmsNorm : torch::autograd::Function<FusedRmsNorm> {
    // Rows per chunk of the backward's weight gradient: each chunk sums its rows into a partial of
    // its own and the partials are added in chunk order, so the result does not depend on how
    // many threads take the chunks.
    static constexpr std::int64_t kChunkRows = 64;

    // x: (rows, dim) contiguous float32; weight: (dim,) float32.
    static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& x,
                              const at::Tensor& weight, double eps) {
        const std::int64_t rows = x.size(0), dim = x.size(1);
        at::Tensor out = at::empty_like(x);
        at::Tensor inverse_rms = at::empty({rows}, x.options());
        const float* in = x.data_ptr<float>();
        const float* w = weight.data_ptr<float>();
        float* y = out.data_ptr<float>();
        float* r = inverse_rms.data_ptr<float>();
        const float e = static_cast<float>(eps);
        at::parallel_for(0, rows, kChunkRows, [&](std::int64_t begin, std::int64_t end) {
            for (std::int64_t i = begin; i < end; ++i) {
                r[i] = rms_norm_row(in + i * dim, w, y + i * dim, dim, e);
            }
        });
        context->save_for_backward({x, weight, inverse_rms});
        return out;
    }

    // y = x r w with r = (mean(x^2) + eps)^-1/2:
    //   dL/dw_j = sum_i g_ij x_ij r_i
    //   dL/dx_ij = r_i g_ij w_j - x_ij r_i^3 / dim * sum_k g_ik w_k x_ik
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                   torch::autograd::variable_list grads) {
        const auto saved = context->get_saved_variables();
        const at::Tensor &x = saved[0], &weight = saved[1], &inverse_rms = saved[2];
        const at::Tensor grad = grads[0].contiguous();
        const std::int64_t rows = x.size(0), dim = x.size(1);
        at::Tensor grad_x = at::empty_like(x);
        const std::int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
        at::Tensor partials = at::zeros({chunks, dim}, x.options());
        const float* in = x.data_ptr<float>();
        const float* w = weight.data_ptr<float>();
        const float* r = inverse_rms.data_ptr<float>();
        const float* g = grad.data_ptr<float>();
        float* gx = grad_x.data_ptr<float>();
        float* gw = partials.data_ptr<float>();
        at::parallel_for(0, chunks, 1, [&](std::int64_t first, std::int64_t last) {
            std::vector<float> gw_row(static_cast<std::size_t>(dim));
            for (std::int64_t c = first; c < last; ++c) {
                float* partial = gw + c * dim;
                for (std::int64_t i = c * kChunkRows; i < std::min(rows, (c + 1) * kChunkRows);
                     ++i) {
                    rms_norm_row_backward(in + i * dim, g + i * dim, w, r[i], gw_row.data(),
                                          gx + i * dim, partial, dim);
                }
            }
        });
        at::Tensor grad_weight = at::zeros({dim}, x.options());
        float* total = grad_weight.data_ptr<float>();
        for (std::int64_t c = 0; c < chunks; ++c) {
            for (std::int64_t j = 0; j < dim; ++j) total[j] += gw[c * dim + j];
        }
        return {grad_x, grad_weight, at::Tensor()};
    }
};

}  // namespace detail

class RmsNorm : public torch::nn::Module {
  public:
    RmsNorm(std::int64_t dim, double eps) : eps_(eps) {
        weight = register_parameter("weight", at::ones({dim}));
    }

    at::Tensor forward(const at::Tensor& x) const {
        if (x.device().is_cpu() && x.scalar_type() == at::kFloat &&
            weight.scalar_type() == at::kFloat && weight.device().is_cpu() &&
            weight.is_contiguous() && x.dim() >= 1 && x.size(-1) == weight.size(0) &&
            x.numel() > 0) {
            // Named for LibTorch's profilers, which see no operator inside.
            RECORD_FUNCTION("moelab::rms_norm", c10::ArrayRef<const c10::IValue>{});
            const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
            return detail::FusedRmsNorm::apply(rows, weight, eps_).view(x.sizes());
        }
        const at::Tensor x32 = x.to(at::kFloat);
        const at::Tensor scale = at::rsqrt(x32.square().mean(-1, /*keepdim=*/true) + eps_);
        return (x32 * scale * weight.to(at::kFloat)).to(x.scalar_type());
    }

    at::Tensor weight;  // (dim,)

  private:
    double eps_;
};

}  // namespace moelab::sdk
