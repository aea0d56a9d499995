#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "cli_support.h"
#include "commands.h"
#include "core/data/dataset.h"

namespace moelab::cli {

namespace {

// The recipe's tokenizer and token shards, made or taken from the cache as `moelab run` would;
// what happens goes to stderr.
core::Dataset prepare(const LoadedRecipe& loaded) {
    return core::Dataset::prepare(
        loaded.resolved, [](const std::string& line) { fmt::print(stderr, "{}\n", line); });
}

}  // namespace

int prepare_data(const DataArgs& args) {
    const auto loaded = load_and_resolve(args.recipe, args.overrides);
    const core::Dataset dataset = prepare(*loaded);
    for (core::Split split : {core::Split::kTrain, core::Split::kValidation, core::Split::kTest}) {
        fmt::print(stderr, "{}: {} tokens in {}\n", core::split_name(split),
                   dataset.tokens(split).size(), dataset.shard(split).file().string());
    }
    return kExitOk;
}

int data_stats(const DataArgs& args) {
    const auto loaded = load_and_resolve(args.recipe, args.overrides);
    const core::Recipe& recipe = loaded->resolved.recipe;
    const core::Dataset dataset = prepare(*loaded);
    nlohmann::json splits = nlohmann::json::array();
    for (core::Split split : {core::Split::kTrain, core::Split::kValidation, core::Split::kTest}) {
        const core::MappedTokenShard& shard = dataset.shard(split);
        if (args.verify) shard.verify();  // throws FileError naming the shard
        const auto tokens = dataset.tokens(split).size();
        splits.push_back(
            {{"split", core::split_name(split)},
             {"documents", shard.documents()},
             {"tokens", tokens},
             {"bytes", dataset.bytes(split)},
             {"bytes_per_token",
              tokens > 0 ? static_cast<double>(dataset.bytes(split)) / static_cast<double>(tokens)
                         : 0.0},
             {"id_bytes", dataset.tokens(split).id_bytes()},
             {"shard", shard.file().string()},
             {"shard_bytes", std::filesystem::file_size(shard.file())},
             {"verified", args.verify}});
    }
    if (args.json) {
        fmt::print("{}\n", nlohmann::json{{"recipe", recipe.name},
                                          {"tokenizer", recipe.tokenizer.plugin},
                                          {"vocab_size", dataset.vocab_size()},
                                          {"splits", splits}}
                               .dump(2));
        return kExitOk;
    }
    fmt::print("recipe {}, tokenizer {}, vocabulary {}\n", recipe.name, recipe.tokenizer.plugin,
               dataset.vocab_size());
    fmt::print("{:<11} {:>10} {:>14} {:>14} {:>11} {:>8} {:>12}\n", "split", "documents", "tokens",
               "bytes", "bytes/token", "id bytes", "shard MB");
    for (const auto& row : splits) {
        fmt::print("{:<11} {:>10} {:>14} {:>14} {:>11.3f} {:>8} {:>12.1f}\n",
                   row["split"].get<std::string>(), row["documents"].get<std::int64_t>(),
                   row["tokens"].get<std::int64_t>(), row["bytes"].get<std::int64_t>(),
                   row["bytes_per_token"].get<double>(), row["id_bytes"].get<int>(),
                   row["shard_bytes"].get<double>() / 1e6);
    }
    if (args.verify) fmt::print("every shard verified (checksum and vocabulary)\n");
    return kExitOk;
}

}  // namespace moelab::cli
