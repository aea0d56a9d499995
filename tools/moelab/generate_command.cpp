// `moelab generate`: text from a trained run through the attention caches, streamed as it is
// produced, with prefill and decode speeds; --stats adds what a token costs and the speed-up
// against recomputing the whole prefix for every token.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/inference/generation.h"
#include "core/metrics/metrics_log.h"
#include "core/plugin/required_feature.h"
#include "core/report/run_report.h"
#include "core/system/file_error.h"
#include "core/system/read_file.h"
#include "core/system/threads.h"
#include "moelab/sdk/capability.h"

namespace moelab::cli {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> prompt_texts(const GenerateArgs& args) {
    std::vector<std::string> texts = args.prompts;
    if (!args.prompt_file.empty()) {
        std::string text;
        try {
            text = core::read_file(args.prompt_file, core::kMaxSmallFileBytes, "prompt file");
        } catch (const core::FileError& error) {
            throw UsageError(std::string("--prompt-file: ") + error.what());
        }
        if (args.batch) {
            std::istringstream lines(text);
            for (std::string line; std::getline(lines, line);) {
                if (!line.empty()) texts.push_back(line);
            }
        } else {
            texts.push_back(text);
        }
    }
    if (texts.empty()) throw UsageError("no prompt: give --prompt TEXT or --prompt-file FILE");
    if (texts.size() > 1 && !args.batch) {
        throw UsageError(fmt::format(
            "{} prompts given: add --batch to generate from each of them together, or give one",
            texts.size()));
    }
    return texts;
}

double per_token_ms(double seconds, std::int64_t tokens) {
    return tokens > 0 ? 1000.0 * seconds / static_cast<double>(tokens) : 0.0;
}

}  // namespace

