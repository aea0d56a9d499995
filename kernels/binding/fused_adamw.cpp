#include "kernels/binding/fused_adamw.h"

#include <cstdint>

#include <ATen/record_function.h>

#include "kernels/binding/pass_pool.h"
#include "kernels/cpu/adamw_cpu.h"

namespace moelab::kernels::binding {

namespace {

// Elements per chunk of the pass: large enough that a chunk's four streams outlast the handover
// to a pool thread.
constexpr std::int64_t kGrain = 1 << 15;

template <class T>
void update(at::Tensor& param, const at::Tensor& grad, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
            const AdamWConstants& c) {
    const cpu::AdamWStep<T> step{static_cast<T>(c.beta1),     static_cast<T>(c.beta2),
                                 static_cast<T>(c.eps),       static_cast<T>(c.decay),
                                 static_cast<T>(c.step_size), static_cast<T>(c.sqrt_correction2)};
    T* p = param.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* m = exp_avg.data_ptr<T>();
    T* v = exp_avg_sq.data_ptr<T>();
    run_pass(param.numel(), kGrain, [&](std::int64_t begin, std::int64_t end) {
        cpu::adamw_update(step, p, g, m, v, begin, end);
    });
}

}  // namespace

bool fused_adamw_step(at::Tensor& param, const at::Tensor& grad, at::Tensor& exp_avg,
                      at::Tensor& exp_avg_sq, const AdamWConstants& constants) {
    const at::ScalarType dtype = param.scalar_type();
    if (dtype != at::kFloat && dtype != at::kDouble) return false;
    for (const at::Tensor* t :
         {static_cast<const at::Tensor*>(&param), &grad, static_cast<const at::Tensor*>(&exp_avg),
          static_cast<const at::Tensor*>(&exp_avg_sq)}) {
        if (!t->device().is_cpu() || t->scalar_type() != dtype || !t->is_contiguous() ||
            t->numel() != param.numel()) {
            return false;
        }
    }
    RECORD_FUNCTION("moelab::adamw_step", c10::ArrayRef<const c10::IValue>{});
    if (dtype == at::kFloat) {
        update<float>(param, grad, exp_avg, exp_avg_sq, constants);
    } else {
        update<double>(param, grad, exp_avg, exp_avg_sq, constants);
    }
    // Written through raw pointers: count the writes as LibTorch's in-place operations do, so
    // that whatever keys on a tensor's version (autograd's check of saved tensors, the cached
    // casts of weight_casts.h) sees the update.
    for (at::Tensor* t : {&param, &exp_avg, &exp_avg_sq}) t->unsafeGetTensorImpl()->bump_version();
    return true;
}

}  // namespace moelab::kernels::binding
