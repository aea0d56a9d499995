#include "core/compare/comparison_file.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/config/diagnostics.h"
#include "core/config/options_binding.h"
#include "core/config/options_schema.h"
#include "core/config/toml_guard.h"
#include "core/config/toml_params.h"
#include "core/system/file_error.h"
#include "core/system/read_file.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

struct TopLevel {
    std::string name;
    std::string description;
    std::string output;
    std::string split = "validation";
    std::int64_t max_batches = 0;
    std::vector<std::int64_t> seeds = {1};
    std::vector<std::string> set;
};

const OptionsBinding<TopLevel>& top_binding() {
    static const OptionsBinding<TopLevel> binding = [] {
        OptionsBinding<TopLevel> b;
        b.bind("name", &TopLevel::name, "Comparison name; defaults to the file's stem");
        b.bind("description", &TopLevel::description, "What this comparison shows");
        b.bind("output", &TopLevel::output,
               "Output directory (relative to the working directory); default "
               "runs/compare/<name>");
        b.bind_choice("split", &TopLevel::split, {"validation", "test"},
                      "The split every run is evaluated on");
        b.bind("max_batches", &TopLevel::max_batches,
               "Evaluation batches per measurement; 0: each run's eval.max_batches")
            .at_least(0);
        b.bind("seeds", &TopLevel::seeds, "Seeds of every run given by a recipe");
        b.bind("set", &TopLevel::set,
               "Recipe overrides (KEY=VALUE, TOML values) for every run given by a recipe, e.g. "
               "train.device=\"cuda\"");
        return b;
    }();
    return binding;
}

struct RunEntry {
    std::string name;
    std::string recipe;
    std::string dir;
    std::vector<std::string> set;
    std::vector<std::int64_t> seeds;
};

const OptionsBinding<RunEntry>& run_binding() {
    static const OptionsBinding<RunEntry> binding = [] {
        OptionsBinding<RunEntry> b;
        b.bind("name", &RunEntry::name,
               "Label in tables and charts; default: the recipe's or directory's stem");
        b.bind("recipe", &RunEntry::recipe,
               "Recipe to train (relative to this file); a finished run of the same resolved "
               "recipe and seed is reused");
        b.bind("dir", &RunEntry::dir,
               "An existing run directory, evaluated as it is (relative to this file)");
        b.bind("set", &RunEntry::set, "This run's recipe overrides, after the file's `set`");
        b.bind("seeds", &RunEntry::seeds, "This run's seeds; default: the file's `seeds`");
        return b;
    }();
    return binding;
}

const toml::array* array_at(const toml::table& root, const std::string& key,
                            Diagnostics& diagnostics) {
    const toml::node* node = root.get(key);
    if (node == nullptr) return nullptr;
    if (!node->is_array_of_tables()) {
        diagnostics.add(detail::location_of(node->source()), key,
                        fmt::format("expected an array of tables [[{}]], got {}", key,
                                    detail::describe_node(*node)));
        return nullptr;
    }
    return node->as_array();
}

std::vector<double> read_strengths(const toml::table& table, const std::string& prefix,
                                   const SourceLocation& table_at, Diagnostics& diagnostics,
                                   std::map<std::string, SourceLocation>& locations) {
    const std::string key = prefix + ".strengths";
    const toml::node* node = table.get("strengths");
    if (node != nullptr) locations[key] = detail::location_of(node->source());
    if (node == nullptr) {
        if (table.get("kind") != nullptr && table.get("kind")->value<std::string>() ==
                                                std::optional<std::string>("forced_balance")) {
            return {0.0};
        }
        diagnostics.add(table_at, key,
                        "missing key 'strengths': a list of perturbation strengths, e.g. "
                        "strengths = [1, 2]");
        return {};
    }
    std::vector<double> out;
    const toml::array* list = node->as_array();
    if (list == nullptr || list->empty()) {
        diagnostics.add(detail::location_of(node->source()), key,
                        fmt::format("expected a non-empty list of numbers >= 0, got {}",
                                    detail::describe_node(*node)));
        return out;
    }
    for (const toml::node& item : *list) {
        std::optional<double> value = item.value<double>();
        if (!item.is_number() || !value || !(*value >= 0)) {
            diagnostics.add(
                detail::location_of(item.source()), key,
                fmt::format("expected numbers >= 0, got {}", detail::describe_node(item)));
            continue;
        }
        out.push_back(*value);
    }
    return out;
}

}  // namespace

