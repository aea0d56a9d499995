#include "core/plugin/resolve.h"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "core/config/recipe_loader.h"
#include "core/config/suggest.h"
#include "core/plugin/plugin_error.h"
#include "core/plugin/required_feature.h"
#include "kernels/binding/grouped_swiglu.h"
#include "moelab/kernels/grouped_swiglu.h"
#include "moelab/sdk/calibration.h"

namespace moelab::core {

std::map<std::string, sdk::Params> ResolvedRecipe::plugin_params() const {
    std::map<std::string, sdk::Params> params{{"tokenizer", tokenizer_params},
                                              {"attention", attention_params}};
    if (router != nullptr) params.emplace("router", router_params);
    for (std::size_t i = 0; i < stage_params.size(); ++i) {
        for (const auto& [section, options] : stage_params[i]) {
            params.emplace(fmt::format("stage[{}].{}", i, section), options);
        }
    }
    return params;
}

ResolvedRecipe stage_recipe(const ResolvedRecipe& resolved, std::size_t index) {
    ResolvedRecipe stage = resolved;
    if (resolved.recipe.stages.empty()) return stage;
    stage.recipe.data.seq_len = resolved.recipe.stages.at(index).seq_len;
    for (const auto& [section, options] : resolved.stage_params.at(index)) {
        (section == "router" ? stage.router_params : stage.attention_params) = options;
    }
    return stage;
}

ResolvedRecipe checkpoint_recipe(const ResolvedRecipe& resolved, std::int64_t steps) {
    ResolvedRecipe model = stage_recipe(resolved, stage_of_weights(resolved.recipe, steps));
    auto command_line_wins = [](sdk::Params& own, const sdk::Params& run,
                                const PluginSelection& selection) {
        std::map<std::string, sdk::ParamValue, std::less<>> values = own.values();
        for (const std::string& key : command_line_keys(selection)) {
            if (auto it = run.values().find(key); it != run.values().end())
                values[key] = it->second;
        }
        own = sdk::Params(std::move(values));
    };
    command_line_wins(model.attention_params, resolved.attention_params, resolved.recipe.attention);
    if (resolved.recipe.router) {
        command_line_wins(model.router_params, resolved.router_params, *resolved.recipe.router);
    }
    return model;
}

bool same_stage_model(const ResolvedRecipe& resolved, std::size_t a, std::size_t b) {
    const ResolvedRecipe first = stage_recipe(resolved, a);
    const ResolvedRecipe second = stage_recipe(resolved, b);
    // The context too: a model is told its longest sequence (ModelShape::max_seq_len).
    return first.recipe.data.seq_len == second.recipe.data.seq_len &&
           first.attention_params.values() == second.attention_params.values() &&
           first.router_params.values() == second.router_params.values();
}

std::size_t stage_of_weights(const Recipe& recipe, std::int64_t steps) {
    std::int64_t end = 0;
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        end += recipe.stages[i].steps;
        if (steps <= end) return i;
    }
    return recipe.stages.empty() ? 0 : recipe.stages.size() - 1;
}

sdk::CapabilityQuery capability_query(const Recipe& recipe, DeviceChoice device,
                                      std::int64_t vocab_size, std::vector<std::string> features) {
    const ModelOptions& m = recipe.model;
    sdk::CapabilityQuery query;
    query.model.d_model = m.d_model;
    query.model.layers = m.layers;
    query.model.vocab_size = vocab_size;
    query.model.heads = m.heads;
    query.model.kv_heads = m.kv_heads == 0 ? m.heads : m.kv_heads;
    query.model.head_dim = m.d_model / m.heads;
    query.model.max_seq_len = recipe.data.seq_len;
    query.model.d_ff = m.d_ff;
    query.model.norm_eps = m.norm_eps;
    if (recipe.router) {
        query.model.experts = recipe.moe.experts;
        query.model.d_ff_expert = recipe.moe.d_ff_expert;
        query.model.shared_experts = recipe.moe.shared_experts;
        query.model.shared_gate = recipe.moe.shared_gate;
    }
    query.device = name_of(device);
    query.dtype = name_of(m.dtype);
    query.features = std::move(features);
    return query;
}

