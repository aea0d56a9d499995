#pragma once

// Sees every layer's attention step during a forward pass: what calibration (Note [Calibration]
// in the SDK's calibration.h) records of a model. Set in ForwardOptions::observer.

#include <ATen/core/Tensor.h>

namespace moelab::core {

class LayerObserver {
  public:
    virtual ~LayerObserver() = default;
    // `normed`: the attention's input RmsNorm(x_l); `post_attention`: x_l plus the attention
    // branch, before the FFN. Both (batch, seq, d_model).
    virtual void attention_done(int layer, const at::Tensor& normed,
                                const at::Tensor& post_attention) = 0;
};

}  // namespace moelab::core