Comparison parse_comparison(const std::string& text, const fs::path& origin) {
    if (const auto hazard = find_toml_hazard(text)) {
        throw ConfigError(ConfigIssue{{origin.string(), hazard->line, hazard->column},
                                      "",
                                      fmt::format("TOML syntax error: {}", hazard->message)});
    }
    toml::table root;
    try {
        root = toml::parse(text, origin.string());
    } catch (const toml::parse_error& error) {
        throw ConfigError(ConfigIssue{detail::location_of(error.source()), "",
                                      fmt::format("TOML syntax error: {}", error.description())});
    }
    Diagnostics diagnostics;
    std::map<std::string, SourceLocation> locations;
    const SourceLocation file_at{origin.string(), 0, 0};
    TopLevel top;
    top_binding().assign(detail::read_params(root, top_binding().schema(), "",
                                             {"run", "perturbation"}, diagnostics, locations),
                         top);

    Comparison comparison;
    comparison.file = origin;
    comparison.name = top.name.empty() ? origin.stem().string() : top.name;
    comparison.output =
        top.output.empty() ? fs::path("runs") / "compare" / comparison.name : fs::path(top.output);
    comparison.split = top.split;
    comparison.max_batches = top.max_batches;
    auto at = [&](const std::string& key) {
        auto it = locations.find(key);
        return it == locations.end() ? file_at : it->second;
    };
    if (top.seeds.empty()) diagnostics.add(at("seeds"), "seeds", "expected at least one seed");
    for (std::int64_t seed : top.seeds) {
        if (seed < 0) {
            diagnostics.add(at("seeds"), "seeds", fmt::format("seeds are >= 0, got {}", seed));
        }
    }

    const fs::path base = origin.parent_path();
    std::set<std::string> names;
    if (const toml::array* runs = array_at(root, "run", diagnostics)) {
        std::size_t index = 0;
        for (const toml::node& node : *runs) {
            const toml::table& table = *node.as_table();
            const std::string prefix = fmt::format("run[{}]", index++);
            const SourceLocation table_at = detail::location_of(table.source());
            RunEntry entry;
            run_binding().assign(detail::read_params(table, run_binding().schema(), prefix, {},
                                                     diagnostics, locations),
                                 entry);
            ComparisonRun run;
            if (entry.recipe.empty() == entry.dir.empty()) {
                diagnostics.add(table_at, prefix,
                                "give exactly one of recipe = \"...\" (a recipe to train) or "
                                "dir = \"...\" (an existing run directory)");
                continue;
            }
            if (!entry.recipe.empty()) {
                run.recipe = base / entry.recipe;
                run.seeds = entry.seeds.empty() ? top.seeds : entry.seeds;
                run.overrides = top.set;
                run.overrides.insert(run.overrides.end(), entry.set.begin(), entry.set.end());
            } else {
                run.directory = base / entry.dir;
                if (!entry.set.empty() || !entry.seeds.empty()) {
                    diagnostics.add(table_at, prefix,
                                    "a run directory is evaluated as it was trained: `set` and "
                                    "`seeds` apply only to recipes");
                }
            }
            run.name = !entry.name.empty()     ? entry.name
                       : !entry.recipe.empty() ? fs::path(entry.recipe).stem().string()
                                               : fs::path(entry.dir).filename().string();
            for (std::int64_t seed : run.seeds) {
                if (seed < 0) {
                    diagnostics.add(table_at, prefix + ".seeds",
                                    fmt::format("seeds are >= 0, got {}", seed));
                }
            }
            if (!names.insert(run.name).second) {
                diagnostics.add(table_at, prefix + ".name",
                                fmt::format("two runs are named '{}'; give each [[run]] its own "
                                            "name",
                                            run.name));
            }
            comparison.runs.push_back(std::move(run));
        }
    }
    if (comparison.runs.empty() && root.get("run") == nullptr) {
        diagnostics.add(file_at, "run",
                        "missing [[run]] tables: each names a recipe = \"...\" or a dir = \"...\"");
    }

    if (const toml::array* sweeps = array_at(root, "perturbation", diagnostics)) {
        std::size_t index = 0;
        for (const toml::node& node : *sweeps) {
            const toml::table& table = *node.as_table();
            const std::string prefix = fmt::format("perturbation[{}]", index++);
            PerturbationSweep sweep;
            perturbation_binding().assign(
                detail::read_params(table, perturbation_binding().schema(), prefix, {"strengths"},
                                    diagnostics, locations),
                sweep.options);
            if (table.get("strength") != nullptr) {
                diagnostics.add(detail::location_of(table.get("strength")->source()),
                                prefix + ".strength",
                                "a comparison sweeps strengths: write strengths = [...]");
            }
            if (sweep.options.kind == "none") {
                diagnostics.add(detail::location_of(table.source()), prefix + ".kind",
                                "expected a perturbation kind (disable_top, logit_noise, "
                                "expert_dropout, random_routing, forced_balance); every run is "
                                "evaluated unperturbed anyway");
            }
            sweep.strengths = read_strengths(table, prefix, detail::location_of(table.source()),
                                             diagnostics, locations);
            for (double strength : sweep.strengths) {
                PerturbationOptions one = sweep.options;
                one.strength = strength;
                for (const auto& [key, message] : check_perturbation(one)) {
                    const std::string full =
                        prefix + "." + (key == "strength" ? std::string("strengths") : key);
                    diagnostics.add(at(full), full, message);
                }
            }
            comparison.perturbations.push_back(std::move(sweep));
        }
    }
    diagnostics.throw_if_any();
    return comparison;
}

Comparison load_comparison(const fs::path& file) {
    std::string text;
    try {
        text = read_file(file, kMaxRecipeBytes, "comparison file");
    } catch (const FileError& error) {
        throw ConfigError(ConfigIssue{SourceLocation{file.string(), 0, 0}, "",
                                      error.reason() + " (expected a comparison file, TOML)"});
    }
    return parse_comparison(text, file);
}

}  // namespace moelab::core
