#include "core/moe/perturbed_selection.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/plugin/plugin_error.h"
#include "core/system/hash.h"
#include "core/system/tensor_text.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

namespace {

// Random numbers are drawn on the CPU and moved, so a perturbation is the same on every device.
at::Tensor uniform(at::IntArrayRef shape, at::Generator& generator, const at::Tensor& like) {
    return at::rand(shape, generator, at::TensorOptions().dtype(at::kFloat)).to(like.device());
}

at::Tensor normal(at::IntArrayRef shape, at::Generator& generator, const at::Tensor& like) {
    return at::randn(shape, generator, at::TensorOptions().dtype(at::kFloat)).to(like.device());
}

// Removes `disabled` experts; tokens left with nothing choose from their fallback row (minus the
// disabled experts) when asked to; softmax rows are renormalised over what remains.
at::Tensor remove_experts(const at::Tensor& scores, const at::Tensor& disabled,
                          const at::Tensor& fallback, sdk::ScoreKind kind,
                          const Perturbation& perturbation) {
    at::Tensor out = scores.masked_fill(disabled, 0.0);
    if (perturbation.none_left == NoneLeft::kFallback && fallback.defined()) {
        const at::Tensor empty = (out > 0).any(1, /*keepdim=*/true).logical_not();
        out = at::where(empty, fallback.to(at::kFloat).masked_fill(disabled, 0.0), out);
    }
    if (kind == sdk::ScoreKind::kSoftmax && perturbation.renormalize) {
        const at::Tensor total = out.sum(1, /*keepdim=*/true);
        out = at::where(total > 0, out / total.clamp_min(std::numeric_limits<float>::min()), out);
    }
    return out;
}

// logit(q) for gates and log(p) for a softmax: the router's logits up to a per-token constant.
at::Tensor add_logit_noise(const at::Tensor& scores, sdk::ScoreKind kind, double sigma,
                           at::Generator& generator) {
    const at::Tensor noise = sigma * normal(scores.sizes(), generator, scores);
    if (kind == sdk::ScoreKind::kSigmoid) {
        const at::Tensor logits = at::log(scores) - at::log1p(-scores);  // ±inf at 0 and 1
        return at::sigmoid(logits + noise);
    }
    const at::Tensor live = (scores > 0).any(1, /*keepdim=*/true);
    const at::Tensor noisy = (at::log(scores) + noise).softmax(1);  // log 0 = -inf stays 0
    return at::where(live, noisy, scores);
}

}  // namespace

PerturbedScores perturb_scores(const at::Tensor& scores, sdk::ScoreKind kind,
                               const at::Tensor& fallback, const Perturbation& perturbation,
                               std::uint64_t seed) {
    PerturbedScores out;
    const std::int64_t tokens = scores.size(0);
    const std::int64_t experts = scores.size(1);
    at::Generator generator = sdk::make_generator(seed);
    switch (perturbation.kind) {
        case PerturbationKind::kNone:
            out.scores = scores;
            break;
        case PerturbationKind::kDisableTop: {
            const auto n = std::min<std::int64_t>(
                static_cast<std::int64_t>(std::llround(perturbation.strength)), experts);
            if (n <= 0) {
                out.scores = scores;
                break;
            }
            const at::Tensor top = std::get<1>(scores.topk(n, /*dim=*/1));
            out.disabled = at::zeros_like(scores, at::kBool).scatter(1, top, true);
            // Ranks among experts with score 0 do not exist: they were never selectable.
            out.disabled = out.disabled & (scores > 0);
            out.scores = remove_experts(scores, out.disabled, fallback, kind, perturbation);
            break;
        }
        case PerturbationKind::kExpertDropout: {
            const at::Tensor dropped =
                uniform({1, experts}, generator, scores) < perturbation.strength;
            out.disabled = dropped.expand({tokens, experts}).contiguous();
            out.scores = remove_experts(scores, out.disabled, fallback, kind, perturbation);
            break;
        }
        case PerturbationKind::kLogitNoise:
            out.scores = add_logit_noise(scores, kind, perturbation.strength, generator);
            break;
        case PerturbationKind::kRandomRouting: {
            // The chosen tokens keep their score profile, but which expert holds which score is a
            // uniformly random permutation: their experts are drawn uniformly.
            const at::Tensor chosen =
                uniform({tokens, 1}, generator, scores) < perturbation.strength;
            const at::Tensor permutation =
                std::get<1>(uniform({tokens, experts}, generator, scores).sort(1));
            out.scores = at::where(chosen, scores.gather(1, permutation), scores);
            break;
        }
        case PerturbationKind::kForcedBalance: {
            // Token t's r-th highest score moves to expert (t + r) mod E: every window of E
            // consecutive tokens puts each rank on each expert once, so the load is uniform
            // whatever k or threshold the router uses (the load-balance upper bound).
            const at::Tensor sorted = std::get<0>(scores.sort(1, /*descending=*/true));
            const auto options = scores.options().dtype(at::kLong);
            const at::Tensor target =
                (at::arange(tokens, options).unsqueeze(1) + at::arange(experts, options)) % experts;
            out.scores = at::zeros_like(scores).scatter(1, target, sorted);
            break;
        }
    }
    return out;
}

