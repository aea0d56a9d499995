#pragma once

// The components of every loaded plugin, by name. Names are unique across all kinds, so
// `moelab plugins info NAME` is never ambiguous.

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/plugin/plugin_info.h"
#include "moelab/sdk/registrar.h"

namespace moelab::core {

enum class ComponentKind { kRouter, kAttention, kTokenizer };
const char* component_kind_name(ComponentKind kind);  // "router", "attention", "tokenizer"

template <class Component>
struct Registered {
    LibraryHandle library;  // first member: destroyed last, after the plugin's code in `component`
    std::shared_ptr<const PluginInfo> plugin;
    Component component;
};
using RegisteredRouter = Registered<sdk::RouterComponent>;
using RegisteredAttention = Registered<sdk::AttentionComponent>;
using RegisteredTokenizer = Registered<sdk::TokenizerComponent>;

// A library found on the search path but not loaded, and why.
struct PluginRefusal {
    std::filesystem::path file;
    std::string reason;
};

// One line of `moelab plugins`.
struct ComponentListing {
    std::string name;
    ComponentKind kind;
    std::string summary;
    const sdk::ParamSchema* params;
    std::shared_ptr<const PluginInfo> plugin;
};

class PluginRegistry {
public:
    // Calls the plugin's register function and adds all its components, or none of them: if the
    // function throws, a name is taken (the reason names both files) or a component is malformed,
    // the whole plugin is refused and the reason is returned.
    std::optional<std::string> add_plugin(std::shared_ptr<const PluginInfo> plugin,
                                          LibraryHandle library,
                                          const std::function<void(sdk::Registrar&)>& register_fn);
    void add_refusal(PluginRefusal refusal) { refusals_.push_back(std::move(refusal)); }

    const std::vector<std::shared_ptr<const PluginInfo>>& plugins() const { return plugins_; }
    const std::vector<PluginRefusal>& refusals() const { return refusals_; }

    const RegisteredRouter* find_router(std::string_view name) const;
    const RegisteredAttention* find_attention(std::string_view name) const;
    const RegisteredTokenizer* find_tokenizer(std::string_view name) const;

    std::vector<std::string> names(ComponentKind kind) const;
    std::vector<ComponentListing> listings() const;  // sorted by kind, then name
    std::optional<ComponentListing> listing(std::string_view name) const;

private:
    std::vector<std::shared_ptr<const PluginInfo>> plugins_;
    std::vector<PluginRefusal> refusals_;
    std::map<std::string, RegisteredRouter, std::less<>> routers_;
    std::map<std::string, RegisteredAttention, std::less<>> attention_;
    std::map<std::string, RegisteredTokenizer, std::less<>> tokenizers_;
};

}  // namespace moelab::core
