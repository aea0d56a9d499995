#include "core/eval/evaluator.h"

#include <cmath>

#include <torch/autograd.h>
#include <nlohmann/json.hpp>

#include "core/system/autocast_scope.h"

namespace moelab::core {

double EvalResult::perplexity() const { return std::exp(loss()); }

nlohmann::json EvalResult::to_json() const {
    return {
        {"loss", loss()}, {"ppl", perplexity()}, {"tokens", tokens}, {"moe", routing.summary()}};
}

at::Tensor next_token_targets(const TokenBatch& batch) {
    at::Tensor targets = batch.targets().reshape({-1});
    if (batch.loss_mask.defined()) {
        targets = targets.masked_fill(batch.loss_mask.reshape({-1}).logical_not(), kIgnoredTarget);
    }
    return targets;
}

at::Tensor next_token_loss(const at::Tensor& logits, const TokenBatch& batch, bool sum) {
    return at::cross_entropy_loss(
        logits.reshape({-1, logits.size(-1)}).to(at::kFloat), next_token_targets(batch),
        /*weight=*/{}, sum ? at::Reduction::Sum : at::Reduction::Mean, kIgnoredTarget);
}

EvalResult evaluate(LanguageModel& model, const std::vector<TokenBatch>& batches,
                    const EvalSetup& setup) {
    torch::NoGradGuard no_grad;
    EvalResult result;
    ForwardOptions options;
    options.training = false;
    options.perturbation = setup.perturbation.active() ? &setup.perturbation : nullptr;
    options.step = setup.step;
    options.routing_tap = setup.routing_tap;
    RoutingStats* stats = setup.routing != nullptr ? setup.routing : &result.routing;
    const int processes = setup.parallel != nullptr ? setup.parallel->layout().world : 1;
    const int rank = setup.parallel != nullptr ? setup.parallel->layout().rank : 0;
    if (setup.parallel != nullptr) options.batch_reduction = &setup.parallel->batch();
    // With experts spread over processes, a process may hold none of a batch's rows and still
    // serve its experts to the others; without, a batch with fewer rows than processes is run
    // whole by every process and counted by the first (no process is left with an empty batch).
    const bool sharded = setup.parallel != nullptr && setup.parallel->experts_sharded();
    for (const TokenBatch& batch : batches) {
        // This process's rows [rank * rows / processes, (rank + 1) * rows / processes).
        const std::int64_t rows = batch.rows();
        const bool whole = rows < processes && !sharded;
        const std::int64_t first = whole ? 0 : rank * rows / processes;
        const std::int64_t last = whole ? rows : (rank + 1) * rows / processes;
        const bool counted = !whole || rank == 0;
        RoutingStats uncounted;
        options.stats = counted ? stats : &uncounted;
        const TokenBatch part = batch.narrow_rows(first, last - first).to(setup.device);
        at::Tensor nll;
        {
            CudaAutocastScope autocast(setup.autocast_bf16);
            nll = next_token_loss(model.forward(part.inputs(), options).logits, part, /*sum=*/true);
        }
        if (counted) {
            result.nll_sum += nll.item<double>();
            result.tokens += part.loss_targets();
        }
        ++options.batch;
    }
    if (processes > 1) {
        at::Tensor totals = at::tensor({result.nll_sum, static_cast<double>(result.tokens)},
                                       at::TensorOptions().dtype(at::kDouble))
                                .to(setup.device);
        setup.parallel->world().all_reduce_sum(totals);
        totals = totals.to(at::kCPU);
        result.nll_sum = totals[0].item<double>();
        result.tokens = std::llround(totals[1].item<double>());
        if (setup.routing == nullptr) result.routing.sum_over(setup.parallel->world());
    }
    return result;
}

}  // namespace moelab::core