PerturbedSelection::PerturbedSelection(const Perturbation* perturbation, SelectionSite site)
    : perturbation_(perturbation != nullptr && perturbation->active() ? perturbation : nullptr),
      site_(site),
      layer_perturbed_(perturbation_ != nullptr && perturbation_->applies_to_layer(site.layer)) {}

at::Tensor PerturbedSelection::selectable_scores(const at::Tensor& scores, sdk::ScoreKind kind,
                                                 int router, const at::Tensor& fallback) {
    Call call;
    call.router = router;
    if (!layer_perturbed_ || perturbation_->kind == PerturbationKind::kNone ||
        !perturbation_->applies_to_router(router)) {
        calls_.push_back(call);
        return scores;
    }
    if (!scores.defined() || scores.dim() != 2 || scores.scalar_type() != at::kFloat) {
        throw sdk::Error(fmt::format(
            "SelectionControl::selectable_scores: router {} handed over {}, expected float32 "
            "scores of shape (tokens, experts)",
            router, tensor_text(scores)));
    }
    if (fallback.defined() && fallback.sizes() != scores.sizes()) {
        throw sdk::Error(fmt::format(
            "SelectionControl::selectable_scores: router {}'s fallback is {}, expected the shape "
            "of its scores {}",
            router, tensor_text(fallback), shape_text(scores.sizes())));
    }
    const std::uint64_t seed =
        mix_seed(mix_seed(mix_seed(perturbation_->seed, static_cast<std::uint64_t>(site_.batch)),
                          static_cast<std::uint64_t>(site_.layer)),
                 static_cast<std::uint64_t>(router));
    if (kind == sdk::ScoreKind::kSigmoid) perturbed_gates_ = true;
    PerturbedScores perturbed = perturb_scores(scores, kind, fallback, *perturbation_, seed);
    call.perturbed = true;
    call.disabled = perturbed.disabled;
    calls_.push_back(call);
    return perturbed.scores;
}

void PerturbedSelection::check(const sdk::BlockOutput& output, const PluginInfo& plugin) const {
    if (!layer_perturbed_ || perturbation_->kind == PerturbationKind::kNone) return;
    const std::string where =
        fmt::format("{}: layer {}, evaluation batch {} (model step {})", describe_plugin(plugin),
                    site_.layer, site_.batch, site_.step);
    const auto routers = static_cast<int>(output.routing.size());
    for (std::int64_t wanted : perturbation_->routers) {
        if (wanted >= routers) {
            throw PluginError(fmt::format(
                "{}: the perturbation names router {}, but this block reports {} router "
                "decision(s) (routers are numbered from 0)",
                where, wanted, routers));
        }
    }
    std::vector<int> seen(static_cast<std::size_t>(std::max(routers, 0)), 0);
    for (const Call& call : calls_) {
        if (call.router < 0 || call.router >= routers) {
            throw PluginError(fmt::format(
                "{}: handed scores to SelectionControl as router {}, but returned {} routing "
                "decision(s); router numbers must match positions in BlockOutput::routing",
                where, call.router, routers));
        }
        if (++seen[static_cast<std::size_t>(call.router)] > 1) {
            throw PluginError(fmt::format(
                "{}: router {} handed its scores to SelectionControl more than once in one "
                "forward (the contract is exactly once)",
                where, call.router));
        }
    }
    for (int r = 0; r < routers; ++r) {
        if (perturbation_->applies_to_router(r) && seen[static_cast<std::size_t>(r)] == 0) {
            throw PluginError(fmt::format(
                "{}: lists {} but router {} never handed its scores to "
                "SelectionControl::selectable_scores, so the perturbation was not applied",
                where, perturbation_feature(perturbation_->kind), r));
        }
    }
    for (const Call& call : calls_) {
        if (!call.disabled.defined()) continue;
        const sdk::RoutingDecision& decision =
            output.routing[static_cast<std::size_t>(call.router)];
        const at::Tensor& indices = decision.expert_indices;
        if (indices.numel() == 0) continue;
        const std::int64_t experts = call.disabled.size(1);
        const at::Tensor in_range = (indices >= 0) & (indices < experts);
        const at::Tensor used = in_range & (decision.combine_weights != 0);
        const at::Tensor hit =
            used &
            call.disabled.gather(1, indices.clamp(0, experts - 1).to(call.disabled.device()));
        const std::int64_t count = hit.sum().item<std::int64_t>();
        if (count == 0) continue;
        const at::Tensor first = hit.nonzero()[0].cpu();
        const std::int64_t token = first[0].item<std::int64_t>();
        const std::int64_t slot = first[1].item<std::int64_t>();
        throw PluginError(fmt::format(
            "{}: router {} chose expert {} for token {} (slot {}), which the host had made "
            "unavailable under {}; {} such choice(s) in this batch (Note [Selection contract]: "
            "an expert whose returned score is 0 must not be chosen)",
            where, call.router, indices[token][slot].item<std::int64_t>(), token, slot,
            describe_perturbation(*perturbation_), count));
    }
}

}  // namespace moelab::core
