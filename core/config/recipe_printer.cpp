#include "core/config/recipe_printer.h"

#include <cmath>
#include <functional>

#include <fmt/format.h>

#include "core/config/options_schema.h"
#include "core/config/recipe_loader.h"

namespace moelab::core {

namespace {

std::string quote(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
                } else {
                    out += c;
                }
        }
    }
    return out + "\"";
}

std::string format_float(double value) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
    std::string text = fmt::format("{}", value);  // shortest round-trip form
    if (text.find_first_of(".eE") == std::string::npos) text += ".0";
    return text;
}

template <class T, class Format>
std::string format_list(const std::vector<T>& values, Format format) {
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i) out += ", ";
        out += format(values[i]);
    }
    return out + "]";
}

// `keep`, when given, says which keys to write.
void append_params(
    std::string& out, const sdk::ParamSchema& schema, const sdk::Params& params,
    const std::function<bool(const std::string&, const sdk::ParamValue&)>& keep = nullptr) {
    for (const sdk::ParamSpec& spec : schema.specs()) {
        auto it = params.values().find(spec.name);
        if (it == params.values().end() || (keep && !keep(spec.name, it->second))) continue;
        out += fmt::format("{} = {}\n", spec.name, format_param_value(it->second));
    }
}

template <class Options>
void append_section(std::string& out, const std::string& name,
                    const OptionsBinding<Options>& binding, const Options& options) {
    out += fmt::format("\n[{}]\n", name);
    append_params(out, binding.schema(), binding.read(options));
}

void append_plugin_section(std::string& out, const PluginSelection& selection,
                           const std::map<std::string, sdk::Params>& plugin_params) {
    out += fmt::format("\n[{}]\nplugin = {}\n", selection.section, quote(selection.plugin));
    auto it = plugin_params.find(selection.section);
    if (it == plugin_params.end()) return;
    for (const auto& [key, value] : it->second.values()) {
        out += fmt::format("{} = {}\n", key, format_param_value(value));
    }
}

}  // namespace

std::string format_param_value(const sdk::ParamValue& value) {
    struct Formatter {
        std::string operator()(bool v) const { return v ? "true" : "false"; }
        std::string operator()(std::int64_t v) const { return fmt::format("{}", v); }
        std::string operator()(double v) const { return format_float(v); }
        std::string operator()(const std::string& v) const { return quote(v); }
        std::string operator()(const std::vector<std::int64_t>& v) const {
            return format_list(v, [](std::int64_t x) { return fmt::format("{}", x); });
        }
        std::string operator()(const std::vector<double>& v) const {
            return format_list(v, format_float);
        }
        std::string operator()(const std::vector<std::string>& v) const {
            return format_list(v, quote);
        }
    };
    return std::visit(Formatter{}, value);
}

std::string format_recipe(const Recipe& recipe,
                          const std::map<std::string, sdk::Params>& plugin_params) {
    std::string out = fmt::format("# resolved from {}\n", recipe.file.string());
    append_params(out, recipe_top_binding().schema(), recipe_top_binding().read(recipe));
    append_section(out, "plugins", plugins_binding(), recipe.plugins);
    // With sources, data.corpus is unused and writing it would conflict with them on reading.
    out += "\n[data]\n";
    append_params(out, data_binding().schema(), data_binding().read(recipe.data),
                  [&](const std::string& key, const sdk::ParamValue&) {
                      return key != "corpus" || recipe.data.sources.empty();
                  });
    // Sources print their name and the keys that differ from the defaults: an evaluation-only
    // source must not gain a weight (which would make it an error to read back).
    const sdk::Params defaults = data_source_binding().read(DataSourceOptions{});
    for (const DataSourceOptions& source : recipe.data.sources) {
        out += "\n[[data.source]]\n";
        append_params(out, data_source_binding().schema(), data_source_binding().read(source),
                      [&](const std::string& key, const sdk::ParamValue& value) {
                          return key == "name" || value != defaults.values().find(key)->second;
                      });
    }
    append_plugin_section(out, recipe.tokenizer, plugin_params);
    append_section(out, "model", model_binding(), recipe.model);
    append_plugin_section(out, recipe.attention, plugin_params);
    if (recipe.router) {
        append_section(out, "moe", moe_binding(), recipe.moe);
        append_plugin_section(out, *recipe.router, plugin_params);
    }
    if (!recipe.init.from.empty()) append_section(out, "init", init_binding(), recipe.init);
    append_section(out, "train", train_binding(), recipe.train);
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        const StageOptions& stage = recipe.stages[i];
        out += "\n[[stage]]\n";
        append_params(out, stage_binding().schema(), stage_binding().read(stage));
        // Only the options the stage sets; the rest are the run's (Note [Stages]).
        for (const auto& [section, table] : stage.plugin_options) {
            out += fmt::format("\n[stage.{}]\n", section);
            auto it = plugin_params.find(fmt::format("stage[{}].{}", i, section));
            if (it == plugin_params.end()) continue;
            for (const std::string& key : stage_plugin_keys(stage, section)) {
                auto value = it->second.values().find(key);
                if (value == it->second.values().end()) continue;
                out += fmt::format("{} = {}\n", key, format_param_value(value->second));
            }
        }
    }
    append_section(out, "eval", eval_binding(), recipe.eval);
    append_section(out, "eval.perturbation", perturbation_binding(), recipe.eval.perturbation);
    // Only when set: single-process recipes print as they always did.
    if (recipe.parallel.expert != 1) {
        append_section(out, "parallel", parallel_binding(), recipe.parallel);
    }
    return out;
}

}  // namespace moelab::core
