#pragma once

// Master weights in a kernel's compute dtype, cast once per change of the weights instead of on
// every call: an expert bank keeps one WeightCasts and hands it to run_grouped_swiglu. With
// bfloat16 matrix products on a GPU, casting every expert's float32 weights at every layer of
// every forward reads and writes 6 bytes per weight per call for nothing.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace moelab::kernels {

class WeightCasts {
  public:
    // `master` as `dtype`: `master` itself when it has that dtype; otherwise a copy, made again
    // only when `master` has changed since the last call (another tensor, another storage, or a
    // new version: an optimizer step, a load, any in-place write). The result is differentiable
    // back to `master` like a cast: its gradient reaches `master` in master's dtype. In
    // inference mode it casts without keeping the copy (an inference tensor cannot serve a later
    // training step). Writes that bypass the version counter (.data(), raw pointers) are not seen.
    // In inference mode it casts without keeping the copy (an inference tensor cannot serve
    // training later). Writes that bypass the version counter (.data(), raw pointers) are not seen.
    at::Tensor as(const at::Tensor& master, at::ScalarType dtype);

    // Copies made so far (tests).
    std::int64_t casts() const { return casts_; }

  private:
    struct Entry {
        at::Tensor master;  // held, so that no other tensor can take its place unnoticed
        const void* data = nullptr;
        std::int64_t version = -1;
        at::ScalarType dtype = at::kFloat;
        at::Tensor copy;
    };
    std::vector<Entry> entries_;
    std::int64_t casts_ = 0;
};

}  // namespace moelab::kernels
