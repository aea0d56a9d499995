#include "kernels/binding/grouped_swiglu_cpu.h"

#include <torch/autograd.h>

namespace moelab::kernels::binding {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Note [Grouped SwiGLU backward]
// With h = [g | u] = x W_in, a = SiLU(g) * u, y = a W_out and upstream gradient dy:
//   dW_out = a^T dy            da = dy W_out^T
//   dg = da * u * SiLU'(g)     du = da * SiLU(g)      SiLU'(g) = s (1 + g (1 - s)), s = sigmoid(g)
//   dW_in = x^T [dg | du]      dx = [dg | du] W_in^T
// Only h is saved (assignments x 2f); a is recomputed, which costs one elementwise pass and saves
// a tensor the size of the expert activations.
class GroupedSwiGLUFunction : public torch::autograd::Function<GroupedSwiGLUFunction> {
  public:
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rows, const at::Tensor& w_in,
                              const at::Tensor& w_out, std::vector<std::int64_t> counts) {
        const std::int64_t d_ff = w_out.size(1);
        at::Tensor pre = at::empty({rows.size(0), 2 * d_ff}, rows.options());  // [gate | up]
        at::Tensor out = at::empty({rows.size(0), w_out.size(2)}, rows.options());
        std::int64_t offset = 0;
        for (std::size_t e = 0; e < counts.size(); ++e) {
            const std::int64_t n = counts[e];
            if (n == 0) continue;
            at::Tensor pre_e = pre.narrow(0, offset, n);
            at::mm_out(pre_e, rows.narrow(0, offset, n), w_in[e]);
            const at::Tensor act = at::silu(pre_e.narrow(1, 0, d_ff)) * pre_e.narrow(1, d_ff, d_ff);
            at::Tensor out_e = out.narrow(0, offset, n);
            at::mm_out(out_e, act, w_out[e]);
            offset += n;
        }
        ctx->save_for_backward({rows, w_in, w_out, pre});
        ctx->saved_data["counts"] = counts;
        return out;
    }

    static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor& rows = saved[0];
        const at::Tensor& w_in = saved[1];
        const at::Tensor& w_out = saved[2];
        const at::Tensor& pre = saved[3];
        const std::vector<std::int64_t> counts = ctx->saved_data["counts"].toIntVector();
        const at::Tensor grad_out = grads[0].contiguous();
        const std::int64_t d_ff = w_out.size(1);

        at::Tensor grad_rows = at::empty_like(rows);
        at::Tensor grad_w_in = at::zeros_like(w_in);
        at::Tensor grad_w_out = at::zeros_like(w_out);
        at::Tensor grad_pre = at::empty_like(pre);
        std::int64_t offset = 0;
        for (std::size_t e = 0; e < counts.size(); ++e) {
            const std::int64_t n = counts[e];
            if (n == 0) continue;
            const at::Tensor x = rows.narrow(0, offset, n);
            const at::Tensor dy = grad_out.narrow(0, offset, n);
            const at::Tensor gate = pre.narrow(0, offset, n).narrow(1, 0, d_ff);
            const at::Tensor up = pre.narrow(0, offset, n).narrow(1, d_ff, d_ff);
            const at::Tensor sig = at::sigmoid(gate);
            const at::Tensor silu = gate * sig;
            at::Tensor grad_w_out_e = grad_w_out[e];
            at::mm_out(grad_w_out_e, (silu * up).t(), dy);
            const at::Tensor d_act = at::mm(dy, w_out[e].t());
            at::Tensor d_pre = grad_pre.narrow(0, offset, n);
            at::Tensor d_gate = d_pre.narrow(1, 0, d_ff);
            at::Tensor d_up = d_pre.narrow(1, d_ff, d_ff);
            at::mul_out(d_gate, d_act * up, sig * (1 + gate * (1 - sig)));
            at::mul_out(d_up, d_act, silu);
            at::Tensor grad_w_in_e = grad_w_in[e];
            at::mm_out(grad_w_in_e, x.t(), d_pre);
            at::Tensor grad_x = grad_rows.narrow(0, offset, n);
            at::mm_out(grad_x, d_pre, w_in[e].t());
            offset += n;
        }
        return {grad_rows, grad_w_in, grad_w_out, at::Tensor()};
    }
};

}  // namespace

at::Tensor grouped_swiglu_cpu(const at::Tensor& rows, const at::Tensor& w_in,
                              const at::Tensor& w_out, const std::vector<std::int64_t>& counts) {
    return GroupedSwiGLUFunction::apply(rows.contiguous(), w_in, w_out, counts);
}

}  // namespace moelab::kernels::binding
