// What the token store costs on top of the tokenizer, side by side in one process: a corpus file
// encoded by the tokenizer alone (its documents in memory, spread over every core as Dataset
// does) and encoded into a token shard (read in batches, encoded on every core, written), each
// as MB of text per second. The store should keep >= 80% of the tokenizer's own throughput.
// A third row writes a file of the shard's size from memory as the shard is written: what
// the disk allows at best, so that a store slower than the tokenizer shows whether its own work
// or the writing is what costs.
//
//   moelab_bench_encode CORPUS_FILE [--tokenizer bytes|bpe|...] [--train FILE] [--rounds 3]
// --train: the text a trained tokenizer learns from (default: CORPUS_FILE); default options.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/config/recipe_loader.h"
#include "core/data/dataset.h"
#include "core/data/token_shard.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/system/allocator.h"
#include "core/system/file_writer.h"
#include "core/system/read_file.h"
#include "core/system/remove_tree.h"
#include "moelab/sdk/parallel.h"
#include "tools/bench/bench_args.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

namespace {

int run(const fs::path& corpus, const std::string& name, const fs::path& train, int rounds) {
    using namespace moelab;
    core::tune_allocator_for_training();  // as `moelab run` and `moelab data prepare` do
    const core::PluginRegistry registry = core::load_plugins({MOELAB_BUILTIN_PLUGIN_DIR});
    const core::RegisteredTokenizer* component = registry.find_tokenizer(name);
    if (component == nullptr) {
        std::fprintf(stderr, "no tokenizer component '%s'\n", name.c_str());
        return 2;
    }
    const sdk::Params params =
        core::params_from_assignments({}, component->component.params, "tokenizer");
    const auto tokenizer = core::train_tokenizer(*component, {{train.string()}}, params);
    const std::int32_t eos = tokenizer->special_tokens().eos;
    const std::string text = core::read_file(corpus, core::kMaxCorpusFileBytes, "corpus file");
    const std::vector<std::string> documents = core::split_documents(text);
    const double mb = static_cast<double>(text.size()) / 1e6;
    const std::size_t workers = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
    const fs::path scratch = fs::temp_directory_path() / "moelab-bench-encode";

    std::vector<double> alone, stored, written;
    // Not zeros, which some file systems and disks store for less.
    std::vector<unsigned char> filler(8u << 20);
    for (std::size_t i = 0; i < filler.size(); ++i) filler[i] = static_cast<unsigned char>(i * 131);
    std::int64_t tokens = 0;
    for (int r = 0; r < rounds; ++r) {
        // The tokenizer alone: every document, every core, into memory.
        auto start = Clock::now();
        std::vector<std::int64_t> counts(workers, 0);
        sdk::run_workers(workers, [&](std::size_t w) {
            std::vector<std::int32_t> ids;
            for (std::size_t d = w; d < documents.size(); d += workers) {
                ids.clear();
                tokenizer->encode(documents[d], ids);
                if (eos >= 0) ids.push_back(eos);
                counts[w] += static_cast<std::int64_t>(ids.size());
            }
        });
        alone.push_back(since(start));
        // Into a shard, as Dataset does.
        start = Clock::now();
        {
            core::TokenShardWriter writer(scratch / "bench.shard", tokenizer->vocab_size());
            core::encode_into_shard(*tokenizer, core::CorpusFile{corpus}, writer);
            writer.finish();
            tokens = writer.tokens();
        }
        stored.push_back(since(start));
        // What writing a file of the shard's size costs by itself, written as the shard is (the
        // disk asked to start writing every 32 MiB, the file synced at the end): the most the
        // store could reach with any encoding.
        const std::uintmax_t shard_bytes = fs::file_size(scratch / "bench.shard");
        start = Clock::now();
        {
            core::FileWriter out(scratch / "bytes-alone", core::kShardWritebackBytes);
            for (std::uintmax_t left = shard_bytes; left > 0;) {
                const std::size_t piece = static_cast<std::size_t>(
                    std::min<std::uintmax_t>(left, static_cast<std::uintmax_t>(filler.size())));
                out.write(filler.data(), piece);
                left -= piece;
            }
            out.sync();
            out.close();
        }
        written.push_back(since(start));
        core::remove_tree(scratch);
    }
    std::sort(alone.begin(), alone.end());
    std::sort(stored.begin(), stored.end());
    std::sort(written.begin(), written.end());
    const double a = alone[alone.size() / 2], s = stored[stored.size() / 2];
    const double w = written[written.size() / 2];
    std::printf("%s on %s: %.1f MB, %lld tokens, %zu workers, median of %d rounds\n", name.c_str(),
                corpus.string().c_str(), mb, static_cast<long long>(tokens), workers, rounds);
    std::printf("tokenizer alone:   %8.2f s  %8.1f MB/s\n", a, mb / a);
    std::printf("into a shard:      %8.2f s  %8.1f MB/s\n", s, mb / s);
    std::printf(
        "its bytes alone:   %8.2f s  %8.1f MB/s  (a file of the shard's size written and "
        "synced)\n",
        w, mb / w);
    std::printf(
        "store / alone = %.2f (at most %.2f: the ceiling that writing the file alone sets); "
        "store / its bytes alone = %.2f\n",
        a / s, std::min(1.0, a / w), w / s);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    constexpr const char* kUsage =
        "moelab_bench_encode CORPUS_FILE [--tokenizer NAME] [--train FILE] [--rounds 3]\n";
    fs::path corpus;
    std::string name = "bytes";
    fs::path train;
    int rounds = 3;
    try {
        const moelab::bench::BenchArgs args(argc, argv, 1, {"--tokenizer", "--train", "--rounds"});
        if (args.help()) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        corpus = args.positional(0);
        name = args.text("--tokenizer", name);
        train = args.text("--train", corpus.string());
        rounds = static_cast<int>(args.integer("--rounds", rounds, 1));
        for (const fs::path& file : {corpus, train}) {
            if (!fs::is_regular_file(file)) {
                throw moelab::bench::BenchUsageError(file.string() + ": not a file");
            }
        }
    } catch (const moelab::bench::BenchUsageError& error) {
        std::fprintf(stderr, "moelab_bench_encode: %s\nusage: %s", error.what(), kUsage);
        return 2;
    }
    try {
        return run(corpus, name, train, rounds);
    } catch (const moelab::core::ConfigError& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 2;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "error: %s\n", error.what());
        return 1;
    }
}
