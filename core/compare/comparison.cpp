#include "core/compare/comparison.h"

#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/eval/perturbation_support.h"
#include "core/system/atomic_file.h"
#include "core/system/hash.h"
#include "core/system/read_file.h"
#include "core/train/model_state.h"
#include "core/train/progress.h"
#include "core/train/trainer.h"

namespace moelab::core {

namespace fs = std::filesystem;

nlohmann::json ComparisonCell::to_json() const {
    nlohmann::json j = {{"run", run},           {"seed", seed},
                        {"run_dir", run_dir},   {"perturbation", kind},
                        {"strength", strength}, {"description", perturbation},
                        {"measured", measured}, {"step", step}};
    if (!note.empty()) j["note"] = note;
    if (measured) {
        j["loss"] = loss;
        j["ppl"] = ppl;
        j["ratio"] = ratio;
        j["tokens"] = tokens;
    } else {
        j["reason"] = reason;
    }
    return j;
}

ComparisonCell ComparisonCell::from_json(const nlohmann::json& j) {
    ComparisonCell c;
    c.run = j.at("run").get<std::string>();
    c.seed = j.at("seed").get<std::int64_t>();
    c.run_dir = j.at("run_dir").get<std::string>();
    c.kind = j.at("perturbation").get<std::string>();
    c.strength = j.at("strength").get<double>();
    c.perturbation = j.at("description").get<std::string>();
    c.measured = j.at("measured").get<bool>();
    c.step = j.at("step").get<std::int64_t>();
    c.note = j.value("note", std::string());
    if (c.measured) {
        c.loss = j.at("loss").get<double>();
        c.ppl = j.at("ppl").get<double>();
        c.ratio = j.at("ratio").get<double>();
        c.tokens = j.at("tokens").get<std::int64_t>();
    } else {
        c.reason = j.at("reason").get<std::string>();
    }
    return c;
}

namespace {

using Clock = std::chrono::steady_clock;

struct Target {
    const ComparisonRun* run = nullptr;
    std::int64_t seed = -1;
};

// A measurement's identity: everything that determines its value.
std::string cell_key(const std::string& run, std::int64_t seed, const std::string& perturbation,
                     const std::string& recipe_hash, const std::string& split,
                     std::int64_t max_batches) {
    return ContentHash()
        .add(run)
        .add(std::to_string(seed))
        .add(perturbation)
        .add(recipe_hash)
        .add(split)
        .add(std::to_string(max_batches))
        .hex();
}

std::optional<ComparisonCell> read_cell(const fs::path& file) {
    if (!fs::exists(file)) return std::nullopt;
    try {
        return ComparisonCell::from_json(
            nlohmann::json::parse(read_file(file, kMaxSmallFileBytes, "comparison cell")));
    } catch (const std::exception&) {
        return std::nullopt;  // a damaged cell is measured again
    }
}

// `rehash`: the stored recipe's hash under today's plugins (Note [Recipe hash across plugin
// versions]), asked only when the summary's hash differs.
bool finished_run(const fs::path& run_dir, const std::string& hash, std::int64_t steps,
                  const std::function<std::string(const fs::path&)>& rehash) {
    const fs::path summary_file = run_dir / "summary.json";
    if (!fs::exists(summary_file)) return false;
    try {
        const nlohmann::json summary =
            nlohmann::json::parse(read_file(summary_file, kMaxSmallFileBytes, "run summary"));
        if (summary.at("steps").get<std::int64_t>() != steps) return false;
        return summary.at("recipe_hash").get<std::string>() == hash ||
               rehash(run_dir / "recipe.resolved.toml") == hash;
    } catch (const std::exception&) {
        return false;
    }
}

std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\n") == std::string::npos) return text;
    std::string out = "\"";
    for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

}  // namespace

ComparisonSummary run_comparison(const Comparison& comparison, const RecipeResolver& resolve,
                                 const std::function<void(const std::string&)>& log) {
    ComparisonSummary summary;
    fs::create_directories(comparison.output / "cells");
    const Split split = comparison.split == "test" ? Split::kTest : Split::kValidation;

    std::vector<Target> targets;
    for (const ComparisonRun& run : comparison.runs) {
        if (run.seeds.empty()) {
            targets.push_back({&run, -1});
        } else {
            for (std::int64_t seed : run.seeds) targets.push_back({&run, seed});
        }
    }
    // Unperturbed first, then every sweep's strengths in file order.
    std::vector<std::pair<std::string, double>> plan{{"none", 0.0}};
    std::vector<Perturbation> perturbations{Perturbation{}};
    for (const PerturbationSweep& sweep : comparison.perturbations) {
        for (double strength : sweep.strengths) {
            PerturbationOptions one = sweep.options;
            one.strength = strength;
            perturbations.push_back(to_perturbation(one));
            plan.emplace_back(one.kind, strength);
        }
    }
    const std::size_t total = targets.size() * perturbations.size();
    std::size_t done = 0;
    double measuring_seconds = 0;
    std::size_t measured_now = 0;

    for (const Target& target : targets) {
        const ComparisonRun& run = *target.run;
        const std::string label =
            target.seed >= 0 ? fmt::format("{} seed {}", run.name, target.seed) : run.name;
        fs::path run_dir;
        std::shared_ptr<const ResolvedRecipe> resolved;
        if (!run.recipe.empty()) {
            std::vector<std::string> overrides = run.overrides;
            overrides.push_back(fmt::format("seed={}", target.seed));
            run_dir = comparison.output / "runs" / fmt::format("{}-seed{}", run.name, target.seed);
            resolved = resolve(run.recipe, overrides);
            const std::string hash = recipe_hash(*resolved);
            const auto rehash = [&resolve](const fs::path& stored) {
                return recipe_hash(*resolve(stored, {}));
            };
            if (finished_run(run_dir, hash, resolved->recipe.train.steps, rehash)) {
                log(fmt::format("{}: finished run in {} reused", label, run_dir.string()));
            } else {
                const bool resume = fs::exists(run_dir / "metrics.jsonl");
                log(fmt::format("{}: {} {}", label,
                                resume ? "resuming the run in" : "training into",
                                run_dir.string()));
                RunOptions options;
                options.out_dir = run_dir;
                options.resume = resume;
                options.rehash_stored_recipe = rehash;
                options.load_reference_model = [](const std::string& from, DeviceChoice device) {
                    return load_trained_model(from, device, [](const std::string&) {});
                };
                const RunResult result = run_training(*resolved, options);
                ++summary.trained;
                if (result.outcome != RunOutcome::kCompleted) {
                    summary.interrupted = true;
                    break;
                }
            }
        } else {
            run_dir = run.directory;
            if (!fs::exists(run_dir / "recipe.resolved.toml")) {
                throw RunSetupError(
                    fmt::format("{}: {} is not a run directory (no recipe.resolved.toml)",
                                comparison.file.string(), run_dir.string()));
            }
            resolved = resolve(run_dir / "recipe.resolved.toml", {});
        }
        const std::string hash = recipe_hash(*resolved);
        const std::int64_t max_batches =
            comparison.max_batches > 0 ? comparison.max_batches : resolved->recipe.eval.max_batches;

        std::unique_ptr<TrainedModel> model;  // loaded only when something is to be measured
        double clean_ppl = 0;
        for (std::size_t i = 0; i < perturbations.size(); ++i) {
            const Perturbation& perturbation = perturbations[i];
            const std::string description =
                perturbation.active() ? describe_perturbation(perturbation) : "none";
            const fs::path cell_file =
                comparison.output / "cells" /
                (cell_key(run.name, target.seed, description, hash, comparison.split, max_batches) +
                 ".json");
            ++done;
            if (auto cell = read_cell(cell_file)) {
                if (i == 0) clean_ppl = cell->ppl;
                summary.cells.push_back(*cell);
                continue;
            }
            ComparisonCell cell;
            cell.run = run.name;
            cell.seed = target.seed;
            cell.run_dir = run_dir.string();
            cell.kind = plan[i].first;
            cell.strength = plan[i].second;
            cell.perturbation = description;
            // Asked of the model the checkpoint holds: its stage's router options (Note [Stages]).
            const sdk::Support support = perturbation_support(
                checkpoint_recipe(*resolved,
                                  load_checkpoint_state(resolve_checkpoint(run_dir)).step),
                perturbation);
            if (!support.ok) {
                cell.reason = support.reason;
                log(fmt::format("[{}/{}] {}: {}: n/a ({})", done, total, label, description,
                                support.reason));
            } else {
                const Clock::time_point start = Clock::now();
                if (!model) {
                    model = std::make_unique<TrainedModel>(*resolved, run_dir,
                                                           resolve_checkpoint(run_dir),
                                                           resolved->recipe.train.device, log);
                }
                const EvalResult result = model->evaluate(split, max_batches, perturbation);
                cell.measured = true;
                cell.loss = result.loss();
                cell.ppl = result.perplexity();
                cell.tokens = result.tokens;
                cell.step = model->step();
                if (result.routing.perturbed_gates()) {
                    cell.note = "gates, not a softmax ranking: not the paper's protocol";
                }
                if (i == 0) clean_ppl = cell.ppl;
                cell.ratio = clean_ppl > 0 ? cell.ppl / clean_ppl : 0.0;
                measuring_seconds += std::chrono::duration<double>(Clock::now() - start).count();
                ++measured_now;
                ++summary.evaluated;
                const double eta = measuring_seconds / static_cast<double>(measured_now) *
                                   static_cast<double>(total - done);
                log(fmt::format(
                    "[{}/{}] {}: {}: ppl {:.3f} (x{:.3f}), ETA {} for the "
                    "measurements left",
                    done, total, label, description, cell.ppl, cell.ratio, format_duration(eta)));
            }
            write_file_atomically(cell_file, cell.to_json().dump(2) + "\n");
            summary.cells.push_back(cell);
        }
    }
    if (!summary.interrupted) write_comparison_results(comparison, summary.cells);
    return summary;
}

void write_comparison_results(const Comparison& comparison,
                              const std::vector<ComparisonCell>& cells) {
    std::string csv =
        "run,seed,perturbation,strength,description,measured,loss,ppl,ratio,tokens,step,reason,"
        "note\n";
    nlohmann::json rows = nlohmann::json::array();
    for (const ComparisonCell& c : cells) {
        csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(c.run), c.seed,
                           c.kind, c.strength, csv_field(c.perturbation), c.measured ? 1 : 0,
                           c.measured ? fmt::format("{:.6f}", c.loss) : "",
                           c.measured ? fmt::format("{:.6f}", c.ppl) : "",
                           c.measured ? fmt::format("{:.6f}", c.ratio) : "",
                           c.measured ? std::to_string(c.tokens) : "", c.step, csv_field(c.reason),
                           csv_field(c.note));
        rows.push_back(c.to_json());
    }
    const nlohmann::json results = {{"comparison", comparison.name},
                                    {"file", comparison.file.string()},
                                    {"split", comparison.split},
                                    {"cells", rows}};
    write_file_atomically(comparison.output / "results.csv", csv);
    write_file_atomically(comparison.output / "results.json", results.dump(2) + "\n");
    write_file_atomically(comparison.output / "results.md", comparison_markdown(comparison, cells));
}

