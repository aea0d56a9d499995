#include "kernels/binding/grouped_swiglu_cuda.h"

#include <stdexcept>

#ifdef MOELAB_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "kernels/binding/cuda_element.h"
#include "kernels/binding/rows_by_token.h"
#include "kernels/cuda/grouped_swiglu_cuda.h"
#include "kernels/cuda/swiglu_rows_cuda.h"
#endif

namespace moelab::kernels::binding {

#ifdef MOELAB_CUDA

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

cuda::SwigluPlan plan_of(const at::Tensor& x, const at::Tensor& token, const at::Tensor& ends,
                         const at::Tensor& w_out) {
    cuda::SwigluPlan plan;
    plan.tokens = x.size(0);
    plan.rows = token.size(0);
    plan.experts = ends.size(0);
    plan.d_model = x.size(1);
    plan.d_ff = w_out.size(1);
    plan.token = token.data_ptr<std::int64_t>();
    plan.group_ends = ends.data_ptr<std::int64_t>();
    plan.element = element_of(x);
    return plan;
}

void* current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// Inputs: x, weight, w_in, w_out (differentiable), token and group_ends (the plan), and whether
// the products are in bfloat16. Every launch reads the plan on the device.
class GroupedSwigluCudaFunction : public torch::autograd::Function<GroupedSwigluCudaFunction> {
  public:
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& w_in, const at::Tensor& w_out,
                              const at::Tensor& token, const at::Tensor& group_ends,
                              bool bfloat16) {
        const c10::cuda::CUDAGuard device(x.device());
        const at::ScalarType compute = bfloat16 ? at::kBFloat16 : at::kFloat;
        // The kernel casts what it reads itself; autocast has nothing to do here.
        const at::Tensor x_c = x.to(compute).contiguous();
        const at::Tensor weight_c = weight.to(at::kFloat).contiguous();
        // The float32 master weights are read as they are (no copy); weights in another dtype
        // (a bank's bfloat16 copies) are read as float32 copies.
        const at::Tensor w_in_c = w_in.to(at::kFloat).contiguous();
        const at::Tensor w_out_c = w_out.to(at::kFloat).contiguous();
        const at::Tensor token_c = token.contiguous();
        const at::Tensor ends = group_ends.contiguous();
        const cuda::SwigluPlan plan = plan_of(x_c, token_c, ends, w_out_c);
        const RowsByToken index = rows_by_token(token_c, ends, plan.tokens);
        at::Tensor pre = at::empty({plan.rows, 2 * plan.d_ff}, x_c.options());
        at::Tensor act = at::empty({plan.rows, plan.d_ff}, x_c.options());
        at::Tensor expert_rows =
            at::empty({plan.rows, plan.d_model}, x_c.options().dtype(at::kFloat));
        at::Tensor out = at::empty({plan.tokens, plan.d_model}, x.options());
        void* stream = current_stream();
        cuda::launch_rows_gemm(
            cuda::gate_up_step(plan, x_c.data_ptr(), w_in_c.data_ptr<float>(),
                               weight_c.data_ptr<float>(), pre.data_ptr(), act.data_ptr()),
            plan.rows, stream);
        cuda::launch_rows_gemm(cuda::down_step(plan, act.data_ptr(), w_out_c.data_ptr<float>(),
                                               expert_rows.data_ptr<float>()),
                               plan.rows, stream);
        cuda::launch_combine(expert_rows.data_ptr<float>(), plan.d_model,
                             index.token_offsets.data_ptr<std::int64_t>(),
                             index.rows_of_token.data_ptr<std::int64_t>(), plan.tokens,
                             out.data_ptr(), element_of(out), stream);
        ctx->save_for_backward({x_c, weight_c, w_in_c, w_out_c, token_c, ends, pre, act,
                                index.token_offsets, index.rows_of_token});
        ctx->saved_data["x_type"] = static_cast<std::int64_t>(x.scalar_type());
        ctx->saved_data["weight_type"] = static_cast<std::int64_t>(weight.scalar_type());
        return out;
    }

