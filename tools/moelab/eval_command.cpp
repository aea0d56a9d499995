#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/eval/evaluator.h"
#include "core/eval/perturbation_support.h"
#include "core/system/printable.h"
#include "core/system/read_file.h"
#include "core/system/threads.h"

namespace moelab::cli {

namespace fs = std::filesystem;

namespace {

// The run directory a target belongs to: the target itself, or <run>/checkpoints/step-N.
fs::path run_directory_of(const fs::path& target, const fs::path& step_dir) {
    if (fs::exists(target / "recipe.resolved.toml")) return target;
    const fs::path run = step_dir.parent_path().parent_path();
    if (fs::exists(run / "recipe.resolved.toml")) return run;
    throw UsageError(
        fmt::format("cannot find recipe.resolved.toml for {} (expected a run "
                    "directory or <run>/checkpoints/step-N)",
                    target.string()));
}

// The perplexity summary.json records for `split` at `step`, if it holds one. A summary that
// cannot be read or is damaged only loses the comparison: a warning says why.
std::optional<double> summary_perplexity(const fs::path& summary_file, const std::string& split,
                                         std::int64_t step) {
    try {
        const nlohmann::json summary =
            nlohmann::json::parse(core::read_file(summary_file, core::kMaxSmallFileBytes));
        const auto steps = summary.find("steps");
        const auto record = summary.find(split);
        if (steps == summary.end() || record == summary.end() || !steps->is_number_integer() ||
            steps->get<std::int64_t>() != step || !record->is_object()) {
            return std::nullopt;
        }
        const auto ppl = record->find("ppl");
        if (ppl == record->end() || !ppl->is_number()) {
            throw std::runtime_error(split + ".ppl is not a number");
        }
        return ppl->get<double>();
    } catch (const core::FileError& error) {
        fmt::print(stderr, "warning: {}; no comparison with the run's summary\n", error.what());
    } catch (const std::exception& error) {
        const std::string why = dynamic_cast<const nlohmann::json::exception*>(&error)
                                    ? std::string("not valid JSON")
                                    : std::string(error.what());
        fmt::print(stderr, "warning: {}: {}; no comparison with the run's summary\n",
                   core::printable_path(summary_file), why);
    }
    return std::nullopt;
}

}  // namespace

int evaluate_run(const EvalArgs& args) {
    core::Split split;
    if (args.split == "validation") {
        split = core::Split::kValidation;
    } else if (args.split == "test") {
        split = core::Split::kTest;
    } else if (args.split == "train") {
        split = core::Split::kTrain;
    } else {
        throw UsageError(
            fmt::format("--split: expected validation, test or train, got '{}'", args.split));
    }
    const fs::path target(args.target);
    const fs::path step_dir = core::resolve_checkpoint(target);
    const fs::path run_dir = run_directory_of(target, step_dir);

    // The recorded device is the one the run resolved; --device moves the evaluation elsewhere,
    // and says so when that changes the arithmetic.
    std::vector<std::string> overrides = args.set;
    if (!args.perturb.empty() && args.disable_top_experts > 0) {
        throw UsageError(
            "--perturb and --disable-top-experts both choose the perturbation; give "
            "one of them");
    }
    if (args.disable_top_experts > 0) {
        overrides.push_back("eval.perturbation.kind=\"disable_top\"");
        overrides.push_back(
            fmt::format("eval.perturbation.strength={}.0", args.disable_top_experts));
    } else if (!args.perturb.empty()) {
        const auto eq = args.perturb.find('=');
        overrides.push_back(
            fmt::format("eval.perturbation.kind=\"{}\"", args.perturb.substr(0, eq)));
        if (eq != std::string::npos) {
            std::string strength = args.perturb.substr(eq + 1);
            if (strength.find_first_of(".eE") == std::string::npos) strength += ".0";
            overrides.push_back("eval.perturbation.strength=" + strength);
        }
    }
    if (!args.device.empty()) {
        overrides.push_back("train.device=" + args.device);
        if (args.device == "cpu") {
            overrides.push_back("model.dtype=float32");
            fmt::print(stderr, "evaluating on the CPU in float32 (--device cpu)\n");
        }
    }
    const auto loaded = load_and_resolve((run_dir / "recipe.resolved.toml").string(), overrides);
    const core::ResolvedRecipe& resolved = loaded->resolved;
    const core::Recipe& recipe = resolved.recipe;
    core::apply_threads(
        core::recipe_threads(recipe.train.intra_op_threads, recipe.train.blas_threads));

    const core::Perturbation perturbation = core::to_perturbation(recipe.eval.perturbation);
    if (const sdk::Support support = core::perturbation_support(resolved, perturbation);
        !support.ok) {
        // Never a number the router did not produce under the perturbation: n/a and the reason.
        throw UsageError(
            fmt::format("{}: n/a: {}", core::describe_perturbation(perturbation), support.reason));
    }
    const core::TrainedModel trained(
        resolved, run_dir, step_dir, loaded->device,
        [](const std::string& line) { fmt::print(stderr, "{}\n", line); });
    const std::int64_t max_batches =
        args.max_batches >= 0 ? args.max_batches : recipe.eval.max_batches;
    const core::SplitEvaluation evaluation =
        trained.evaluate_sources(split, max_batches, perturbation);
    const core::EvalResult& result = evaluation.overall;

    nlohmann::json report = result.to_json();
    if (evaluation.sources.size() > 1) {
        // Every source's own loss; the top-level loss is the mixture's (docs/data.md).
        report["weighted"] = evaluation.weighted;
        nlohmann::json sources = nlohmann::json::object();
        for (const auto& [source, source_result] : evaluation.sources) {
            sources[source->name] = {{"weight", source->weight},
                                     {"loss", source_result.loss()},
                                     {"ppl", source_result.perplexity()},
                                     {"tokens", source_result.tokens}};
        }
        report["sources"] = sources;
    }
    report["split"] = args.split;
    report["checkpoint"] = step_dir.string();
    report["step"] = trained.step();
    report["perturbation"] = perturbation.active()
                                 ? nlohmann::json(core::describe_perturbation(perturbation))
                                 : nlohmann::json(nullptr);
    const fs::path summary_file = run_dir / "summary.json";
    if (fs::exists(summary_file) && !perturbation.active() &&
        max_batches == recipe.eval.max_batches) {
        // Only for the comparison line: a damaged summary is reported and skipped, not fatal.
        if (auto ppl = summary_perplexity(summary_file, args.split, trained.step())) {
            report["summary_ppl"] = *ppl;
        }
    }
    if (args.json) {
        fmt::print("{}\n", report.dump(2));
        return kExitOk;
    }
    fmt::print("checkpoint: {} (step {})\n", step_dir.string(), report["step"].get<std::int64_t>());
    fmt::print("{}: loss {:.6f}, ppl {:.6f} over {} tokens{}\n", args.split, result.loss(),
               result.perplexity(), result.tokens,
               perturbation.active() ? " under " + core::describe_perturbation(perturbation) : "");
    if (evaluation.sources.size() > 1) {
        for (const auto& [source, source_result] : evaluation.sources) {
            fmt::print("  source {}{}: loss {:.6f}, ppl {:.6f} over {} tokens\n", source->name,
                       source->weight > 0 ? fmt::format(" (weight {})", source->weight)
                                          : std::string(" (evaluation only)"),
                       source_result.loss(), source_result.perplexity(), source_result.tokens);
        }
    }
    if (report.contains("summary_ppl")) {
        fmt::print("summary.json {} ppl: {:.6f}\n", args.split,
                   report["summary_ppl"].get<double>());
    }
    const nlohmann::json moe = report["moe"];
    if (!moe.empty()) fmt::print("routing statistics per MoE layer:\n");
    for (const auto& [layer, stats] : moe.items()) {
        std::string line = fmt::format("  {}:", layer);
        if (stats.contains("banks")) {
            for (const auto& [bank, b] : stats["banks"].items()) {
                line += fmt::format(
                    " [{}] imbalance {:.3f}, cv {:.3f}, dead {:.3f}, dropped {:.4f}", bank,
                    b["load_imbalance"].get<double>(), b["cv"].get<double>(),
                    b["dead_fraction"].get<double>(), b["dropped_fraction"].get<double>());
            }
        }
        if (stats.contains("routers")) {
            for (const auto& r : stats["routers"]) {
                if (r.contains("entropy")) {
                    line += fmt::format("; entropy {:.3f}", r["entropy"].get<double>());
                }
                if (r.contains("experts_per_token")) {
                    line +=
                        fmt::format(", experts/token {:.3f}", r["experts_per_token"].get<double>());
                }
            }
        }
        fmt::print("{}\n", line);
    }
    return kExitOk;
}

}  // namespace moelab::cli
