#pragma once

// The host's MoE block for routers in gate form (sdk::Router):
//   x = RMSNorm(h);  decision = router(x in fp32, autocast off)
//   y = h + token_scale * experts.mix(x, decision) + shared_scale * shared(x)

#include <memory>

#include "core/plugin/plugin_info.h"
#include "moelab/sdk/expert_bank.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/rms_norm.h"
#include "moelab/sdk/router.h"

namespace moelab::core {

class StandardMoeBlock final : public sdk::MoeBlock {
public:
    // `shared` may be null (no shared experts).
    StandardMoeBlock(std::shared_ptr<sdk::Router> router,
                     std::shared_ptr<const PluginInfo> router_plugin,
                     std::shared_ptr<sdk::ExpertBank> experts,
                     std::shared_ptr<sdk::ExpertBank> shared, std::int64_t d_model,
                     double norm_eps);

    sdk::BlockOutput forward(const sdk::BlockInput& input) override;

private:
    std::shared_ptr<sdk::RmsNorm> norm_;
    std::shared_ptr<sdk::Router> router_;
    std::shared_ptr<const PluginInfo> router_plugin_;
    std::shared_ptr<sdk::ExpertBank> experts_;
    std::shared_ptr<sdk::ExpertBank> shared_;
};

// Throws sdk::Error unless `decision` fits `tokens` and `expert_count` (shapes and dtypes).
void check_routing_decision(const sdk::RoutingDecision& decision, std::int64_t tokens,
                            std::int64_t expert_count);

}  // namespace moelab::core