int generate_text(const GenerateArgs& args) {
    if (args.max_new < 1) throw UsageError("--max-new must be at least 1");
    if (args.temperature < 0) throw UsageError("--temperature must be at least 0");
    if (args.top_k < 0) throw UsageError("--top-k must be at least 0");
    if (!(args.top_p > 0 && args.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
    const std::vector<std::string> texts = prompt_texts(args);

    const auto [run_dir, step_dir] = trained_target(args.target);
    std::vector<std::string> overrides = args.set;
    add_device_overrides(args.device, overrides);
    // Decoding needs the attention plugin's cache: a plugin without it is refused here, with its
    // reason, before anything is loaded.
    const std::vector<std::string> features{std::string(sdk::feature::kKvCache)};
    const auto loaded =
        core::load_and_resolve((run_dir / "recipe.resolved.toml").string(), overrides, features);
    core::require_feature(loaded->resolved, core::ComponentKind::kAttention, sdk::feature::kKvCache,
                          "moelab generate decodes through its caches");
    const core::Recipe& recipe = loaded->resolved.recipe;
    core::apply_threads(
        core::recipe_threads(recipe.train.intra_op_threads, recipe.train.blas_threads));
    const core::TrainedModel trained(
        loaded->resolved, run_dir, step_dir, loaded->device,
        [](const std::string& line) { fmt::print(stderr, "{}\n", line); }, features);
    const sdk::Tokenizer& tokenizer = trained.dataset().tokenizer();

    // Every training document follows an end-of-document token, so a prompt does too: the model
    // sees the start of a document, and an empty prompt is valid.
    const std::int32_t end_id = tokenizer.special_tokens().eos;
    std::vector<std::vector<std::int32_t>> prompts;
    for (const std::string& text : texts) {
        std::vector<std::int32_t> ids;
        if (end_id >= 0) ids.push_back(end_id);
        tokenizer.encode(text, ids);
        if (ids.empty())
            throw UsageError("an empty prompt needs a tokenizer with an end-of-document id");
        prompts.push_back(std::move(ids));
    }

    core::GenerationOptions options;
    options.max_new = args.max_new;
    options.sampling = {args.temperature, args.top_k, args.top_p, args.seed};
    // --stats times exactly --max-new tokens per prompt, so rows do not stop at the end id.
    options.end_id = args.stats ? -1 : end_id;
    options.device = trained.device();
    options.autocast_bf16 = trained.autocast_bf16();
    // --stats times the decoding alone: no streaming (printing is not the model's time), after a
    // short warm-up (first calls allocate, and on CUDA create handles).
    const bool stream = prompts.size() == 1 && !args.stats;
    if (args.stats) {
        core::GenerationOptions warm_up = options;
        warm_up.max_new = std::min<std::int64_t>(4, options.max_new);
        core::generate(trained.model(), prompts, warm_up);
    }
    if (stream) {
        fmt::print("{}", texts.front());
        std::fflush(stdout);
        options.on_step = [&](const at::Tensor& tokens, const at::Tensor& running) {
            if (!running[0].item<bool>()) return;
            const auto id = static_cast<std::int32_t>(tokens[0].item<std::int64_t>());
            if (id == end_id) return;
            fmt::print("{}", tokenizer.decode(std::span<const std::int32_t>(&id, 1)));
            std::fflush(stdout);
        };
    }
    const core::GenerationResult result = core::generate(trained.model(), prompts, options);
    if (stream) {
        fmt::print("\n");
        std::fflush(stdout);  // the text before the speeds on stderr
    } else if (prompts.size() == 1) {
        fmt::print("{}{}\n", texts.front(), tokenizer.decode(result.tokens.front()));
    } else {
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            fmt::print("[{}] {}{}\n", i, texts[i], tokenizer.decode(result.tokens[i]));
        }
    }
    fmt::print(stderr,
               "prefill: {} tokens in {:.1f} ms ({:.0f} tokens/s); decode: {} tokens in {:.2f} s "
               "({:.1f} tokens/s, {} sequence{})\n",
               result.prompt_tokens, 1000 * result.prefill_seconds,
               result.prefill_tokens_per_second(), result.decoded_tokens, result.decode_seconds,
               result.decode_tokens_per_second(), prompts.size(), prompts.size() == 1 ? "" : "s");
    if (!args.stats) return kExitOk;

    // What a token costs, and the same generation without the cache.
    core::GenerationOptions recompute = options;
    recompute.use_cache = false;
    recompute.on_step = nullptr;
    const core::GenerationResult baseline = core::generate(trained.model(), prompts, recompute);
    const bool same = baseline.tokens == result.tokens;
    // The last token produced is never fed back: the longest context a token attended to.
    const std::int64_t context = result.cache_capacity - 1;
    const sdk::AttentionCost cost = trained.model().attention_cost(context);
    const double speedup =
        result.decode_tokens_per_second() > 0 && baseline.decode_tokens_per_second() > 0
            ? result.decode_tokens_per_second() / baseline.decode_tokens_per_second()
            : 0.0;
    auto or_na = [](double value, const std::string& text) {
        return value < 0 ? std::string("n/a (the attention plugin does not say)") : text;
    };
    fmt::print("context {} tokens ({} layers)\n", context, trained.model().layers());
    fmt::print("  attention FLOPs per token at that context: {}\n",
               or_na(cost.flops_per_token, fmt::format("{:.4g}", cost.flops_per_token)));
    fmt::print("  KV-cache bytes per token: {}\n",
               or_na(static_cast<double>(result.cache_bytes_per_token),
                     std::to_string(result.cache_bytes_per_token)));
    fmt::print("  prefill: {:.3f} ms per token; decode with the cache: {:.3f} ms per token\n",
               per_token_ms(result.prefill_seconds, result.prompt_tokens),
               per_token_ms(result.decode_seconds, result.decoded_tokens));
    fmt::print(
        "  decode recomputing the prefix: {:.3f} ms per token ({:.1f} tokens/s); the cache is "
        "{:.2f}x faster; same tokens: {}\n",
        per_token_ms(baseline.decode_seconds, baseline.decoded_tokens),
        baseline.decode_tokens_per_second(), speedup, same ? "yes" : "no");

    nlohmann::json record = {
        {"type", "generate"},
        {"step", trained.step()},
        {"checkpoint", step_dir.string()},
        {"sequences", prompts.size()},
        {"prompt_tokens", result.prompt_tokens},
        {"new_tokens", result.decoded_tokens + static_cast<std::int64_t>(prompts.size())},
        {"context", context},
        {"prefill_tokens_per_second", result.prefill_tokens_per_second()},
        {"decode_tokens_per_second", result.decode_tokens_per_second()},
        {"recompute_decode_tokens_per_second", baseline.decode_tokens_per_second()},
        {"cache_speedup", speedup},
        {"same_tokens", same},
        {"attention_flops_per_token",
         cost.flops_per_token < 0 ? nlohmann::json(nullptr) : nlohmann::json(cost.flops_per_token)},
        {"kv_cache_bytes_per_token", result.cache_bytes_per_token < 0
                                         ? nlohmann::json(nullptr)
                                         : nlohmann::json(result.cache_bytes_per_token)}};
    try {
        core::MetricsLog(run_dir / "metrics.jsonl").write(record);
        if (fs::exists(run_dir / "report.html")) core::write_run_report(run_dir);
    } catch (const std::exception& error) {
        fmt::print(stderr, "warning: the figures are not recorded: {}\n", error.what());
    }
    return kExitOk;
}

}  // namespace moelab::cli