namespace {

template <class Component>
const Registered<Component>* find_component(const Recipe& recipe, const PluginSelection& selection,
                                            const PluginRegistry& registry, ComponentKind kind,
                                            const Registered<Component>* found) {
    if (found != nullptr) return found;
    const std::string key = selection.section + ".plugin";
    const std::vector<std::string> available = registry.names(kind);
    std::string message =
        fmt::format("no {} component named '{}'", component_kind_name(kind), selection.plugin);
    if (auto other = registry.listing(selection.plugin)) {
        const bool vowel = other->kind == ComponentKind::kAttention;
        message += fmt::format(" ('{}' is {} {} component)", selection.plugin, vowel ? "an" : "a",
                               component_kind_name(other->kind));
    } else {
        message += did_you_mean(selection.plugin, available);
    }
    std::string names;
    for (const std::string& name : available) names += (names.empty() ? "" : ", ") + name;
    message += fmt::format("; available {} components: {}", component_kind_name(kind),
                           names.empty() ? "none" : names);
    if (!registry.refusals().empty()) {
        message += fmt::format(" ({} plugin libraries were refused; `moelab plugins` shows why)",
                               registry.refusals().size());
    }
    throw ConfigError(ConfigIssue{recipe.location_of(key), key, message});
}

template <class Component>
void ask_support(const Recipe& recipe, const std::string& section,
                 const Registered<Component>& registered, const sdk::Params& params,
                 const sdk::CapabilityQuery& query) {
    if (!registered.component.supports) return;
    const sdk::Support support = call_plugin(*registered.plugin, "capability query", [&] {
        return registered.component.supports(query, params);
    });
    if (support.ok) return;
    const std::string key = section + ".plugin";
    throw ConfigError(ConfigIssue{recipe.location_of(key), key,
                                  fmt::format("{} '{}' does not support this run: {}", section,
                                              registered.component.name, support.reason)});
}

}  // namespace

ResolvedRecipe resolve_recipe(Recipe recipe, const PluginRegistry& registry,
                              const sdk::CapabilityQuery& query) {
    ResolvedRecipe resolved;
    resolved.tokenizer =
        find_component(recipe, recipe.tokenizer, registry, ComponentKind::kTokenizer,
                       registry.find_tokenizer(recipe.tokenizer.plugin));
    resolved.attention =
        find_component(recipe, recipe.attention, registry, ComponentKind::kAttention,
                       registry.find_attention(recipe.attention.plugin));
    if (recipe.router) {
        resolved.router = find_component(recipe, *recipe.router, registry, ComponentKind::kRouter,
                                         registry.find_router(recipe.router->plugin));
        // A deprecated [router] key was moved to its new place at load time; a router that
        // declares an option of that name would silently lose it, so that is an error.
        for (const ConfigIssue& deprecation : recipe.deprecations) {
            const std::string_view key = deprecation.key;
            if (!key.starts_with("router.")) continue;
            const std::string option(key.substr(std::string_view("router.").size()));
            for (const sdk::ParamSpec& spec : resolved.router->component.params.specs()) {
                if (spec.name != option) continue;
                throw ConfigError(ConfigIssue{
                    deprecation.location, deprecation.key,
                    fmt::format("router '{}' declares an option '{}', but [router] {} is read as "
                                "the deprecated spelling of the host's key ({}); rename the "
                                "plugin's option",
                                recipe.router->plugin, option, option, deprecation.message)});
            }
        }
        if (recipe.moe.shared_gate && resolved.router->component.make_block) {
            throw ConfigError(ConfigIssue{
                recipe.location_of("moe.shared_gate"), "moe.shared_gate",
                fmt::format("the host's shared gate mixes the output of routers in gate form; "
                            "'{}' is a block that builds its own FFN (and its own shared "
                            "experts, if any): remove shared_gate",
                            recipe.router->plugin)});
        }
    }

    // Collect option problems of all three sections before failing.
    std::vector<ConfigIssue> issues;
    auto resolve_params = [&](const PluginSelection& selection, const sdk::ParamSchema& schema,
                              sdk::Params& out) {
        try {
            out = resolve_plugin_params(selection, schema);
        } catch (const ConfigError& error) {
            issues.insert(issues.end(), error.issues().begin(), error.issues().end());
        }
    };
    resolve_params(recipe.tokenizer, resolved.tokenizer->component.params,
                   resolved.tokenizer_params);
    resolve_params(recipe.attention, resolved.attention->component.params,
                   resolved.attention_params);
    if (resolved.router != nullptr) {
        resolve_params(*recipe.router, resolved.router->component.params, resolved.router_params);
    }
    if (!issues.empty()) throw ConfigError(std::move(issues));

    // Note [Stages]: each stage's options of the model's plugins, over the run's.
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        std::map<std::string, sdk::Params> stage;
        for (const auto& [section, table] : recipe.stages[i].plugin_options) {
            const bool router = section == "router";
            if (router && resolved.router == nullptr) continue;  // refused by load_recipe
            try {
                stage.emplace(
                    section,
                    router ? resolve_stage_plugin_params(*recipe.router, recipe.stages[i], i,
                                                         resolved.router->component.params)
                           : resolve_stage_plugin_params(recipe.attention, recipe.stages[i], i,
                                                         resolved.attention->component.params));
            } catch (const ConfigError& error) {
                issues.insert(issues.end(), error.issues().begin(), error.issues().end());
            }
        }
        resolved.stage_params.push_back(std::move(stage));
    }
    if (!issues.empty()) throw ConfigError(std::move(issues));

    resolved.recipe = std::move(recipe);
    check_support(resolved, query);
    if (resolved.router != nullptr) check_expert_kernel(resolved.recipe, query);
    check_parallel_support(resolved, static_cast<int>(resolved.recipe.parallel.expert));
    if (resolved.recipe.init.calibration_samples > 0) {
        require_feature(resolved, ComponentKind::kAttention, sdk::feature::kCalibration,
                        "init.calibration_samples asks to calibrate its layers (Note [Calibration] "
                        "in the SDK's calibration.h)");
    }
    return resolved;
}

