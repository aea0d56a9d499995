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

// Shapes of the model a component is asked to join. Fields that do not apply are 0. The names are
// the recipe's keys ([model] layers, heads, kv_heads, d_ff; [moe] experts, d_ff_expert,
// shared_experts): one vocabulary for recipes, the SDK and the metrics.
struct ModelShape {
    std::int64_t d_model = 0;
    std::int64_t layers = 0;
    std::int64_t vocab_size = 0;
    std::int64_t heads = 0;
    std::int64_t kv_heads = 0;  // resolved: equals heads when the recipe has no GQA
    std::int64_t head_dim = 0;
    std::int64_t max_seq_len = 0;
    std::int64_t d_ff = 0;         // dense SwiGLU intermediate size
    double norm_eps = 1e-5;        // epsilon of the model's RMSNorms; blocks use it for theirs
    std::int64_t experts = 0;      // routed experts per MoE layer
    std::int64_t d_ff_expert = 0;  // intermediate size of one expert
    // Always-active shared experts the host's standard block adds to every gate router's output,
    // each of size d_ff_expert; with [moe] shared_gate the host mixes them through its own learned
    // 2-way gate. Blocks (make_block) build their own banks and may refuse shared experts.
    std::int64_t shared_experts = 0;
    bool shared_gate = false;  // [moe] shared_gate: output = c_0 * routed + c_1 * shared
};

// Names of optional features a run may need. A component has a feature only when it lists it in
// its `features` (router_component.h, attention.h, tokenizer.h): the host never assumes one. New
// features are new strings, so the list grows without changing any interface layout.
namespace feature {
// Routing perturbations the host applies through SelectionControl (selection_control.h); a router
// lists those it honours. methods.md §2.7 and docs/robustness.md define them.
inline constexpr std::string_view kDisableTop = "perturbation.disable_top";
inline constexpr std::string_view kLogitNoise = "perturbation.logit_noise";
inline constexpr std::string_view kExpertDropout = "perturbation.expert_dropout";
inline constexpr std::string_view kRandomRouting = "perturbation.random_routing";
inline constexpr std::string_view kForcedBalance = "perturbation.forced_balance";
// Incremental decoding with AttentionCache.
inline constexpr std::string_view kKvCache = "kv_cache";
// Since 4.1. A batch split across processes: every batch-level quantity of the component's
// losses goes through RouterInput::batch / BlockInput::batch (batch_reduction.h), so its losses
// do not depend on the number of processes. Needed by every run with more than one process.
inline constexpr std::string_view kSplitBatch = "parallel.split_batch";
// Since 4.1. Routed experts sharded across processes ([parallel] expert > 1): the component uses
// its routed banks only through mix(), never run_all() (which needs every expert in every
// process), and accepts a call with no tokens (a process may hold none of an evaluation batch's
// rows; it still takes part in the experts' exchange): finite losses, zero for no tokens.
// Shared banks (ExpertBankSpec::shared) stay whole in every process.
inline constexpr std::string_view kShardedExperts = "parallel.sharded_experts";
// Since 5.2. Export to the Hugging Face Llama and Mixtral layouts (`moelab export --format hf`,
// docs/checkpoints.md). The host asks for them when it exports, so a component can refuse the
// options that have no equivalent, and it checks each claim on the built model before it writes.
//
// kHfLlamaAttention: the component is RotaryAttention (rotary_attention.h) with one row of
// frequencies base^(-2i/head_dim) / factor: Llama's attention with rope_theta = base and, for a
// factor other than 1, linear rope scaling.
inline constexpr std::string_view kHfLlamaAttention = "export.hf.llama_attention";
// kHfMixtralGate: a gate-form router (the host's standard block) whose only tensor is `weight`,
// (experts, d_model), and which routes like Mixtral: each token takes the k largest of
// softmax(hidden weight^T), weighted by those probabilities divided by their sum.
inline constexpr std::string_view kHfMixtralGate = "export.hf.mixtral_gate";
}  // namespace feature

// The features every perturbation-aware router in gate form can list: the host implements them
// all behind SelectionControl, so a router that follows the selection contract has them all.
inline std::vector<std::string> all_selection_perturbations() {
    return {std::string(feature::kDisableTop), std::string(feature::kLogitNoise),
            std::string(feature::kExpertDropout), std::string(feature::kRandomRouting),
            std::string(feature::kForcedBalance)};
}

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
    const std::int64_t experts = query.model.experts;
    if (experts > 0 && count > experts) {
        return Support::no(std::string(option) + " = " + std::to_string(count) + " exceeds the " +
                           std::to_string(experts) + " experts per layer ([moe] experts)");
    }
    return Support::yes();
}

// Optional on every component: refuses what the schema allows but this run cannot do, also a
// declared feature with particular options. An empty function means "no further refusals".
using SupportsFn = std::function<Support(const CapabilityQuery& query, const Params& params)>;

}  // namespace moelab::sdk
