#pragma once

// The dense FFN sub-layer of a dense transformer layer: h + W_out(SiLU(gate) * up) on RMSNorm(h).

#include <cstdint>
#include <memory>

#include "moelab/sdk/rms_norm.h"

namespace moelab::core {

class SwiGluFfn : public torch::nn::Module {
public:
    SwiGluFfn(std::int64_t d_model, std::int64_t d_ff, double norm_eps, double init_std,
              double output_init_std, std::uint64_t seed);

    // (tokens, d_model) -> (tokens, d_model), residual included.
    at::Tensor forward(const at::Tensor& hidden);

    at::Tensor w_in;   // (d_model, 2 * d_ff): [gate | up]
    at::Tensor w_out;  // (d_ff, d_model)

private:
    std::shared_ptr<sdk::RmsNorm> norm_;
};

}  // namespace moelab::core
