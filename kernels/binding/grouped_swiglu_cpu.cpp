#include "kernels/binding/grouped_swiglu_cpu.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <ATen/record_function.h>
#include <torch/autograd.h>

#include "kernels/binding/cpu_executor.h"
#include "kernels/cpu/grouped_swiglu_cpu.h"

namespace moelab::kernels::binding {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The int64 plan of a call: per-expert offsets and the index of rows by token.
struct Plan {
    at::Tensor token;          // (rows,)
    at::Tensor offsets;        // (experts + 1,)
    at::Tensor token_offsets;  // (tokens + 1,)
    at::Tensor rows_of_token;  // (rows,)
};

template <class T>
cpu::GroupedSwigluProblem<T> problem_of(const at::Tensor& x, const Plan& plan,
                                        const at::Tensor& weight, const at::Tensor& w_in,
                                        const at::Tensor& w_out) {
    cpu::GroupedSwigluProblem<T> problem;
    problem.desc = describe_grouped_swiglu(x, w_in, w_out);
    problem.tokens = x.size(0);
    problem.rows = plan.token.numel();
    problem.offsets = plan.offsets.data_ptr<std::int64_t>();
    problem.token = plan.token.data_ptr<std::int64_t>();
    problem.token_offsets = plan.token_offsets.data_ptr<std::int64_t>();
    problem.rows_of_token = plan.rows_of_token.data_ptr<std::int64_t>();
    problem.weight = weight.data_ptr<T>();
    problem.w_in = w_in.data_ptr<T>();
    problem.w_out = w_out.data_ptr<T>();
    return problem;
}

// Inputs: x, weight, w_in, w_out (differentiable) and the plan's four int64 tensors. Every tensor
// is contiguous and the floating ones of one dtype (grouped_swiglu_cpu sees to it).
class GroupedSwiGLUFunction : public torch::autograd::Function<GroupedSwiGLUFunction> {
  public:
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& w_in, const at::Tensor& w_out,
                              const at::Tensor& token, const at::Tensor& offsets,
                              const at::Tensor& token_offsets, const at::Tensor& rows_of_token) {
        const Plan plan{token, offsets, token_offsets, rows_of_token};
        const std::int64_t rows = token.numel(), d = x.size(1), f = w_out.size(1);
        at::Tensor gathered = at::empty({rows, d}, x.options());
        at::Tensor pre = at::empty({rows, 2 * f}, x.options());
        at::Tensor act = at::empty({rows, f}, x.options());
        at::Tensor scratch = at::empty({rows, d}, x.options());
        at::Tensor out = at::empty_like(x);
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grouped_swiglu_forward", [&] {
            cpu::grouped_swiglu_forward<scalar_t>(
                cpu_executor(), problem_of<scalar_t>(x, plan, weight, w_in, w_out),
                x.data_ptr<scalar_t>(),
                {gathered.data_ptr<scalar_t>(), pre.data_ptr<scalar_t>(), act.data_ptr<scalar_t>(),
                 scratch.data_ptr<scalar_t>(), out.data_ptr<scalar_t>()});
        });
        ctx->save_for_backward({x, weight, w_in, w_out, token, offsets, token_offsets,
                                rows_of_token, gathered, pre, act});
        return out;
    }

    static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &weight = saved[1], &w_in = saved[2], &w_out = saved[3];
        const Plan plan{saved[4], saved[5], saved[6], saved[7]};
        const at::Tensor &gathered = saved[8], &pre = saved[9], &act = saved[10];
        const at::Tensor grad_out = grads[0].contiguous();
        const std::int64_t rows = plan.token.numel(), d = x.size(1), f = w_out.size(1);
        at::Tensor grad_x = at::empty_like(x);
        at::Tensor grad_weight = at::empty_like(weight);
        at::Tensor grad_w_in = at::empty_like(w_in);
        at::Tensor grad_w_out = at::empty_like(w_out);
        at::Tensor scratch_d = at::empty({rows, d}, x.options());
        at::Tensor scratch_f = at::empty({rows, f}, x.options());
        at::Tensor scratch_2f = at::empty({rows, 2 * f}, x.options());
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grouped_swiglu_backward", [&] {
            cpu::grouped_swiglu_backward<scalar_t>(
                cpu_executor(), problem_of<scalar_t>(x, plan, weight, w_in, w_out),
                {gathered.data_ptr<scalar_t>(), pre.data_ptr<scalar_t>(), act.data_ptr<scalar_t>(),
                 nullptr, nullptr},
                grad_out.data_ptr<scalar_t>(),
                {grad_x.data_ptr<scalar_t>(), grad_weight.data_ptr<scalar_t>(),
                 grad_w_in.data_ptr<scalar_t>(), grad_w_out.data_ptr<scalar_t>(),
                 scratch_d.data_ptr<scalar_t>(), scratch_f.data_ptr<scalar_t>(),
                 scratch_2f.data_ptr<scalar_t>()});
        });
        return {grad_x,       grad_weight,  grad_w_in,    grad_w_out,
                at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

}  // namespace

at::Tensor grouped_swiglu_cpu(const at::Tensor& x, const RoutedRows& routed, const at::Tensor& w_in,
                              const at::Tensor& w_out) {
    // Named for LibTorch's profilers, which see no operator inside (the products go to the BLAS
    // directly).
    RECORD_FUNCTION("moelab::grouped_swiglu", c10::ArrayRef<const c10::IValue>{});
    const at::ScalarType dtype = x.scalar_type();
    if (dtype != at::kFloat && dtype != at::kDouble) {
        throw std::invalid_argument(std::string("grouped SwiGLU kernel 'grouped': x of dtype ") +
                                    c10::toString(dtype) + " (expected float32 or float64)");
    }
    const std::vector<std::int64_t> counts =
        host_group_counts(routed.group_ends, routed.token.size(0));
    std::vector<std::int64_t> offsets(counts.size() + 1, 0);
    for (std::size_t e = 0; e < counts.size(); ++e) offsets[e + 1] = offsets[e] + counts[e];
    // Only the routed rows go to the launchers; the narrow's backward gives the others zero.
    const std::int64_t rows = offsets.back();
    const at::Tensor token = routed.token.narrow(0, 0, rows).contiguous();
    // The launchers index with these values: a bad one would read outside x.
    if (rows > 0) {
        const auto [low, high] = at::aminmax(token);
        if (low.item<std::int64_t>() < 0 || high.item<std::int64_t>() >= x.size(0)) {
            throw std::invalid_argument(
                "grouped SwiGLU kernel 'grouped': token indices must be in [0, " +
                std::to_string(x.size(0)) + "), got values from " +
                std::to_string(low.item<std::int64_t>()) + " to " +
                std::to_string(high.item<std::int64_t>()));
        }
    }
    const at::TensorOptions int64 = at::TensorOptions().dtype(at::kLong);
    at::Tensor token_offsets = at::empty({x.size(0) + 1}, int64);
    at::Tensor rows_of_token = at::empty({rows}, int64);
    cpu::index_rows_by_token(token.data_ptr<std::int64_t>(), rows, x.size(0),
                             token_offsets.data_ptr<std::int64_t>(),
                             rows_of_token.data_ptr<std::int64_t>());
    return GroupedSwiGLUFunction::apply(
        x.contiguous(), routed.weight.narrow(0, 0, rows).to(dtype).contiguous(),
        w_in.to(dtype).contiguous(), w_out.to(dtype).contiguous(), token,
        at::tensor(offsets, int64), token_offsets, rows_of_token);
}

}  // namespace moelab::kernels::binding
