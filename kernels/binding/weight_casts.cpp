#include "kernels/binding/weight_casts.h"

#include <c10/core/InferenceMode.h>
#include <torch/autograd.h>

namespace moelab::kernels {

namespace {

// The cached copy as the cast's output: the forward hands it out (an alias, so that each call's
// graph has its own output), the backward casts the gradient back as the cast would.
class CachedCast : public torch::autograd::Function<CachedCast> {
  public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& master,
                              const at::Tensor& copy) {
        ctx->saved_data["dtype"] = static_cast<std::int64_t>(master.scalar_type());
        return copy.alias();
    }

    static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::tensor_list grads) {
        const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
        return {grads[0].to(dtype), at::Tensor()};
    }
};

}  // namespace

at::Tensor WeightCasts::as(const at::Tensor& master, at::ScalarType dtype) {
    if (master.scalar_type() == dtype) return master;
    // A copy made in inference mode could not be saved for a later training step's backward.
    if (c10::InferenceMode::is_enabled()) return master.to(dtype);
    Entry* entry = nullptr;
    for (Entry& e : entries_) {
        if (e.master.is_same(master) && e.dtype == dtype) entry = &e;
    }
    if (entry == nullptr) {
        entries_.push_back({master, nullptr, -1, dtype, at::Tensor()});
        entry = &entries_.back();
    }
    const std::int64_t version = static_cast<std::int64_t>(master._version());
    if (entry->data != master.data_ptr() || entry->version != version) {
        at::NoGradGuard no_grad;
        entry->copy = master.detach().to(dtype);
        entry->data = master.data_ptr();
        entry->version = version;
        ++casts_;
    }
    if (!master.requires_grad() || !at::GradMode::is_enabled()) return entry->copy;
    return CachedCast::apply(master, entry->copy);
}

}  // namespace moelab::kernels