void check_parallel_support(const ResolvedRecipe& resolved, int processes) {
    if (resolved.router == nullptr) return;
    const Recipe& recipe = resolved.recipe;
    const std::vector<std::string>& features = resolved.router->component.features;
    auto lists = [&](std::string_view feature) {
        return std::find(features.begin(), features.end(), feature) != features.end();
    };
    const std::int64_t degree = recipe.parallel.expert;
    const std::string key = degree > 1 ? "parallel.expert" : "router.plugin";
    auto refuse = [&](std::string_view feature, const std::string& why) {
        throw ConfigError(ConfigIssue{recipe.location_of(key), key,
                                      fmt::format("router '{}' does not list the feature {}: {}",
                                                  recipe.router->plugin, feature, why)});
    };
    if (processes > 1 && !lists(sdk::feature::kSplitBatch)) {
        refuse(sdk::feature::kSplitBatch,
               fmt::format("its losses are not known to be correct when the batch is split over "
                           "{} processes; train it in one process",
                           processes));
    }
    if (degree > 1 && !lists(sdk::feature::kShardedExperts)) {
        refuse(sdk::feature::kShardedExperts,
               "it may need every expert in every process (run_all: dense training compute or "
               "gates from expert outputs); set parallel.expert = 1 (data parallelism still "
               "splits the batch)");
    }
}

void check_expert_kernel(const Recipe& recipe, const sdk::CapabilityQuery& query) {
    kernels::GroupedSwigluDesc desc;
    desc.experts = recipe.moe.experts;
    desc.d_model = recipe.model.d_model;
    desc.d_ff = recipe.moe.d_ff_expert;
    desc.backend = query.device == name_of(DeviceChoice::kCuda) ? kernels::Backend::kCuda
                                                                : kernels::Backend::kCpu;
    // The experts' rows are the residual stream's dtype, float32, also under bfloat16 autocast
    // (which acts inside the kernel's matrix products): GroupedSwigluDesc::element.
    desc.element = kernels::ElementType::kFloat32;
    desc.compute =
        desc.backend == kernels::Backend::kCuda && recipe.model.dtype == ComputeDtype::kBfloat16
            ? kernels::ElementType::kBfloat16
            : kernels::ElementType::kFloat32;
    kernels::describe_platform(desc);
    const kernels::KernelChoice choice =
        kernels::choose_grouped_swiglu_kernel(recipe.moe.kernel, desc);
    if (!choice.verdict.ok) {
        throw ConfigError(
            ConfigIssue{recipe.location_of("moe.kernel"), "moe.kernel",
                        fmt::format("kernel \"{}\" cannot run this model on {}: {}",
                                    recipe.moe.kernel, query.device, choice.verdict.reason)});
    }
}

void check_support(const ResolvedRecipe& resolved, const sdk::CapabilityQuery& query) {
    const Recipe& recipe = resolved.recipe;
    ask_support(recipe, "tokenizer", *resolved.tokenizer, resolved.tokenizer_params, query);
    ask_support(recipe, "attention", *resolved.attention, resolved.attention_params, query);
    if (resolved.router != nullptr) {
        ask_support(recipe, "router", *resolved.router, resolved.router_params, query);
    }
    // Each stage's own options are asked as well, refused at that stage's table.
    for (std::size_t i = 0; i < resolved.stage_params.size(); ++i) {
        for (const auto& [section, options] : resolved.stage_params[i]) {
            const std::string table = fmt::format("stage[{}].{}", i, section);
            if (section == "router" && resolved.router != nullptr) {
                ask_support(recipe, table, *resolved.router, options, query);
            } else if (section == "attention") {
                ask_support(recipe, table, *resolved.attention, options, query);
            }
        }
    }
}

}  // namespace moelab::core
