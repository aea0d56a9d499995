#include "core/eval/evaluator.h"

#include <cmath>

#include <torch/autograd.h>
#include <nlohmann/json.hpp>

#include "core/train/autocast_scope.h"

namespace moelab::core {

double EvalResult::perplexity() const { return std::exp(loss()); }

nlohmann::json EvalResult::to_json() const {
    return {
        {"loss", loss()}, {"ppl", perplexity()}, {"tokens", tokens}, {"moe", routing.summary()}};
}

at::Tensor next_token_loss(const at::Tensor& logits, const at::Tensor& windows, bool sum) {
    const at::Tensor targets = windows.narrow(1, 1, windows.size(1) - 1).reshape({-1});
    return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).to(at::kFloat), targets,
                                  /*weight=*/{}, sum ? at::Reduction::Sum : at::Reduction::Mean);
}

EvalResult evaluate(LanguageModel& model, const std::vector<at::Tensor>& batches,
                    const EvalSetup& setup) {
    torch::NoGradGuard no_grad;
    EvalResult result;
    ForwardOptions options;
    options.training = false;
    options.perturbation = setup.perturbation.active() ? &setup.perturbation : nullptr;
    options.step = setup.step;
    options.stats = setup.routing != nullptr ? setup.routing : &result.routing;
    for (const at::Tensor& batch : batches) {
        const at::Tensor windows = batch.to(setup.device);
        const at::Tensor inputs = windows.narrow(1, 0, windows.size(1) - 1);
        at::Tensor nll;
        {
            CudaAutocastScope autocast(setup.autocast_bf16);
            nll = next_token_loss(model.forward(inputs, options).logits, windows, /*sum=*/true);
        }
        result.nll_sum += nll.item<double>();
        result.tokens += inputs.numel();
        ++options.batch;
    }
    return result;
}

}  // namespace moelab::core
