#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/data/dataset.h"

namespace moelab::cli {

namespace {

// The recipe's tokenizer and token shards, made or taken from the cache as `moelab run` would;
// what happens goes to stderr.
core::Dataset prepare(const core::LoadedRecipe& loaded) {
    return core::Dataset::prepare(
        loaded.resolved, [](const std::string& line) { fmt::print(stderr, "{}\n", line); });
}

}  // namespace

int prepare_data(const DataArgs& args) {
    const auto loaded = core::load_and_resolve(args.recipe, args.overrides);
    const core::Dataset dataset = prepare(*loaded);
    for (const core::SourceTokens& source : dataset.sources()) {
        for (core::Split split : core::kSplits) {
            if (!source.has(split)) continue;
            fmt::print(stderr, "{} {}: {} tokens in {}\n", source.name, core::split_name(split),
                       source.tokens(split).size(), source.shard(split).file().string());
        }
    }
    return kExitOk;
}

int data_stats(const DataArgs& args) {
    const auto loaded = core::load_and_resolve(args.recipe, args.overrides);
    const core::Recipe& recipe = loaded->resolved.recipe;
    const core::Dataset dataset = prepare(*loaded);
    nlohmann::json splits = nlohmann::json::array();
    nlohmann::json sources = nlohmann::json::array();
    for (const core::SourceTokens& source : dataset.sources()) {
        sources.push_back({{"name", source.name}, {"weight", source.weight}});
        for (core::Split split : core::kSplits) {
            if (!source.has(split)) continue;
            const core::MappedTokenShard& shard = source.shard(split);
            if (args.verify) shard.verify();  // throws FileError naming the shard
            const auto tokens = source.tokens(split).size();
            const std::int64_t bytes = source.bytes[static_cast<int>(split)];
            splits.push_back(
                {{"source", source.name},
                 {"split", core::split_name(split)},
                 {"documents", shard.documents()},
                 {"tokens", tokens},
                 // Tokens the loss counts: all but the prompts of (prompt, response) pairs.
                 {"loss_tokens", tokens - shard.prompt_tokens()},
                 // Unknown (null) for compressed and JSONL files: their size is not their text's.
                 {"bytes", bytes > 0 ? nlohmann::json(bytes) : nlohmann::json(nullptr)},
                 {"bytes_per_token",
                  tokens > 0 && bytes > 0
                      ? nlohmann::json(static_cast<double>(bytes) / static_cast<double>(tokens))
                      : nlohmann::json(nullptr)},
                 {"id_bytes", source.tokens(split).id_bytes()},
                 {"shard", shard.file().string()},
                 {"shard_bytes", std::filesystem::file_size(shard.file())},
                 {"verified", args.verify}});
        }
    }
    if (args.json) {
        fmt::print("{}\n", nlohmann::json{{"recipe", recipe.name},
                                          {"tokenizer", recipe.tokenizer.plugin},
                                          {"vocab_size", dataset.vocab_size()},
                                          {"sources", sources},
                                          {"splits", splits}}
                               .dump(2));
        return kExitOk;
    }
    fmt::print("recipe {}, tokenizer {}, vocabulary {}\n", recipe.name, recipe.tokenizer.plugin,
               dataset.vocab_size());
    if (dataset.sources().size() > 1) {
        double total = 0;
        for (const auto& source : dataset.sources()) total += source.weight;
        for (const auto& source : dataset.sources()) {
            fmt::print("source {}: {}\n", source.name,
                       source.weight > 0 ? fmt::format("weight {} ({:.1f}% of training sequences)",
                                                       source.weight, 100 * source.weight / total)
                                         : std::string("evaluation only"));
        }
    }
    fmt::print("{:<14} {:<11} {:>10} {:>14} {:>14} {:>11} {:>8} {:>12}\n", "source", "split",
               "documents", "tokens", "bytes", "bytes/token", "id bytes", "shard MB");
    for (const auto& row : splits) {
        const bool known = !row["bytes"].is_null();
        fmt::print("{:<14} {:<11} {:>10} {:>14} {:>14} {:>11} {:>8} {:>12.1f}\n",
                   row["source"].get<std::string>(), row["split"].get<std::string>(),
                   row["documents"].get<std::int64_t>(), row["tokens"].get<std::int64_t>(),
                   known ? std::to_string(row["bytes"].get<std::int64_t>()) : std::string("n/a"),
                   known ? fmt::format("{:.3f}", row["bytes_per_token"].get<double>())
                         : std::string("n/a"),
                   row["id_bytes"].get<int>(), row["shard_bytes"].get<double>() / 1e6);
    }
    for (const auto& row : splits) {
        const auto tokens = row["tokens"].get<std::int64_t>();
        const auto counted = row["loss_tokens"].get<std::int64_t>();
        if (counted == tokens) continue;
        fmt::print("{} {}: the loss counts {} of {} tokens ({:.1f}%): responses, not prompts\n",
                   row["source"].get<std::string>(), row["split"].get<std::string>(), counted,
                   tokens, 100.0 * static_cast<double>(counted) / static_cast<double>(tokens));
    }
    if (args.verify) fmt::print("every shard verified (checksum and vocabulary)\n");
    return kExitOk;
}

}  // namespace moelab::cli
