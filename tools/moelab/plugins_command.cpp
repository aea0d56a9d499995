#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/config/recipe_printer.h"
#include "core/config/suggest.h"
#include "core/plugin/loader.h"

namespace moelab::cli {

namespace {

std::string range_text(const sdk::ParamSpec& spec) {
    if (!spec.choices.empty()) {
        std::string text;
        for (const std::string& choice : spec.choices) text += (text.empty() ? "" : "|") + choice;
        return text;
    }
    auto number = [](double v) { return fmt::format("{}", v); };
    if (spec.min && spec.max) return fmt::format("[{}, {}]", number(*spec.min), number(*spec.max));
    if (spec.min) return ">= " + number(*spec.min);
    if (spec.max) return "<= " + number(*spec.max);
    return "";
}

}  // namespace

int list_plugins() {
    const core::PluginRegistry registry = core::load_plugin_registry({}, /*allow_refusals=*/true);
    const auto listings = registry.listings();
    std::size_t name_width = 4, kind_width = 4, version_width = 7;
    for (const auto& entry : listings) {
        name_width = std::max(name_width, entry.name.size());
        version_width = std::max(version_width, entry.plugin->version.size());
    }
    kind_width = 9;
    fmt::print("{:<{}}  {:<{}}  {:<{}}  {}\n", "NAME", name_width, "KIND", kind_width, "VERSION",
               version_width, "FILE");
    for (const auto& entry : listings) {
        fmt::print("{:<{}}  {:<{}}  {:<{}}  {}\n", entry.name, name_width,
                   core::component_kind_name(entry.kind), kind_width, entry.plugin->version,
                   version_width, entry.plugin->file.string());
    }
    if (listings.empty()) {
        fmt::print("(no plugins found; searched {} and MOELAB_PLUGIN_PATH)\n",
                   core::builtin_plugin_directory().string());
    }
    return registry.refusals().empty() ? kExitOk : kExitUsageError;
}

int show_plugin_info(const std::string& name) {
    const core::PluginRegistry registry = core::load_plugin_registry({}, /*allow_refusals=*/true);
    const auto entry = registry.listing(name);
    if (!entry) {
        std::vector<std::string> names;
        for (const auto& listing : registry.listings()) names.push_back(listing.name);
        throw UsageError(fmt::format("no component named '{}'{}; `moelab plugins` lists them", name,
                                     core::did_you_mean(name, names)));
    }
    const core::PluginInfo& plugin = *entry->plugin;
    fmt::print("{} ({})\n  {}\n", entry->name, core::component_kind_name(entry->kind),
               entry->summary);
    fmt::print("plugin: {} {} ({})\n  file: {}\n  SDK {}, fingerprint {}\n", plugin.name,
               plugin.version, plugin.summary, plugin.file.string(), plugin.sdk_version,
               plugin.build_fingerprint);
    // What the host may ask of it: perturbations, parallel runs, decoding, export (capability.h).
    // Anything not listed is refused with the component's name, or reported as n/a.
    fmt::print("features: {}\n", entry->features->empty()
                                     ? std::string("(none)")
                                     : fmt::format("{}", fmt::join(*entry->features, ", ")));
    const auto& specs = entry->params->specs();
    fmt::print("options ([{}] table of a recipe):\n",
               entry->kind == core::ComponentKind::kRouter      ? "router"
               : entry->kind == core::ComponentKind::kAttention ? "attention"
                                                                : "tokenizer");
    if (specs.empty()) fmt::print("  (none)\n");
    for (const sdk::ParamSpec& spec : specs) {
        const std::string range = range_text(spec);
        fmt::print("  {} ({}{}), default {}\n      {}\n", spec.name,
                   sdk::param_type_name(spec.type), range.empty() ? "" : ", " + range,
                   core::format_param_value(spec.default_value), spec.doc);
    }
    return registry.refusals().empty() ? kExitOk : kExitUsageError;
}

}  // namespace moelab::cli