    static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &weight = saved[1], &w_in = saved[2], &w_out = saved[3];
        const at::Tensor &token = saved[4], &ends = saved[5], &pre = saved[6], &act = saved[7];
        const at::Tensor &token_offsets = saved[8], &rows_of_token = saved[9];
        const c10::cuda::CUDAGuard device(x.device());
        const auto x_type = static_cast<at::ScalarType>(ctx->saved_data["x_type"].toInt());
        const auto weight_type =
            static_cast<at::ScalarType>(ctx->saved_data["weight_type"].toInt());
        const cuda::SwigluPlan plan = plan_of(x, token, ends, w_out);
        const at::Tensor dy = grads[0].to(x.scalar_type()).contiguous();
        at::Tensor grad_act = at::empty({plan.rows, plan.d_ff}, x.options());
        // With experts, the SwiGLU backward writes every row (zeros for rows not routed).
        const auto rows_buffer = [&](at::IntArrayRef size, const at::TensorOptions& options) {
            return plan.experts > 0 ? at::empty(size, options) : at::zeros(size, options);
        };
        at::Tensor grad_pre = rows_buffer({plan.rows, 2 * plan.d_ff}, x.options());
        at::Tensor grad_weight = rows_buffer({plan.rows}, weight.options());
        at::Tensor grad_rows = at::empty({plan.rows, plan.d_model}, x.options().dtype(at::kFloat));
        at::Tensor grad_x = at::empty({plan.tokens, plan.d_model}, x.options().dtype(x_type));
        at::Tensor grad_w_in = at::empty_like(w_in);
        at::Tensor grad_w_out = at::empty_like(w_out);
        void* stream = current_stream();
        cuda::launch_rows_gemm(
            cuda::grad_act_step(plan, dy.data_ptr(), w_out.data_ptr<float>(), grad_act.data_ptr()),
            plan.rows, stream);
        if (plan.experts > 0) {
            // Zero gradients for the rows that are not routed (the grad_act there is not read).
            const at::Tensor routed_end = ends.narrow(0, plan.experts - 1, 1);
            cuda::swiglu_rows_backward(element_of(x), pre.data_ptr(), grad_act.data_ptr(),
                                       weight.data_ptr<float>(), grad_pre.data_ptr(),
                                       grad_weight.data_ptr<float>(), plan.rows, plan.d_ff,
                                       routed_end.data_ptr<std::int64_t>(), stream);
        }
        cuda::launch_rows_gemm(
            cuda::grad_rows_step(plan, grad_pre.data_ptr(), w_in.data_ptr<float>(),
                                 grad_rows.data_ptr<float>()),
            plan.rows, stream);
        cuda::launch_combine(grad_rows.data_ptr<float>(), plan.d_model,
                             token_offsets.data_ptr<std::int64_t>(),
                             rows_of_token.data_ptr<std::int64_t>(), plan.tokens, grad_x.data_ptr(),
                             element_of(grad_x), stream);
        cuda::launch_weight_gemm(cuda::grad_w_out_step(plan, act.data_ptr(), dy.data_ptr(),
                                                       grad_w_out.data_ptr<float>()),
                                 stream);
        cuda::launch_weight_gemm(cuda::grad_w_in_step(plan, x.data_ptr(), grad_pre.data_ptr(),
                                                      grad_w_in.data_ptr<float>()),
                                 stream);
        return {grad_x,       grad_weight.to(weight_type),
                grad_w_in,    grad_w_out,
                at::Tensor(), at::Tensor(),
                at::Tensor()};
    }
};

}  // namespace

bool cuda_kernels_built() { return true; }

at::Tensor grouped_swiglu_cuda(const at::Tensor& x, const RoutedRows& routed,
                               const at::Tensor& w_in, const at::Tensor& w_out, bool bfloat16) {
    return GroupedSwigluCudaFunction::apply(x, routed.weight, w_in, w_out, routed.token,
                                            routed.group_ends, bfloat16);
}

#else

bool cuda_kernels_built() { return false; }

at::Tensor grouped_swiglu_cuda(const at::Tensor&, const RoutedRows&, const at::Tensor&,
                               const at::Tensor&, bool) {
    throw std::invalid_argument(
        "grouped SwiGLU kernel 'grouped_cuda' is not in this build (it needs the cuda preset)");
}

#endif

}  // namespace moelab::kernels::binding
