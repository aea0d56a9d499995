// Training throughput of a recipe's model under different CPU thread settings, measured side by
// side in one process: for each (LibTorch intra-op threads, OpenBLAS threads) pair, a few warm-up
// steps, then timed forward+backward+AdamW steps on real batches. Used to choose the default
// (docs/threads.md).
//
//   moelab_bench_threads RECIPE [--steps 8] [--set key=value]...

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/autograd.h>

#include "core/config/recipe_loader.h"
#include "core/data/batcher.h"
#include "core/data/dataset.h"
#include "core/eval/evaluator.h"
#include "core/plugin/loader.h"
#include "core/plugin/resolve.h"
#include "core/system/threads.h"
#include "core/train/adamw.h"
#include "tools/bench/bench_args.h"

namespace {

int run(const std::string& recipe_file, int steps, const std::vector<std::string>& overrides) {
    using namespace moelab::core;
    Recipe recipe = load_recipe(recipe_file, overrides);
    PluginRegistry registry = load_plugins(plugin_search_path(recipe.plugins.search_path));
    const moelab::sdk::CapabilityQuery query =
        capability_query(recipe, moelab::core::DeviceChoice::kCpu, 0);
    ResolvedRecipe resolved = resolve_recipe(std::move(recipe), registry, query);
    const Dataset dataset = Dataset::prepare(resolved, [](const std::string&) {});
    const Recipe& r = resolved.recipe;

    const int cores = hardware_threads();
    std::printf("recipe %s: batch %lld x seq %lld, %d cores\n", r.name.c_str(),
                static_cast<long long>(r.train.batch_size), static_cast<long long>(r.data.seq_len),
                cores);
    std::printf("%-10s %-6s %12s\n", "intra-op", "blas", "tokens/s");
    std::vector<ThreadSettings> settings;
    for (int intra = 1; intra <= cores; intra *= 2) {
        for (int blas = 1; blas <= cores; blas *= 2) settings.push_back({intra, blas});
    }
    for (const ThreadSettings& s : settings) {
        apply_threads(s);
        at::manual_seed(0);
        LanguageModel model(resolved, dataset.vocab_size(),
                            [&] { return dataset.training_token_counts(); });
        std::vector<NamedParameter> named;
        for (const auto& item : model.named_parameters())
            named.push_back({item.key(), item.value()});
        AdamW optimizer(named, AdamWOptions{});
        TrainBatcher batcher(dataset.sources()[0].tokens(Split::kTrain), r.data.seq_len,
                             r.train.batch_size, 1);
        auto step = [&] {
            const TokenBatch batch = batcher.next();
            ForwardOptions options;
            options.training = true;
            const ModelOutput out = model.forward(batch.inputs(), options);
            (next_token_loss(out.logits, batch, false) + out.aux_loss).backward();
            optimizer.step(1e-3);
            optimizer.zero_grad();
        };
        for (int i = 0; i < 2; ++i) step();
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) step();
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double tokens = static_cast<double>(steps) * r.train.batch_size * r.data.seq_len;
        const ThreadSettings actual = current_threads();
        std::printf("%-10d %-6d %12.0f\n", actual.intra_op, actual.blas, tokens / seconds);
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace moelab::core;
    constexpr const char* kUsage = "moelab_bench_threads RECIPE [--steps 8] [--set key=value]...\n";
    int steps = 8;
    std::vector<std::string> overrides;
    std::string recipe_file;
    try {
        const moelab::bench::BenchArgs args(argc, argv, 1, {"--steps", "--set"});
        if (args.help()) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        recipe_file = args.positional(0);
        steps = static_cast<int>(args.integer("--steps", steps, 1));
        overrides = args.all("--set");
    } catch (const moelab::bench::BenchUsageError& error) {
        std::fprintf(stderr, "moelab_bench_threads: %s\nusage: %s", error.what(), kUsage);
        return 2;
    }
    try {
        return run(recipe_file, steps, overrides);
    } catch (const ConfigError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 2;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 1;
    }
}
