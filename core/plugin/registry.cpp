#include "core/plugin/registry.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <type_traits>
#include <variant>

#include <fmt/format.h>

#include "core/plugin/plugin_error.h"

namespace moelab::core {

const char* component_kind_name(ComponentKind kind) {
    switch (kind) {
        case ComponentKind::kRouter:
            return "router";
        case ComponentKind::kAttention:
            return "attention";
        case ComponentKind::kTokenizer:
            return "tokenizer";
    }
    return "?";
}

namespace {

using AnyComponent =
    std::variant<sdk::RouterComponent, sdk::AttentionComponent, sdk::TokenizerComponent>;

// Collects one plugin's registrations before they are checked and committed.
class StagingRegistrar final : public sdk::Registrar {
  public:
    void add_router(sdk::RouterComponent component) override { add(std::move(component)); }
    void add_attention(sdk::AttentionComponent component) override { add(std::move(component)); }
    void add_tokenizer(sdk::TokenizerComponent component) override { add(std::move(component)); }

    std::vector<AnyComponent> components;

  private:
    template <class Component>
    void add(Component component) {
        components.emplace_back(std::in_place_type<Component>, std::move(component));
    }
};

// What a component of each kind must set, or null when it is complete.
const char* incomplete(const sdk::RouterComponent& c) {
    return static_cast<bool>(c.make_router) == static_cast<bool>(c.make_block)
               ? "must set exactly one of make_router and make_block"
               : nullptr;
}
const char* incomplete(const sdk::AttentionComponent& c) {
    return c.make_attention ? nullptr : "must set make_attention";
}
const char* incomplete(const sdk::TokenizerComponent& c) {
    return c.train && c.load ? nullptr : "must set both train and load";
}

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
            bad_default =
                !spec.choices.empty() &&
                std::find(spec.choices.begin(), spec.choices.end(), *v) == spec.choices.end();
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
    for (const AnyComponent& staged_component : staging.components) {
        if (problem) break;
        std::visit(
            [&](const auto& c) {
                const char* kind_name =
                    component_kind_name(static_cast<ComponentKind>(staged_component.index()));
                if (!valid_component_name(c.name)) {
                    problem = fmt::format("{} component name '{}' must match [a-z0-9][a-z0-9_-]*",
                                          kind_name, c.name);
                } else if (!staged.insert(c.name).second) {
                    problem = fmt::format("registers the component name '{}' twice", c.name);
                } else if (auto existing = listing(c.name)) {
                    problem = fmt::format(
                        "component name '{}' is already registered by plugin '{}' ({})", c.name,
                        existing->plugin->name, existing->plugin->file.string());
                } else if (const char* needs = incomplete(c)) {
                    problem = fmt::format("{} component '{}' {}", kind_name, c.name, needs);
                } else if (auto bad = check_schema(c.params)) {
                    problem = fmt::format("{} component '{}': {}", kind_name, c.name, *bad);
                }
            },
            staged_component);
    }
    if (problem) {
        return fmt::format("{}: {}", describe_plugin(*plugin), *problem);
    }

    for (AnyComponent& staged_component : staging.components) {
        std::visit(
            [&](auto& c) {
                using Component = std::decay_t<decltype(c)>;
                std::string name = c.name;  // copied first: the component is moved below
                components_.emplace(std::move(name), RegisteredComponent(Registered<Component>{
                                                         library, plugin, std::move(c)}));
            },
            staged_component);
    }
    plugins_.push_back(std::move(plugin));
    return std::nullopt;
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
    for (const auto& [name, registered] : components_) {
        std::visit(
            [&, &name = name](const auto& r) {
                out.push_back({name, kind_of(registered), r.component.summary, &r.component.params,
                               r.plugin, &r.component.features});
            },
            registered);
    }
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
        return static_cast<int>(a.kind) < static_cast<int>(b.kind);
    });
    return out;
}

std::optional<ComponentListing> PluginRegistry::listing(std::string_view name) const {
    auto it = components_.find(name);
    if (it == components_.end()) return std::nullopt;
    return std::visit(
        [&](const auto& r) {
            return ComponentListing{
                it->first, kind_of(it->second),  r.component.summary, &r.component.params,
                r.plugin,  &r.component.features};
        },
        it->second);
}

}  // namespace moelab::core
