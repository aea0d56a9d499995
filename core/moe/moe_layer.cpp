#include "core/moe/moe_layer.h"

#include <exception>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "core/moe/extension_check.h"
#include "core/moe/standard_block.h"
#include "core/plugin/deferred_checks.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/hash.h"
#include "core/system/tensor_text.h"
#include "moelab/sdk/error.h"

namespace moelab::core {

// Salt of the shared gate's seed: far from the expert banks' salts (0, 1, ... per layer).
constexpr std::uint64_t kSharedGateSalt = 0x5ba7ed6a7e;

LayerHostServices::LayerHostServices(ExpertBankFactory banks, std::uint64_t seed,
                                     std::function<at::Tensor()> token_counts)
    : factory_(std::move(banks)), seed_(seed), token_counts_(std::move(token_counts)) {}

std::shared_ptr<sdk::ExpertBank> LayerHostServices::make_expert_bank(
    const sdk::ExpertBankSpec& spec) {
    for (const auto& bank : banks_) {
        if (bank->spec().name == spec.name) {
            throw sdk::Error(
                fmt::format("an expert bank named '{}' already exists in this layer; "
                            "give each bank its own ExpertBankSpec::name",
                            spec.name));
        }
    }
    // Every factory's banks get the same check of the plugin's extension keys.
    check_extensions(spec.extensions, fmt::format("expert bank '{}': ExpertBankSpec", spec.name),
                     {known(sdk::bank_extension::kActivationThreshold)});
    std::shared_ptr<ManagedExpertBank> bank = factory_(spec, mix_seed(seed_, banks_.size()));
    banks_.push_back(bank);
    return bank;
}

at::Tensor LayerHostServices::training_token_counts() {
    if (!token_counts_) throw sdk::Error("training token counts are not available here");
    return token_counts_();
}

MoeLayer::MoeLayer(int layer_index, std::shared_ptr<sdk::MoeBlock> block,
                   std::vector<std::shared_ptr<ManagedExpertBank>> banks,
                   std::shared_ptr<const PluginInfo> plugin)
    : layer_index_(layer_index),
      block_(std::move(block)),
      banks_(std::move(banks)),
      plugin_(std::move(plugin)) {
    register_module("block", block_);
    const auto modules = block_->modules(/*include_self=*/false);
    for (const auto& bank : banks_) {
        const bool registered = std::any_of(modules.begin(), modules.end(), [&](const auto& m) {
            return m.get() == static_cast<const torch::nn::Module*>(bank.get());
        });
        if (!registered) {
            throw PluginError(fmt::format(
                "{}: layer {} created expert bank '{}' but did not register it as a submodule "
                "(register_module), so its experts would be neither trained nor saved",
                describe_plugin(*plugin_), layer_index_, bank->spec().name));
        }
    }
}

namespace {

// Switches a layer's shared banks off for one forward and back on, also when the block throws.
class SharedBanksOff {
  public:
    SharedBanksOff(const std::vector<std::shared_ptr<ManagedExpertBank>>& banks, bool off)
        : banks_(banks), off_(off) {
        set(off_);
    }
    ~SharedBanksOff() { set(false); }
    SharedBanksOff(const SharedBanksOff&) = delete;
    SharedBanksOff& operator=(const SharedBanksOff&) = delete;

