#include "kernels/binding/causal_attention.h"

#include <cstdint>
#include <stdexcept>

#include <ATen/record_function.h>
#include <torch/autograd.h>

#include "kernels/binding/cpu_executor.h"
#include "kernels/cpu/causal_attention_cpu.h"

namespace moelab::kernels::binding {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The forward keeps each head's (seq, seq) probabilities for the backward up to this length (256
// KB per head in float32, what LibTorch's softmax would keep too); longer sequences keep only
// each row's log-sum-exp and recompute them, in memory linear in the sequence.
constexpr std::int64_t kLongestKeptSequence = 256;

template <class T>
cpu::CausalAttentionProblem<T> problem_of(const at::Tensor& query, const at::Tensor& key,
                                          const at::Tensor& value, double scale) {
    return {.blocks = query.size(0),
            .group = query.size(1),
            .seq = query.size(2),
            .head_dim = query.size(3),
            .value_dim = value.size(2),
            .scale = static_cast<T>(scale),
            .query = query.data_ptr<T>(),
            .key = key.data_ptr<T>(),
            .value = value.data_ptr<T>()};
}

struct CausalAttentionFunction : torch::autograd::Function<CausalAttentionFunction> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& query, const at::Tensor& key,
                              const at::Tensor& value, double scale, bool keep_probabilities) {
        const std::int64_t n = query.size(0), group = query.size(1), seq = query.size(2);
        at::Tensor out = at::empty({n, group, seq, value.size(2)}, value.options());
        at::Tensor log_sum_exp = at::empty({n, group, seq}, query.options());
        at::Tensor probabilities =
            keep_probabilities ? at::empty({n, group, seq, seq}, query.options()) : at::Tensor();
        AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "causal_attention", [&] {
            cpu::causal_attention_forward<scalar_t>(
                cpu_executor(), problem_of<scalar_t>(query, key, value, scale),
                out.data_ptr<scalar_t>(), log_sum_exp.data_ptr<scalar_t>(),
                keep_probabilities ? probabilities.data_ptr<scalar_t>() : nullptr);
        });
        ctx->save_for_backward({query, key, value, out, log_sum_exp, probabilities});
        ctx->saved_data["scale"] = scale;
        return out;
    }

    static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &query = saved[0], &key = saved[1], &value = saved[2];
        const at::Tensor &out = saved[3], &log_sum_exp = saved[4], &probabilities = saved[5];
        const double scale = ctx->saved_data["scale"].toDouble();
        const at::Tensor grad_out = grads[0].contiguous();
        at::Tensor grad_query = at::empty_like(query);
        at::Tensor grad_key = at::empty_like(key);
        at::Tensor grad_value = at::empty_like(value);
        AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "causal_attention_backward", [&] {
            cpu::causal_attention_backward<scalar_t>(
                cpu_executor(), problem_of<scalar_t>(query, key, value, scale),
                out.data_ptr<scalar_t>(), log_sum_exp.data_ptr<scalar_t>(),
                probabilities.defined() ? probabilities.data_ptr<scalar_t>() : nullptr,
                grad_out.data_ptr<scalar_t>(), grad_query.data_ptr<scalar_t>(),
                grad_key.data_ptr<scalar_t>(), grad_value.data_ptr<scalar_t>());
        });
        return {grad_query, grad_key, grad_value, at::Tensor(), at::Tensor()};
    }
};

}  // namespace

std::optional<std::string> causal_attention_refusal(const at::Tensor& query, const at::Tensor& key,
                                                    const at::Tensor& value) {
    if (!query.device().is_cpu() || !key.device().is_cpu() || !value.device().is_cpu()) {
        return "the fused causal attention runs on the CPU";
    }
    const at::ScalarType dtype = query.scalar_type();
    if ((dtype != at::kFloat && dtype != at::kDouble) || key.scalar_type() != dtype ||
        value.scalar_type() != dtype) {
        return "the fused causal attention takes float32 or float64 queries, keys and values of "
               "one dtype";
    }
    if (query.dim() != 4 || key.dim() != 3 || value.dim() != 3 || key.size(0) != query.size(0) ||
        value.size(0) != query.size(0) || key.size(1) != query.size(2) ||
        value.size(1) != query.size(2) || key.size(2) != query.size(3)) {
        return "the fused causal attention takes query (n, group, seq, d), key (n, seq, d) and "
               "value (n, seq, dv)";
    }
    return std::nullopt;
}

at::Tensor causal_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                            double scale) {
    if (const auto refusal = causal_attention_refusal(query, key, value)) {
        throw std::invalid_argument(*refusal);
    }
    // Named for LibTorch's profilers (`moelab run --profile-operators`), which see no operator
    // inside: the products go to the BLAS directly.
    RECORD_FUNCTION("moelab::causal_attention", c10::ArrayRef<const c10::IValue>{});
    // Decided here: inside the Function's forward, gradient mode is off.
    const bool needs_backward =
        at::GradMode::is_enabled() &&
        (query.requires_grad() || key.requires_grad() || value.requires_grad());
    const bool keep_probabilities = needs_backward && query.size(2) <= kLongestKeptSequence;
    return CausalAttentionFunction::apply(query.contiguous(), key.contiguous(), value.contiguous(),
                                          scale, keep_probabilities);
}

}  // namespace moelab::kernels::binding