std::string comparison_markdown(const Comparison& comparison,
                                const std::vector<ComparisonCell>& cells) {
    // Columns in plan order, rows in run order.
    std::vector<std::string> columns, runs;
    std::map<std::pair<std::string, std::string>, std::vector<const ComparisonCell*>> groups;
    for (const ComparisonCell& c : cells) {
        if (std::find(columns.begin(), columns.end(), c.perturbation) == columns.end()) {
            columns.push_back(c.perturbation);
        }
        if (std::find(runs.begin(), runs.end(), c.run) == runs.end()) runs.push_back(c.run);
        groups[{c.run, c.perturbation}].push_back(&c);
    }
    auto mean_sd = [](const std::vector<double>& v) {
        double mean = 0;
        for (double x : v) mean += x;
        mean /= static_cast<double>(v.size());
        double var = 0;
        for (double x : v) var += (x - mean) * (x - mean);
        const double sd = v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0;
        return std::pair{mean, sd};
    };
    std::string out = fmt::format("# Comparison {}\n\n", comparison.name);
    out += fmt::format(
        "Perplexity on the {} split, mean ± sample standard deviation over seeds (n = number "
        "of seeds); in parentheses the ratio to the same run's unperturbed perplexity, also "
        "mean ± sd. n/a: the router cannot be evaluated under that perturbation (reasons "
        "below); no number is reported for it.\n\n",
        comparison.split);
    // Short column heads ("disable_top 1"); the full descriptions follow the table.
    auto head = [](const std::string& description) {
        return description.substr(0, description.find(" ("));
    };
    out += "| run | n |";
    for (const std::string& column : columns) out += fmt::format(" {} |", head(column));
    out += "\n|---|---|";
    for (std::size_t i = 0; i < columns.size(); ++i) out += "---|";
    out += "\n";
    std::vector<std::string> reasons;
    bool any_note = false;
    for (const std::string& run : runs) {
        const std::size_t n = groups[{run, columns.front()}].size();
        out += fmt::format("| {} | {} |", run, n);
        for (const std::string& column : columns) {
            const auto& group = groups[{run, column}];
            std::vector<double> ppl, ratio;
            std::string reason;
            bool noted = false;
            for (const ComparisonCell* c : group) {
                if (c->measured) {
                    ppl.push_back(c->ppl);
                    ratio.push_back(c->ratio);
                    noted = noted || !c->note.empty();
                } else {
                    reason = c->reason;
                }
            }
            if (ppl.empty()) {
                if (std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) {
                    reasons.push_back(reason);
                }
                const auto index =
                    std::find(reasons.begin(), reasons.end(), reason) - reasons.begin();
                out += fmt::format(" n/a [{}] |", index + 1);
                continue;
            }
            const auto [pm, ps] = mean_sd(ppl);
            if (column == columns.front()) {
                out += fmt::format(" {:.3f} ± {:.3f} |", pm, ps);
            } else {
                const auto [rm, rs] = mean_sd(ratio);
                out += fmt::format(" {:.3f} ± {:.3f} (×{:.3f} ± {:.3f}){} |", pm, ps, rm, rs,
                                   noted ? " †" : "");
                any_note = any_note || noted;
            }
        }
        out += "\n";
    }
    out += "\n";
    for (const std::string& column : columns) {
        if (column != "none") out += fmt::format("- `{}`: {}\n", head(column), column);
    }
    if (any_note) {
        out +=
            "\n† The perturbation acted on sigmoid gates, not on a softmax ranking: not the "
            "paper's protocol (docs/robustness.md).\n";
    }
    if (!reasons.empty()) {
        out += "\n";
        for (std::size_t i = 0; i < reasons.size(); ++i) {
            out += fmt::format("[{}] {}\n", i + 1, reasons[i]);
        }
    }
    return out;
}

}  // namespace moelab::core
