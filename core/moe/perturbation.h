#pragma once

// Routing perturbations for robustness studies (methods.md §2.7, docs/robustness.md). The host
// applies them to every router through sdk::SelectionControl; no plugin contains perturbation
// code. A perturbation is data: which kind, how strong, where, and the switches of the paper's
// protocol that the paper left unstated.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/options.h"

namespace moelab::core {

enum class PerturbationKind {
    kNone,
    kDisableTop,     // remove each token's n highest-scoring experts, choose among the rest
    kLogitNoise,     // Gaussian noise of standard deviation sigma on the router logits
    kExpertDropout,  // each expert unavailable with probability p, drawn per batch
    kRandomRouting,  // a fraction q of the tokens choose among uniformly reassigned experts
    kForcedBalance,  // every token's ranking rotated so that the load is exactly uniform
};

// What a router does for a token left with no selectable expert (MaskMoE's rare tokens, whose one
// visible expert is the one disabled).
enum class NoneLeft {
    kNoExpert,  // the token gets no routed expert
    kFallback,  // the token chooses from the router's fallback scores (MaskMoE: unmasked)
};

struct Perturbation {
    PerturbationKind kind = PerturbationKind::kNone;
    // n for disable_top (a whole number), sigma for logit_noise, p for expert_dropout, q for
    // random_routing; unused by forced_balance.
    double strength = 0;
    std::vector<std::int64_t> layers;   // transformer layer indices; empty: every MoE layer
    std::vector<std::int64_t> routers;  // routers of a block, 0-based; empty: all of them
    bool renormalize = true;            // softmax scores renormalised over the experts that remain
    bool keep_shared = true;            // false: shared expert banks contribute nothing
    NoneLeft none_left = NoneLeft::kNoExpert;
    std::uint64_t seed = 0;

    // True when evaluation under it differs from plain evaluation.
    bool active() const;
    bool applies_to_layer(std::int64_t layer) const;
    bool applies_to_router(std::int64_t router) const;
    // disable_top and expert_dropout make experts unavailable; the host checks every decision.
    bool disables_experts() const;
};

std::string_view perturbation_name(PerturbationKind kind);  // "disable_top", ...
std::optional<PerturbationKind> parse_perturbation_kind(std::string_view name);
const std::vector<std::string>& perturbation_kind_names();  // every kind but "none"
// The capability feature a router must list to be evaluated under `kind` (sdk feature::).
std::string_view perturbation_feature(PerturbationKind kind);
// The typed form of validated recipe options.
Perturbation to_perturbation(const PerturbationOptions& options);
// One line: "disable_top 1 (all MoE layers, all routers, renormalised, shared experts kept)".
std::string describe_perturbation(const Perturbation& perturbation);

}  // namespace moelab::core
