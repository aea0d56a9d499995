#include "core/plugin/host_attention_kernels.h"

#include "kernels/binding/causal_attention.h"

namespace moelab {

namespace {

class HostAttentionKernels final : public sdk::AttentionKernels {
  public:
    at::Tensor causal_attention(const at::Tensor& query, const at::Tensor& key,
                                const at::Tensor& value, double scale) const override {
        // Refused inputs (another device or dtype) are the plugin's to compute, as the interface
        // promises; only the kernel's own failures are errors.
        if (kernels::binding::causal_attention_refusal(query, key, value)) return {};
        return kernels::binding::causal_attention(query, key, value, scale);
    }
};

}  // namespace

const sdk::AttentionKernels& host_attention_kernels() {
    static const HostAttentionKernels kernels;
    return kernels;
}

}  // namespace moelab
