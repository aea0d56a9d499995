#pragma once

// The host's MoE block for routers in gate form (sdk::Router):
//   x = RMSNorm(h);  decision = router(x in fp32, autocast off)
//   routed = experts.mix(x, decision), times the decision's token_scale extension if it has one
//   y = h + routed + shared(x)                         without [moe] shared_gate
//   y = h + c_0 * routed + c_1 * shared(x),  c = softmax(C x + b) over two entries, with it
// The gate c is the SMoE-Share / residual-MoE mixing (methods.md §2.3), owned by the host so
// that every gate router can be combined with it.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/plugin/plugin_info.h"
#include "moelab/sdk/expert_bank.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/rms_norm.h"
#include "moelab/sdk/router.h"

namespace moelab::core {

class StandardMoeBlock final : public sdk::MoeBlock {
  public:
    // `shared` may be null (no shared experts). A shared gate needs shared experts; its weight
    // C ~ N(0, init_std^2) is drawn from `seed`, its bias b starts at 0.
    struct SharedGate {
        double init_std = 0.02;
        std::uint64_t seed = 0;
    };
    StandardMoeBlock(std::shared_ptr<sdk::Router> router,
                     std::shared_ptr<const PluginInfo> router_plugin,
                     std::shared_ptr<sdk::ExpertBank> experts,
                     std::shared_ptr<sdk::ExpertBank> shared, std::int64_t d_model, double norm_eps,
                     std::optional<SharedGate> shared_gate = std::nullopt);

    sdk::BlockOutput forward(const sdk::BlockInput& input) override;

    // The next forward uses `decision` instead of calling the router (routing replay,
    // routing_tap.h); it is checked like the router's own.
    void replace_next_decision(sdk::RoutingDecision decision) {
        replacement_ = std::move(decision);
    }

  private:
    std::shared_ptr<sdk::RmsNorm> norm_;
    std::shared_ptr<sdk::Router> router_;
    std::shared_ptr<const PluginInfo> router_plugin_;
    std::shared_ptr<sdk::ExpertBank> experts_;
    std::shared_ptr<sdk::ExpertBank> shared_;
    at::Tensor shared_gate_weight_;  // (2, d_model) float32, with a shared gate
    at::Tensor shared_gate_bias_;    // (2,)
    std::optional<sdk::RoutingDecision> replacement_;
};

// Throws sdk::Error naming the field unless `decision` fits `tokens` and `expert_count` (< 0:
// unknown): shapes and dtypes, expert indices in [-1, expert_count), finite combine weights and
// probabilities, extensions this host defines (token_scale: (tokens,) finite), aux losses and
// stats that are finite floating-point scalars. The value checks may be read later (Note
// [Deferred checks]); out-of-range indices are then replaced by -1 (empty slots) meanwhile.
// Non-finite values are the plugin's fault only when everything it computed from was finite:
// `upstream` holds its input and parameters, and when one of them is non-finite the model has
// diverged, which the trainer's divergence check reports (checked only on this failure path).
void check_routing_decision(sdk::RoutingDecision& decision, std::int64_t tokens,
                            std::int64_t expert_count,
                            const std::vector<at::Tensor>& upstream = {});

// Throws sdk::Error unless every entry of `scalars` (the field `field`, e.g. "aux_losses") is a
// named, finite, floating-point scalar (finiteness as above).
void check_named_scalars(const sdk::NamedScalars& scalars, const char* field,
                         const std::vector<at::Tensor>& upstream = {});

// Whether every tensor of `tensors` is finite (undefined ones count as finite).
bool all_finite(const std::vector<at::Tensor>& tensors);

}  // namespace moelab::core
