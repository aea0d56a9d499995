#include "core/moe/perturbation.h"

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "moelab/sdk/capability.h"

namespace moelab::core {

namespace {

constexpr std::array<std::pair<PerturbationKind, std::string_view>, 6> kNames{{
    {PerturbationKind::kNone, "none"},
    {PerturbationKind::kDisableTop, "disable_top"},
    {PerturbationKind::kLogitNoise, "logit_noise"},
    {PerturbationKind::kExpertDropout, "expert_dropout"},
    {PerturbationKind::kRandomRouting, "random_routing"},
    {PerturbationKind::kForcedBalance, "forced_balance"},
}};

std::string list_text(const std::vector<std::int64_t>& values) {
    std::string out;
    for (std::int64_t v : values) out += (out.empty() ? "" : ", ") + std::to_string(v);
    return out;
}

}  // namespace

bool Perturbation::active() const {
    if (!keep_shared) return true;
    switch (kind) {
        case PerturbationKind::kNone:
            return false;
        case PerturbationKind::kForcedBalance:
            return true;
        default:
            return strength > 0;
    }
}

bool Perturbation::applies_to_layer(std::int64_t layer) const {
    return layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end();
}

bool Perturbation::applies_to_router(std::int64_t router) const {
    return routers.empty() || std::find(routers.begin(), routers.end(), router) != routers.end();
}

bool Perturbation::disables_experts() const {
    return (kind == PerturbationKind::kDisableTop || kind == PerturbationKind::kExpertDropout) &&
           strength > 0;
}

std::string_view perturbation_name(PerturbationKind kind) {
    for (const auto& [k, name] : kNames) {
        if (k == kind) return name;
    }
    return "none";
}

std::optional<PerturbationKind> parse_perturbation_kind(std::string_view name) {
    for (const auto& [kind, n] : kNames) {
        if (n == name) return kind;
    }
    return std::nullopt;
}

const std::vector<std::string>& perturbation_kind_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto& [kind, name] : kNames) {
            if (kind != PerturbationKind::kNone) out.emplace_back(name);
        }
        return out;
    }();
    return names;
}

std::string_view perturbation_feature(PerturbationKind kind) {
    switch (kind) {
        case PerturbationKind::kDisableTop:
            return sdk::feature::kDisableTop;
        case PerturbationKind::kLogitNoise:
            return sdk::feature::kLogitNoise;
        case PerturbationKind::kExpertDropout:
            return sdk::feature::kExpertDropout;
        case PerturbationKind::kRandomRouting:
            return sdk::feature::kRandomRouting;
        case PerturbationKind::kForcedBalance:
            return sdk::feature::kForcedBalance;
        case PerturbationKind::kNone:
            break;
    }
    return {};
}

Perturbation to_perturbation(const PerturbationOptions& options) {
    Perturbation p;
    p.kind = parse_perturbation_kind(options.kind).value_or(PerturbationKind::kNone);
    p.strength = options.strength;
    p.layers = options.layers;
    p.routers = options.routers;
    p.renormalize = options.renormalize;
    p.keep_shared = options.keep_shared;
    p.none_left = options.none_left == "fallback" ? NoneLeft::kFallback : NoneLeft::kNoExpert;
    p.seed = static_cast<std::uint64_t>(options.seed);
    return p;
}

std::string describe_perturbation(const Perturbation& p) {
    std::string head(perturbation_name(p.kind));
    switch (p.kind) {
        case PerturbationKind::kDisableTop:
            head += fmt::format(" {}", static_cast<std::int64_t>(p.strength));
            break;
        case PerturbationKind::kLogitNoise:
            head += fmt::format(" sigma={}", p.strength);
            break;
        case PerturbationKind::kExpertDropout:
            head += fmt::format(" p={}", p.strength);
            break;
        case PerturbationKind::kRandomRouting:
            head += fmt::format(" q={}", p.strength);
            break;
        default:
            break;
    }
    std::vector<std::string> parts;
    parts.push_back(p.layers.empty() ? "all MoE layers" : "layers " + list_text(p.layers));
    parts.push_back(p.routers.empty() ? "all routers" : "routers " + list_text(p.routers));
    parts.push_back(p.renormalize ? "renormalised" : "not renormalised");
    parts.push_back(p.keep_shared ? "shared experts kept" : "shared experts off");
    if (p.disables_experts()) {
        parts.push_back(p.none_left == NoneLeft::kNoExpert ? "no expert when none is left"
                                                           : "fallback when none is left");
    }
    std::string joined;
    for (const std::string& part : parts) joined += (joined.empty() ? "" : ", ") + part;
    return head + " (" + joined + ")";
}

}  // namespace moelab::core
