#include "core/eval/perturbation_support.h"

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "core/plugin/plugin_error.h"

namespace moelab::core {

sdk::Support perturbation_support(const ResolvedRecipe& resolved,
                                  const Perturbation& perturbation) {
    if (!perturbation.active()) return sdk::Support::yes();
    if (resolved.router == nullptr) {
        return sdk::Support::no("a dense model has no router to perturb");
    }
    const sdk::RouterComponent& component = resolved.router->component;
    if (perturbation.kind == PerturbationKind::kNone) return sdk::Support::yes();  // shared only
    const std::string feature(perturbation_feature(perturbation.kind));
    const auto& listed = component.features;
    if (std::find(listed.begin(), listed.end(), feature) == listed.end()) {
        return sdk::Support::no(fmt::format(
            "router '{}' ({}) does not list the feature {}, so it has not said it honours the "
            "host's selection control for {}",
            component.name, describe_plugin(*resolved.router->plugin), feature,
            perturbation_name(perturbation.kind)));
    }
    if (!component.supports) return sdk::Support::yes();
    sdk::CapabilityQuery query = capability_query(resolved.recipe, resolved.recipe.train.device,
                                                  /*vocab_size=*/0, {feature});
    const sdk::Support support = call_plugin(*resolved.router->plugin, "capability query", [&] {
        return component.supports(query, resolved.router_params);
    });
    return support;
}

}  // namespace moelab::core
