#pragma once

// bfloat16 autocast on CUDA for the duration of a scope (model.dtype = "bfloat16"). Weights, the
// optimizer and routing stay in float32 (routers run under sdk::NoAutocast).

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace moelab::core {

class CudaAutocastScope {
  public:
    explicit CudaAutocastScope(bool enabled) : enabled_(enabled) {
        if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
        at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
        at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
        at::autocast::set_enabled(true);
#endif
    }
    ~CudaAutocastScope() {
        if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
        at::autocast::set_enabled(false);
#endif
        at::autocast::clear_cache();
    }
    CudaAutocastScope(const CudaAutocastScope&) = delete;
    CudaAutocastScope& operator=(const CudaAutocastScope&) = delete;

  private:
    bool enabled_;
};

}  // namespace moelab::core
