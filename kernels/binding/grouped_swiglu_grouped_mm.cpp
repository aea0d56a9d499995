#include "kernels/binding/grouped_swiglu_grouped_mm.h"

#include <stdexcept>

#include <torch/version.h>

#if defined(MOELAB_CUDA) && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8))
#define MOELAB_HAS_GROUPED_MM 1
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "kernels/binding/cuda_element.h"
#include "kernels/cuda/swiglu_rows_cuda.h"
#endif

namespace moelab::kernels::binding {

#ifdef MOELAB_HAS_GROUPED_MM

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// act = weight * SiLU(gate) * up on the routed rows, zero on the others (whatever the grouped GEMM
// left there), and zero gradients for them too.
class SwigluRowsFunction : public torch::autograd::Function<SwigluRowsFunction> {
  public:
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& pre, const at::Tensor& weight,
                              const at::Tensor& routed_end) {
        const c10::cuda::CUDAGuard device(pre.device());
        const at::Tensor pre_c = pre.contiguous();
        const std::int64_t rows = pre_c.size(0), d_ff = pre_c.size(1) / 2;
        at::Tensor act = at::empty({rows, d_ff}, pre_c.options());
        cuda::swiglu_rows_forward(element_of(pre_c), pre_c.data_ptr(), weight.data_ptr<float>(),
                                  act.data_ptr(), rows, d_ff, routed_end.data_ptr<std::int64_t>(),
                                  at::cuda::getCurrentCUDAStream().stream());
        ctx->save_for_backward({pre_c, weight, routed_end});
        return act;
    }

    static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &pre = saved[0], &weight = saved[1], &routed_end = saved[2];
        const c10::cuda::CUDAGuard device(pre.device());
        const at::Tensor grad_act = grads[0].to(pre.scalar_type()).contiguous();
        const std::int64_t rows = pre.size(0), d_ff = pre.size(1) / 2;
        at::Tensor grad_pre = at::empty_like(pre);
        at::Tensor grad_weight = at::empty_like(weight);
        cuda::swiglu_rows_backward(
            element_of(pre), pre.data_ptr(), grad_act.data_ptr(), weight.data_ptr<float>(),
            grad_pre.data_ptr(), grad_weight.data_ptr<float>(), rows, d_ff,
            routed_end.data_ptr<std::int64_t>(), at::cuda::getCurrentCUDAStream().stream());
        return {grad_pre, grad_weight, at::Tensor()};
    }
};

}  // namespace

bool grouped_mm_built() { return true; }

at::Tensor grouped_swiglu_grouped_mm(const at::Tensor& x, const RoutedRows& routed,
                                     const at::Tensor& w_in, const at::Tensor& w_out,
                                     WeightCasts* casts) {
    const c10::cuda::CUDAGuard device(x.device());
    const std::int64_t rows = routed.token.size(0);
    const std::int64_t experts = routed.group_ends.size(0);
    // Everything below stays on the device: the routed rows end where the last group does.
    const at::Tensor routed_end = routed.group_ends.narrow(0, experts - 1, 1).contiguous();
    const at::Tensor routed_row =
        (at::arange(rows, routed.token.options()) < routed_end).unsqueeze(1);  // (rows, 1)
    const at::Tensor offs = routed.group_ends.to(at::kInt);
    // The contract promises valid tokens for routed rows only: the others read and add at token 0,
    // with zeros (the masks below).
    const at::Tensor token = at::where(routed_row.squeeze(1), routed.token, 0);
    // The grouped GEMM may leave rows after the last group unwritten, and its backward their
    // gradients: the masks keep both out of the results and out of x's and the router's gradients.
    const at::Tensor zero = at::zeros({}, x.options().dtype(at::kBFloat16));
    const at::Tensor rows_in =
        at::where(routed_row, x.index_select(0, token).to(at::kBFloat16), zero);
    auto bfloat16 = [casts](const at::Tensor& w) {
        return casts != nullptr ? casts->as(w, at::kBFloat16) : w.to(at::kBFloat16);
    };
    const at::Tensor pre = at::_grouped_mm(rows_in, bfloat16(w_in), offs);
    const at::Tensor act =
        SwigluRowsFunction::apply(pre, routed.weight.to(at::kFloat).contiguous(), routed_end);
    const at::Tensor expert_rows =
        at::where(routed_row, at::_grouped_mm(act, bfloat16(w_out), offs), zero);
    // index_add on CUDA adds atomically; with deterministic algorithms on, LibTorch sorts instead.
    return at::zeros_like(x).index_add(0, token, expert_rows.to(x.scalar_type()));
}

#else

bool grouped_mm_built() { return false; }

at::Tensor grouped_swiglu_grouped_mm(const at::Tensor&, const RoutedRows&, const at::Tensor&,
                                     const at::Tensor&, WeightCasts*) {
    throw std::invalid_argument(
        "grouped SwiGLU kernel 'grouped_mm' is not in this build (it needs LibTorch 2.8 or later "
        "and the cuda preset)");
}

#endif

}  // namespace moelab::kernels::binding
