#pragma once

// One MoE layer as the model sees it: the block (a plugin's MoeBlock, or the host's standard
// block around a plugin's Router), the expert banks the host created for it, and the plugin that
// provided it. Every call into the block goes through call_plugin(), and its output is checked
// before the model uses it.

#include <functional>
#include <memory>
#include <vector>

#include "core/moe/host_expert_bank.h"
#include "core/moe/perturbed_selection.h"
#include "core/moe/routing_stats.h"
#include "core/moe/routing_tap.h"
#include "core/plugin/plugin_info.h"
#include "core/plugin/registry.h"
#include "moelab/sdk/host_services.h"
#include "moelab/sdk/moe_block.h"

namespace moelab::core {

// HostServices for the factories of one MoE layer: banks come from the layer's ExpertBankFactory,
// seeded per layer and bank; the layer keeps track of them for statistics.
class LayerHostServices final : public sdk::HostServices {
  public:
    LayerHostServices(ExpertBankFactory banks, std::uint64_t seed,
                      std::function<at::Tensor()> token_counts);
    // Banks in this process (local_expert_banks) with the recipe's policy and initialisation.
    LayerHostServices(DispatchPolicy policy, double init_std, double output_init_std,
                      std::uint64_t seed, std::function<at::Tensor()> token_counts)
        : LayerHostServices(local_expert_banks(policy, init_std, output_init_std), seed,
                            std::move(token_counts)) {}

    std::shared_ptr<sdk::ExpertBank> make_expert_bank(const sdk::ExpertBankSpec& spec) override;
    at::Tensor training_token_counts() override;

    const std::vector<std::shared_ptr<ManagedExpertBank>>& banks() const { return banks_; }

  private:
    ExpertBankFactory factory_;
    std::uint64_t seed_;
    std::function<at::Tensor()> token_counts_;
    std::vector<std::shared_ptr<ManagedExpertBank>> banks_;
};

class MoeLayer : public torch::nn::Module {
  public:
    // Throws PluginError if the block did not register one of `banks` as a submodule (its
    // parameters would silently not be trained or saved).
    MoeLayer(int layer_index, std::shared_ptr<sdk::MoeBlock> block,
             std::vector<std::shared_ptr<ManagedExpertBank>> banks,
             std::shared_ptr<const PluginInfo> plugin);

    // `stats`, `perturbation` and `tap` may be null. The layer hands the block its
    // SelectionControl (input.selection is set here) and switches shared banks off when the
    // perturbation says so; `tap` sees the checked decisions and may replace a gate router's
    // (routing_tap.h). Throws PluginError when the block fails, returns malformed output or breaks
    // the selection contract.
    sdk::BlockOutput forward(sdk::BlockInput input, LayerRoutingStats* stats,
                             const Perturbation* perturbation = nullptr, SelectionSite site = {},
                             RoutingTap* tap = nullptr);

    // Whether the block is the host's standard block around a gate router, whose decision a
    // RoutingTap can replace.
    bool routes_through_host_gate() const;
    const PluginInfo& plugin() const { return *plugin_; }
    int layer_index() const { return layer_index_; }
    const std::vector<std::shared_ptr<ManagedExpertBank>>& banks() const { return banks_; }
    sdk::MoeBlock& block() { return *block_; }

  private:
    int layer_index_;
    std::shared_ptr<sdk::MoeBlock> block_;
    std::vector<std::shared_ptr<ManagedExpertBank>> banks_;  // owned through block_'s submodules
    std::shared_ptr<const PluginInfo> plugin_;
};

// The MoE layer a router component provides at one position: its own block (make_block), or the
// host's standard block around its gate (make_router) with a bank of context.model.experts
// experts and, when context.model.shared_experts > 0, a shared bank. `host` must be the
// services in context.host.
std::shared_ptr<MoeLayer> make_moe_layer(const RegisteredRouter& router, const sdk::Params& params,
                                         const sdk::MoeLayerContext& context,
                                         LayerHostServices& host);

}  // namespace moelab::core
