#include "core/model/chunked_lm_loss.h"

#include <cmath>
#include <stdexcept>

#include <torch/autograd.h>

namespace moelab::core {

namespace {

struct ChunkedLmLoss : torch::autograd::Function<ChunkedLmLoss> {
    static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& hidden,
                              const at::Tensor& weight, const at::Tensor& targets, bool sum,
                              std::int64_t chunk_rows, bool wants_gradient) {
        const std::int64_t tokens = hidden.size(0);
        const at::Tensor counted = targets.ne(kIgnoredTarget);
        const at::Tensor safe_targets = targets.masked_fill(counted.logical_not(), 0);
        at::Tensor grad_hidden, grad_weight;
        if (wants_gradient) {
            grad_hidden = at::empty_like(hidden, at::MemoryFormat::Contiguous);
            grad_weight = at::zeros_like(weight, at::MemoryFormat::Contiguous);
        }
        at::Tensor total = at::zeros({}, hidden.options().dtype(at::kDouble));
        const at::Tensor weight_t = weight.t();
        for (std::int64_t first = 0; first < tokens; first += chunk_rows) {
            const std::int64_t rows = std::min(chunk_rows, tokens - first);
            const at::Tensor h = hidden.narrow(0, first, rows);
            const at::Tensor target = safe_targets.narrow(0, first, rows).unsqueeze(1);
            const at::Tensor mask = counted.narrow(0, first, rows);
            at::Tensor logits = at::mm(h, weight_t);               // (rows, vocab)
            const at::Tensor log_sum = logits.logsumexp(1, true);  // (rows, 1)
            const at::Tensor picked = logits.gather(1, target);    // (rows, 1)
            total += ((log_sum - picked).squeeze(1) * mask).sum().to(at::kDouble);
            if (!wants_gradient) continue;
            // d loss / d logits = softmax - one-hot, on counted rows.
            at::Tensor grad_logits = logits.sub_(log_sum).exp_();
            grad_logits.scatter_add_(1, target, at::full({rows, 1}, -1.0, logits.options()));
            grad_logits.mul_(mask.unsqueeze(1).to(grad_logits.scalar_type()));
            at::Tensor grad_rows = grad_hidden.narrow(0, first, rows);  // contiguous rows
            at::mm_out(grad_rows, grad_logits, weight);
            grad_weight.addmm_(grad_logits.t(), h);
        }
        // The mean of no counted target is 0 / 0, as at::cross_entropy_loss gives; its gradient
        // is 0 there too.
        const double count = counted.sum().item<double>();
        const double scale = sum ? 1.0 : (count > 0 ? 1.0 / count : 0.0);
        context->saved_data["scale"] = scale;
        // Intermediates, not inputs or outputs: kept as data rather than saved variables.
        context->saved_data["grad_hidden"] = grad_hidden;
        context->saved_data["grad_weight"] = grad_weight;
        if (!sum && count == 0) return at::full({}, NAN, hidden.options());
        return (total * scale).to(hidden.scalar_type());
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                   torch::autograd::variable_list grads) {
        const at::Tensor factor = grads[0] * context->saved_data["scale"].toDouble();
        const at::Tensor grad_hidden = context->saved_data["grad_hidden"].toTensor();
        const at::Tensor grad_weight = context->saved_data["grad_weight"].toTensor();
        if (!grad_hidden.defined()) {
            return {at::Tensor(), at::Tensor(), at::Tensor(),
                    at::Tensor(), at::Tensor(), at::Tensor()};
        }
        return {grad_hidden * factor, grad_weight * factor, at::Tensor(),
                at::Tensor(),         at::Tensor(),         at::Tensor()};
    }
};

}  // namespace

at::Tensor chunked_lm_loss(const at::Tensor& hidden, const at::Tensor& weight,
                           const at::Tensor& targets, bool sum, std::int64_t chunk_rows) {
    if (hidden.dim() != 2 || weight.dim() != 2 || hidden.size(1) != weight.size(1) ||
        targets.dim() != 1 || targets.size(0) != hidden.size(0) || chunk_rows < 1 ||
        hidden.scalar_type() != weight.scalar_type()) {
        throw std::invalid_argument(
            "chunked_lm_loss: hidden (tokens, d), weight (vocab, d) of one dtype, targets "
            "(tokens,) and a positive chunk expected");
    }
    // Inside the Function's forward grad mode is always off: whether a gradient is wanted is
    // decided here (a no-grad evaluation computes the loss only).
    const bool wants_gradient =
        at::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
    return ChunkedLmLoss::apply(hidden, weight, targets, sum, chunk_rows, wants_gradient);
}

}  // namespace moelab::core
