#pragma once

// RMSNorm (Zhang & Sennrich, 2019), the norm of every pre-norm block in moelab. Shared by the host
// and plugins so that every block normalises identically. Statistics are computed in fp32 whatever
// the input dtype; the output has the input's dtype.

#include <cstdint>

#include <torch/nn/module.h>

namespace moelab::sdk {

class RmsNorm : public torch::nn::Module {
  public:
    RmsNorm(std::int64_t dim, double eps) : eps_(eps) {
        weight = register_parameter("weight", at::ones({dim}));
    }

    at::Tensor forward(const at::Tensor& x) const {
        const at::Tensor x32 = x.to(at::kFloat);
        const at::Tensor scale = at::rsqrt(x32.square().mean(-1, /*keepdim=*/true) + eps_);
        return (x32 * scale * weight.to(at::kFloat)).to(x.scalar_type());
    }

    at::Tensor weight;  // (dim,)

  private:
    double eps_;
};

}  // namespace moelab::sdk
