#include "core/plugin/registry.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "core/plugin/plugin_error.h"

namespace moelab::core {

const char* component_kind_name(ComponentKind kind) {
    switch (kind) {
        case ComponentKind::kRouter: return "router";
        case ComponentKind::kAttention: return "attention";
        case ComponentKind::kTokenizer: return "tokenizer";
    }
    return "?";
}

namespace {

// Collects one plugin's registrations before they are checked and committed.
class StagingRegistrar final : public sdk::Registrar {
public:
    void add_router(sdk::RouterComponent component) override {
        routers.push_back(std::move(component));
    }
    void add_attention(sdk::AttentionComponent component) override {
        attention.push_back(std::move(component));
    }
    void add_tokenizer(sdk::TokenizerComponent component) override {
        tokenizers.push_back(std::move(component));
    }

    std::vector<sdk::RouterComponent> routers;
    std::vector<sdk::AttentionComponent> attention;
    std::vector<sdk::TokenizerComponent> tokenizers;
};

std::optional<std::string> check_schema(const sdk::ParamSchema& schema) {
    for (const sdk::ParamSpec& spec : schema.specs()) {
        if (spec.name.empty()) return "a parameter has an empty name";
        if (spec.name == "plugin") return "parameter name 'plugin' is reserved for the host";
        const std::size_t type_index = static_cast<std::size_t>(spec.type);
        if (spec.default_value.index() != type_index) {
            return fmt::format("default of '{}' does not have the declared type {}", spec.name,
                               sdk::param_type_name(spec.type));
        }
        auto out_of_range = [&](double v) {
            return (spec.min && v < *spec.min) || (spec.max && v > *spec.max);
        };
        bool bad_default = false;
        if (const auto* v = std::get_if<std::int64_t>(&spec.default_value)) {
            bad_default = out_of_range(static_cast<double>(*v));
        } else if (const auto* v = std::get_if<double>(&spec.default_value)) {
            bad_default = out_of_range(*v);
        } else if (const auto* v = std::get_if<std::string>(&spec.default_value)) {
            bad_default = !spec.choices.empty() &&
                          std::find(spec.choices.begin(), spec.choices.end(), *v) ==
                              spec.choices.end();
        }
        if (bad_default) {
            return fmt::format("default of '{}' violates its own range or choices", spec.name);
        }
    }
    return std::nullopt;
}

// [a-z0-9][a-z0-9_-]*: safe in file names, recipe values and command lines.
bool valid_component_name(const std::string& name) {
    auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (name.empty() || !lower_or_digit(name[0])) return false;
    return std::all_of(name.begin(), name.end(),
                       [&](char c) { return lower_or_digit(c) || c == '_' || c == '-'; });
}

}  // namespace

std::optional<std::string> PluginRegistry::add_plugin(
    std::shared_ptr<const PluginInfo> plugin, LibraryHandle library,
    const std::function<void(sdk::Registrar&)>& register_fn) {
    StagingRegistrar staging;
    try {
        call_plugin(*plugin, "registering components", [&] { register_fn(staging); });
    } catch (const PluginError& error) {
        return std::string(error.what());
    }

    // Every name must be new, well formed, and each component complete.
    std::set<std::string> staged;
    std::optional<std::string> problem;
    auto check = [&](const std::string& name, ComponentKind kind, const sdk::ParamSchema& schema,
                     bool complete, const char* needs) {
        if (problem) return;
        const char* kind_name = component_kind_name(kind);
        if (!valid_component_name(name)) {
            problem = fmt::format("{} component name '{}' must match [a-z0-9][a-z0-9_-]*",
                                  kind_name, name);
        } else if (!staged.insert(name).second) {
            problem = fmt::format("registers the component name '{}' twice", name);
        } else if (auto existing = listing(name)) {
            problem = fmt::format("component name '{}' is already registered by plugin '{}' ({})",
                                  name, existing->plugin->name, existing->plugin->file.string());
        } else if (!complete) {
            problem = fmt::format("{} component '{}' {}", kind_name, name, needs);
        } else if (auto bad = check_schema(schema)) {
            problem = fmt::format("{} component '{}': {}", kind_name, name, *bad);
        }
    };
    for (const auto& c : staging.routers) {
        check(c.name, ComponentKind::kRouter, c.params,
              static_cast<bool>(c.make_router) != static_cast<bool>(c.make_block),
              "must set exactly one of make_router and make_block");
    }
    for (const auto& c : staging.attention) {
        check(c.name, ComponentKind::kAttention, c.params, static_cast<bool>(c.make_attention),
              "must set make_attention");
    }
    for (const auto& c : staging.tokenizers) {
        check(c.name, ComponentKind::kTokenizer, c.params, c.train && c.load,
              "must set both train and load");
    }
    if (problem) {
        return fmt::format("{}: {}", describe_plugin(*plugin), *problem);
    }

    for (auto& c : staging.routers) {
        std::string name = c.name;  // copied first: the component is moved below
        routers_.emplace(std::move(name), RegisteredRouter{library, plugin, std::move(c)});
    }
    for (auto& c : staging.attention) {
        std::string name = c.name;  // copied first: the component is moved below
        attention_.emplace(std::move(name), RegisteredAttention{library, plugin, std::move(c)});
    }
    for (auto& c : staging.tokenizers) {
        std::string name = c.name;  // copied first: the component is moved below
        tokenizers_.emplace(std::move(name), RegisteredTokenizer{library, plugin, std::move(c)});
    }
    plugins_.push_back(std::move(plugin));
    return std::nullopt;
}

const RegisteredRouter* PluginRegistry::find_router(std::string_view name) const {
    auto it = routers_.find(name);
    return it == routers_.end() ? nullptr : &it->second;
}

const RegisteredAttention* PluginRegistry::find_attention(std::string_view name) const {
    auto it = attention_.find(name);
    return it == attention_.end() ? nullptr : &it->second;
}

const RegisteredTokenizer* PluginRegistry::find_tokenizer(std::string_view name) const {
    auto it = tokenizers_.find(name);
    return it == tokenizers_.end() ? nullptr : &it->second;
}

std::vector<std::string> PluginRegistry::names(ComponentKind kind) const {
    std::vector<std::string> out;
    for (const ComponentListing& entry : listings()) {
        if (entry.kind == kind) out.push_back(entry.name);
    }
    return out;
}

std::vector<ComponentListing> PluginRegistry::listings() const {
    std::vector<ComponentListing> out;
    for (const auto& [name, r] : routers_) {
        out.push_back({name, ComponentKind::kRouter, r.component.summary, &r.component.params,
                       r.plugin});
    }
    for (const auto& [name, a] : attention_) {
        out.push_back({name, ComponentKind::kAttention, a.component.summary, &a.component.params,
                       a.plugin});
    }
    for (const auto& [name, t] : tokenizers_) {
        out.push_back({name, ComponentKind::kTokenizer, t.component.summary, &t.component.params,
                       t.plugin});
    }
    return out;
}

std::optional<ComponentListing> PluginRegistry::listing(std::string_view name) const {
    for (ComponentListing& entry : listings()) {
        if (entry.name == name) return std::move(entry);
    }
    return std::nullopt;
}

}  // namespace moelab::core
