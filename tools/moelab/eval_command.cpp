#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/eval/evaluator.h"
#include "core/eval/long_context.h"
#include "core/eval/perturbation_support.h"
#include "core/eval/routing_trace.h"
#include "core/inference/generation.h"
#include "core/metrics/metrics_log.h"
#include "core/plugin/required_feature.h"
#include "core/report/run_report.h"
#include "core/system/printable.h"
#include "core/system/read_file.h"
#include "core/system/threads.h"
#include "moelab/sdk/capability.h"

namespace moelab::cli {

namespace fs = std::filesystem;

namespace {

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

// Note [Long-context documents]: every context length is measured on the same documents, those of
// the split with at least as many tokens as the longest length asked (so the numbers differ only
// by the context the model gets), up to --max-tokens tokens of them.
std::vector<at::Tensor> documents_for(const core::Dataset& dataset, core::Split split,
                                      std::int64_t min_tokens, std::int64_t max_tokens,
                                      std::int64_t& longest) {
    std::vector<at::Tensor> documents;
    std::int64_t collected = 0;
    longest = 0;
    for (const core::SourceTokens& source : dataset.sources()) {
        if (!source.has(split)) continue;
        const core::MappedTokenShard& shard = source.shard(split);
        std::vector<std::int64_t> ends;
        for (std::int64_t d = 0, start = 0; d < shard.documents(); start = ends.back(), ++d) {
            ends.push_back(shard.document_end(d));
            longest = std::max(longest, ends.back() - start);
        }
        if (max_tokens > 0 && collected >= max_tokens) continue;  // still measuring `longest`
        const std::int64_t budget = max_tokens > 0 ? max_tokens - collected : 0;
        for (at::Tensor& document :
             core::long_documents(shard.tokens(), ends, min_tokens, budget)) {
            collected += document.size(0);
            documents.push_back(std::move(document));
        }
    }
    return documents;
}

int evaluate_long_context(const EvalArgs& args, const core::TrainedModel& trained,
                          const fs::path& run_dir, const fs::path& step_dir, core::Split split) {
    const core::Recipe& recipe = trained.recipe();
    std::vector<std::int64_t> lengths(args.contexts.begin(), args.contexts.end());
    if (lengths.empty()) lengths.push_back(recipe.data.seq_len);
    for (const std::int64_t length : lengths) {
        if (length < 2)
            throw UsageError(fmt::format("--context: {} is shorter than 2 tokens", length));
    }
    if (args.stride < 1) throw UsageError("--stride must be at least 1");
    const std::int64_t longest_asked = *std::max_element(lengths.begin(), lengths.end());
    nlohmann::json report = {{"type", "long_context"},
                             {"step", trained.step()},
                             {"checkpoint", step_dir.string()},
                             {"split", args.split}};
    core::LongContextSetup setup;
    setup.device = trained.device();
    setup.autocast_bf16 = trained.autocast_bf16();
    setup.batch_size = recipe.eval.batch_size;

    if (!args.contexts.empty()) {
        std::int64_t longest_document = 0;
        const std::vector<at::Tensor> documents = documents_for(
            trained.dataset(), split, longest_asked, args.max_tokens, longest_document);
        if (documents.empty()) {
            throw UsageError(fmt::format(
                "--context {}: no {} document has that many tokens (the longest has {}); ask for "
                "shorter contexts",
                longest_asked, args.split, longest_document));
        }
        nlohmann::json rows = nlohmann::json::array();
        if (!args.json) {
            fmt::print(
                "perplexity by context length ({} split, {} document{} of at least {} "
                "tokens; sliding windows, stride at most context - 1):\n",
                args.split, documents.size(), documents.size() == 1 ? "" : "s", longest_asked);
            fmt::print("  {:>8}  {:>6}  {:>9}  {:>10}  {:>8}\n", "context", "stride", "loss", "ppl",
                       "tokens");
        }
        for (const std::int64_t length : lengths) {
            // A stride of at most context - 1 (Note [Sliding windows]); the row records it.
            const core::ContextPerplexity result = core::sliding_window_perplexity(
                trained.model(), documents, length, std::min<std::int64_t>(args.stride, length - 1),
                setup);
            rows.push_back(result.to_json());
            if (!args.json) {
                fmt::print("  {:>8}  {:>6}  {:>9.4f}  {:>10.3f}  {:>8}\n", length, result.stride,
                           result.loss(), result.perplexity(), result.tokens);
            }
        }
        report["perplexity"] = rows;
    }
    if (args.passkey) {
        core::PasskeyOptions options;
        options.lengths = lengths;
        options.depths = args.depths;
        options.trials = args.trials;
        options.seed = static_cast<std::uint64_t>(recipe.seed);
        options.batch_size = recipe.eval.batch_size;
        // The filler is text of the split (its first source), never the needle's own document.
        const core::SourceTokens* filler = nullptr;
        for (const core::SourceTokens& source : trained.dataset().sources()) {
            if (source.has(split)) {
                filler = &source;
                break;
            }
        }
        if (filler == nullptr) throw UsageError("--passkey: the split has no text for the filler");
        const core::Completion greedy = [&](const std::vector<std::vector<std::int32_t>>& prompts,
                                            std::int64_t count) {
            core::GenerationOptions generation;
            generation.max_new = count;
            generation.sampling.temperature = 0;
            generation.device = trained.device();
            generation.autocast_bf16 = trained.autocast_bf16();
            return core::generate(trained.model(), prompts, generation).tokens;
        };
        core::PasskeyResult passkey;
        try {
            passkey = core::passkey_test(trained.dataset().tokenizer(), filler->tokens(split),
                                         options, greedy);
        } catch (const std::invalid_argument& error) {
            throw UsageError(fmt::format("--passkey: {}", error.what()));
        }
        report["passkey"] = passkey.to_json();
        if (!args.json) {
            fmt::print(
                "passkey accuracy ({} trials per cell; rows: prompt length, columns: "
                "depth of the key):\n",
                args.trials);
            std::string header = fmt::format("  {:>8}", "length");
            for (const double depth : options.depths) header += fmt::format("  {:>5.2f}", depth);
            fmt::print("{}\n", header);
            std::size_t cell = 0;
            for (const std::int64_t length : lengths) {
                std::string line = fmt::format("  {:>8}", length);
                std::string why;
                for (std::size_t d = 0; d < options.depths.size(); ++d, ++cell) {
                    const core::PasskeyCell& c = passkey.cells[cell];
                    line += c.trials > 0 ? fmt::format("  {:>5.2f}", c.accuracy())
                                         : fmt::format("  {:>5}", "n/a");
                    if (!c.not_measured.empty()) why = c.not_measured;
                }
                fmt::print("{}{}\n", line, why.empty() ? "" : "  (" + why + ")");
            }
            const nlohmann::json& overall = report["passkey"]["accuracy"];
            fmt::print("  overall {}\n", overall.is_null()
                                             ? std::string("n/a")
                                             : fmt::format("{:.3f}", overall.get<double>()));
        }
    }
    if (args.json) fmt::print("{}\n", report.dump(2));
    try {
        core::MetricsLog(run_dir / "metrics.jsonl").write(report);
        if (fs::exists(run_dir / "report.html")) core::write_run_report(run_dir);
    } catch (const std::exception& error) {
        fmt::print(stderr, "warning: the results are not recorded in the run: {}\n", error.what());
    }
    return kExitOk;
}

// Refuses --trace and --replay where they cannot mean anything, before the model is loaded.
void check_trace_arguments(const EvalArgs& args, const core::Perturbation& perturbation) {
    if (args.trace.empty() && args.replay.empty()) return;
    if (!args.trace.empty() && !args.replay.empty()) {
        throw UsageError(
            "--trace and --replay: give one (a replayed evaluation's trace is the "
            "replayed file)");
    }
    const std::string option = args.trace.empty() ? "--replay" : "--trace";
    if (!args.contexts.empty() || args.passkey) {
        throw UsageError(fmt::format(
            "{} records or replays the evaluation of the split's batches, not --context or "
            "--passkey",
            option));
    }
    if (!args.replay.empty() && perturbation.active()) {
        throw UsageError(fmt::format(
            "--replay {}: the trace fixes every selection, so {} would perturb nothing; record a "
            "perturbed evaluation with --trace instead",
            core::printable_path(args.replay), core::describe_perturbation(perturbation)));
    }
    if (!args.trace.empty()) {
        const fs::path file(args.trace);
        if (fs::is_directory(file)) {
            throw UsageError(fmt::format("--trace: {} is a directory; expected a file to write",
                                         core::printable_path(file)));
        }
        const fs::path parent = file.parent_path().empty() ? fs::path(".") : file.parent_path();
        if (!fs::is_directory(parent)) {
            throw UsageError(fmt::format("--trace: the directory {} does not exist",
                                         core::printable_path(parent)));
        }
        // Found now, not after the evaluation.
        if (::access(parent.c_str(), W_OK) != 0) {
            throw UsageError(fmt::format("--trace: cannot write into {}: {}",
                                         core::printable_path(parent), std::strerror(errno)));
        }
    }
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
    const auto [run_dir, step_dir] = trained_target(args.target);

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
    add_device_overrides(args.device, overrides);
    // The passkey test decodes through the attention caches.
    std::vector<std::string> features;
    if (args.passkey) features.emplace_back(sdk::feature::kKvCache);
    const auto loaded =
        core::load_and_resolve((run_dir / "recipe.resolved.toml").string(), overrides, features);
    const core::ResolvedRecipe& resolved = loaded->resolved;
    if (args.passkey) {
        core::require_feature(resolved, core::ComponentKind::kAttention, sdk::feature::kKvCache,
                              "--passkey decodes through the attention caches");
    }
    const core::Recipe& recipe = resolved.recipe;
    core::apply_threads(
        core::recipe_threads(recipe.train.intra_op_threads, recipe.train.blas_threads));

    const core::Perturbation perturbation = core::to_perturbation(recipe.eval.perturbation);
    check_trace_arguments(args, perturbation);
    // Asked of the model the checkpoint holds: its stage's router options (Note [Stages]).
    if (const sdk::Support support = core::perturbation_support(
            core::checkpoint_recipe(resolved, core::load_checkpoint_state(step_dir).step),
            perturbation);
        !support.ok) {
        // Never a number the router did not produce under the perturbation: n/a and the reason.
        throw UsageError(
            fmt::format("{}: n/a: {}", core::describe_perturbation(perturbation), support.reason));
    }
    const core::TrainedModel trained(
        resolved, run_dir, step_dir, loaded->device,
        [](const std::string& line) { fmt::print(stderr, "{}\n", line); }, features);
    if (!args.contexts.empty() || args.passkey) {
        return evaluate_long_context(args, trained, run_dir, step_dir, split);
    }
    const std::int64_t max_batches =
        args.max_batches >= 0 ? args.max_batches : recipe.eval.max_batches;
    std::optional<core::RoutingTraceRecorder> recorder;
    std::optional<core::RoutingTraceReplay> replay;
    core::RoutingTap* tap = nullptr;
    // What makes a trace's decisions belong to this evaluation beyond its tokens: the windows
    // (seq_len) and batches the routing saw (attention context; expert choice ranks a batch).
    const nlohmann::json windows = {{"seq_len", trained.recipe().data.seq_len},
                                    {"batch_size", recipe.eval.batch_size}};
    try {
        if (!args.trace.empty()) tap = &recorder.emplace(trained.model(), recipe.moe.experts);
        if (!args.replay.empty()) {
            tap = &replay.emplace(args.replay, trained.model(), recipe.moe.experts);
            for (const auto& [key, value] : windows.items()) {
                if (replay->metadata().value(key, nlohmann::json()) != value) {
                    throw core::TraceError(fmt::format(
                        "{}: recorded with {} = {}, this evaluation has {}: the routing was "
                        "computed on other windows",
                        core::printable_path(args.replay), key,
                        replay->metadata().value(key, nlohmann::json()).dump(), value.dump()));
                }
            }
        }
    } catch (const core::TraceError& error) {
        throw UsageError(
            fmt::format("{}: {}", args.replay.empty() ? "--trace" : "--replay", error.what()));
    }
    core::SplitEvaluation evaluation;
    try {
        evaluation = trained.evaluate_sources(split, max_batches, perturbation, tap);
        if (replay) replay->finish();
    } catch (const core::TraceError& error) {
        throw UsageError(fmt::format("{}: {}", replay ? "--replay" : "--trace", error.what()));
    }
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
    if (recorder) {
        nlohmann::json context = {
            {"run", run_dir.string()},    {"checkpoint", step_dir.string()},
            {"step", trained.step()},     {"split", args.split},
            {"max_batches", max_batches}, {"perturbation", report["perturbation"]}};
        context.update(windows);
        recorder->write(args.trace, context);
        report["trace"] = {{"file", args.trace}, {"tokens", recorder->tokens()}};
    }
    if (replay) report["replay"] = args.replay;
    const fs::path summary_file = run_dir / "summary.json";
    if (fs::exists(summary_file) && !perturbation.active() && !replay &&
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
    fmt::print("{}: loss {:.6f}, ppl {:.6f} over {} tokens{}{}\n", args.split, result.loss(),
               result.perplexity(), result.tokens,
               perturbation.active() ? " under " + core::describe_perturbation(perturbation) : "",
               replay ? " with the routing replayed from " + args.replay : "");
    if (recorder) {
        fmt::print("routing trace: {} ({} tokens per MoE layer)\n", args.trace, recorder->tokens());
    }
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
