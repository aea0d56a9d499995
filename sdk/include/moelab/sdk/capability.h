#pragma once

// Capability queries: before the host allocates anything it asks every component of a recipe
// whether it can do what the run will ask of it, so an impossible recipe fails in the first second
// with the component's own explanation.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moelab/sdk/params.h"

namespace moelab::sdk {

// Shapes of the model a component is asked to join. Fields that do not apply are 0.
struct ModelShape {
    std::int64_t d_model = 0;
    std::int64_t layer_count = 0;
    std::int64_t vocab_size = 0;
    std::int64_t head_count = 0;
    std::int64_t kv_head_count = 0;
    std::int64_t head_dim = 0;
    std::int64_t max_seq_len = 0;
    std::int64_t d_ff = 0;          // dense SwiGLU intermediate size
    double norm_eps = 1e-5;         // epsilon of the model's RMSNorms; blocks use it for theirs
    std::int64_t expert_count = 0;  // experts per MoE layer, from the recipe's [moe] table
    std::int64_t d_ff_expert = 0;   // intermediate size of one expert
    // Always-active shared experts the host's standard block adds ([moe] shared_experts); each has
    // d_ff_expert. Routers in gate form can weigh them through RoutingDecision::shared_scale.
    std::int64_t shared_expert_count = 0;
};

// Names of optional features a run may need. New features are new strings: the query grows
// without changing any interface layout.
namespace feature {
// The evaluator masks each router's highest-probability experts (RouterInput::perturbation).
inline constexpr std::string_view kRoutingPerturbation = "routing_perturbation";
// Incremental decoding with AttentionCache.
inline constexpr std::string_view kKvCache = "kv_cache";
// Expert banks sharded across processes; blocks must only talk to experts through ExpertBank.
inline constexpr std::string_view kExpertParallel = "expert_parallel";
}  // namespace feature

struct CapabilityQuery {
    ModelShape model;
    std::string device = "cpu";     // "cpu" or "cuda"
    std::string dtype = "float32";  // the model's compute dtype: "float32" or "bfloat16"
    std::vector<std::string> features;

    bool wants(std::string_view name) const {
        return std::find(features.begin(), features.end(), name) != features.end();
    }
};

struct Support {
    bool ok = true;
    std::string reason;  // for ok == false: what is unsupported and what would work instead

    static Support yes() { return {}; }
    static Support no(std::string why) { return {false, std::move(why)}; }
};

// The usual check of a router option that picks `count` experts per token (k): at most the
// [moe] experts of each layer. Support::no names the option and both values.
inline Support experts_fit(std::int64_t count, std::string_view option,
                           const CapabilityQuery& query) {
    const std::int64_t experts = query.model.expert_count;
    if (experts > 0 && count > experts) {
        return Support::no(std::string(option) + " = " + std::to_string(count) +
                           " exceeds the " + std::to_string(experts) +
                           " experts per layer ([moe] experts)");
    }
    return Support::yes();
}

// Optional on every component; an empty function means "supports everything the schema allows".
using SupportsFn = std::function<Support(const CapabilityQuery& query, const Params& params)>;

}  // namespace moelab::sdk
