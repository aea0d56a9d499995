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
#include <variant>
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

// Any registered component; the alternatives are in ComponentKind's order.
using RegisteredComponent =
    std::variant<RegisteredRouter, RegisteredAttention, RegisteredTokenizer>;

inline ComponentKind kind_of(const RegisteredComponent& component) {
    return static_cast<ComponentKind>(component.index());
}

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
    const std::vector<std::string>* features;  // what it lists (capability.h), as registered
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

    // The component called `name` if it is a `Component`, else null.
    template <class Component>
    const Registered<Component>* find(std::string_view name) const {
        auto it = components_.find(name);
        return it == components_.end() ? nullptr : std::get_if<Registered<Component>>(&it->second);
    }
    const RegisteredRouter* find_router(std::string_view name) const {
        return find<sdk::RouterComponent>(name);
    }
    const RegisteredAttention* find_attention(std::string_view name) const {
        return find<sdk::AttentionComponent>(name);
    }
    const RegisteredTokenizer* find_tokenizer(std::string_view name) const {
        return find<sdk::TokenizerComponent>(name);
    }
    // Every component, by name (names are unique across kinds).
    const std::map<std::string, RegisteredComponent, std::less<>>& components() const {
        return components_;
    }

    std::vector<std::string> names(ComponentKind kind) const;
    std::vector<ComponentListing> listings() const;  // sorted by kind, then name
    std::optional<ComponentListing> listing(std::string_view name) const;

  private:
    std::vector<std::shared_ptr<const PluginInfo>> plugins_;
    std::vector<PluginRefusal> refusals_;
    std::map<std::string, RegisteredComponent, std::less<>> components_;
};

}  // namespace moelab::core