  private:
    void set(bool value) {
        if (!off_) return;
        for (const auto& bank : banks_) {
            if (bank->spec().shared) bank->set_switched_off(value);
        }
    }
    const std::vector<std::shared_ptr<ManagedExpertBank>>& banks_;
    bool off_;
};

}  // namespace

bool MoeLayer::routes_through_host_gate() const {
    return dynamic_cast<const StandardMoeBlock*>(block_.get()) != nullptr;
}

sdk::BlockOutput MoeLayer::forward(sdk::BlockInput input, LayerRoutingStats* stats,
                                   const Perturbation* perturbation, SelectionSite site,
                                   RoutingTap* tap) {
    if (tap != nullptr) {
        if (std::optional<sdk::RoutingDecision> decision =
                tap->replace(layer_index_, input.token_ids)) {
            auto* standard = dynamic_cast<StandardMoeBlock*>(block_.get());
            if (standard == nullptr) {
                throw std::logic_error(fmt::format(
                    "layer {}: a routing decision can replace only a gate router's", layer_index_));
            }
            standard->replace_next_decision(std::move(*decision));
        }
    }
    site.layer = layer_index_;
    PerturbedSelection selection(perturbation, site);
    input.selection = &selection;
    const sdk::WholeBatch whole;
    if (input.batch == nullptr) input.batch = &whole;
    const bool shared_off = perturbation != nullptr && !perturbation->keep_shared &&
                            perturbation->applies_to_layer(layer_index_);
    sdk::BlockOutput output;
    {
        SharedBanksOff switch_off(banks_, shared_off);
        const std::string operation =
            fmt::format("MoE block of layer {} at step {}", layer_index_, input.step);
        // A deferred check inside the block (an expert bank's) fails as the call would have.
        const ErrorContext in_block([plugin = plugin_, operation](const sdk::Error& error) {
            rethrow_as_plugin_error(*plugin, operation, std::make_exception_ptr(error));
        });
        output = call_plugin(*plugin_, operation, [&] { return block_->forward(input); });
    }
    std::vector<at::Tensor> upstream = block_->parameters();
    upstream.push_back(input.hidden);
    {
        const auto malformed = [plugin = plugin_, layer = layer_index_,
                                step = input.step](const sdk::Error& error) {
            throw PluginError(
                fmt::format("{}: MoE block of layer {} at step {} returned malformed output: {}",
                            describe_plugin(*plugin), layer, step, error.what()));
        };
        const ErrorContext context(malformed);
        try {
            if (!output.hidden.defined() || output.hidden.sizes() != input.hidden.sizes()) {
                throw sdk::Error(fmt::format("output hidden must have the input's shape {}, got {}",
                                             shape_text(input.hidden.sizes()),
                                             tensor_text(output.hidden)));
            }
            for (std::size_t i = 0; i < output.routing.size(); ++i) {
                const auto in_routing = [i](const sdk::Error& error) {
                    throw sdk::Error(fmt::format("routing[{}].{}", i, error.what()));
                };
                const ErrorContext routing_context(in_routing);
                try {
                    check_routing_decision(output.routing[i], input.hidden.size(0), -1, upstream);
                } catch (const sdk::Error& error) {
                    in_routing(error);
                }
            }
            check_named_scalars(output.aux_losses, "aux_losses", upstream);
            check_named_scalars(output.stats, "stats", upstream);
        } catch (const sdk::Error& error) {
            malformed(error);
        }
    }
    selection.check(output, *plugin_);
    if (stats != nullptr && selection.perturbed_gates()) stats->note_perturbed_gates();
    for (const auto& bank : banks_) {
        std::vector<DispatchRecord> records = bank->take_dispatches();
        if (stats == nullptr) continue;
        for (const DispatchRecord& record : records) stats->add_dispatch(bank->spec().name, record);
    }
    if (tap != nullptr) tap->observe(layer_index_, input.token_ids, output.routing);
    if (stats != nullptr) {
        for (std::size_t i = 0; i < output.routing.size(); ++i) {
            stats->add_decision(i, output.routing[i]);
        }
        const bool has_tokens = input.hidden.size(0) > 0;
        stats->add_scalars("aux", output.aux_losses, has_tokens);
        stats->add_scalars("stats", output.stats, has_tokens);
    }
    return output;
}

std::shared_ptr<MoeLayer> make_moe_layer(const RegisteredRouter& router, const sdk::Params& params,
                                         const sdk::MoeLayerContext& context,
                                         LayerHostServices& host) {
    if (context.host != &host) {
        throw sdk::Error("make_moe_layer: context.host must be the layer's host services");
    }
    const sdk::ModelShape& m = context.model;
    std::shared_ptr<sdk::MoeBlock> block;
    if (router.component.make_block) {
        block = instantiate_block(router, context, params);
    } else {
        auto gate = instantiate_router(router, context, params);
        auto experts =
            host.make_expert_bank({"experts", m.experts, m.d_model, m.d_ff_expert, -1.0});
        std::shared_ptr<sdk::ExpertBank> shared;
        if (m.shared_experts > 0) {
            sdk::ExpertBankSpec spec{"shared", 1, m.d_model, m.shared_experts * m.d_ff_expert, 0.0};
            spec.shared = true;
            shared = host.make_expert_bank(spec);
        }
        std::optional<StandardMoeBlock::SharedGate> shared_gate;
        if (m.shared_gate)
            shared_gate = {context.init_std, mix_seed(context.seed, kSharedGateSalt)};
        block = std::make_shared<StandardMoeBlock>(gate, router.plugin, experts, shared, m.d_model,
                                                   m.norm_eps, shared_gate);
    }
    return std::make_shared<MoeLayer>(context.layer_index, block, host.banks(), router.plugin);
}

}  // namespace moelab::core
