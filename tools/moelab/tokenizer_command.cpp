// moelab tokenizer train|encode|decode|stats|export: tokenizers outside a recipe. Every command
// works with any tokenizer component on the plugin search path; a tokenizer file names the
// component that loads it (top-level "tokenizer" key) unless --as overrides it.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/config/recipe_loader.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/read_file.h"
#include "moelab/sdk/parallel.h"

namespace moelab::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

const core::RegisteredTokenizer& find_tokenizer(const core::PluginRegistry& registry,
                                                const std::string& name, const std::string& why) {
    if (const auto* found = registry.find_tokenizer(name)) return *found;
    std::string names;
    for (const std::string& n : registry.names(core::ComponentKind::kTokenizer)) {
        names += (names.empty() ? "" : ", ") + n;
    }
    throw UsageError(
        fmt::format("{}: no tokenizer component named '{}' (available: {})", why, name, names));
}

void require_files(const std::vector<std::string>& files) {
    for (const std::string& file : files) {
        if (!fs::is_regular_file(file)) throw UsageError(fmt::format("{}: no such file", file));
    }
}

// A tokenizer file loaded by its component (or `as`), with `options` as the component's params.
struct LoadedTokenizer {
    core::PluginRegistry registry;
    std::shared_ptr<sdk::Tokenizer> tokenizer;
    std::string component;
};

LoadedTokenizer load_tokenizer_file(const std::string& file, const std::string& as,
                                    const std::vector<std::string>& options) {
    require_files({file});
    const std::string text = core::read_file(file, core::kMaxTokenizerBytes, "tokenizer file");
    LoadedTokenizer loaded;
    loaded.component = as;
    if (loaded.component.empty()) {
        const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (!json.is_object() || !json.contains("tokenizer") || !json["tokenizer"].is_string()) {
            throw UsageError(fmt::format(
                "{}: the file does not say which tokenizer component loads it (no top-level "
                "\"tokenizer\" string); name it with --as",
                file));
        }
        loaded.component = json["tokenizer"].get<std::string>();
    }
    loaded.registry = core::load_plugin_registry({}, /*allow_refusals=*/false);
    const auto& component = find_tokenizer(loaded.registry, loaded.component, file);
    const sdk::Params params =
        core::params_from_assignments(options, component.component.params, "tokenizer");
    try {
        loaded.tokenizer = core::load_tokenizer(component, text, params, file);
    } catch (const core::FileError& error) {
        // The file is this command's argument: a usage error (exit 2), said in the same words.
        throw UsageError(error.what());
    } catch (const core::PluginError& error) {
        throw UsageError(fmt::format("{}: cannot load it as a '{}' tokenizer: {}", file,
                                     loaded.component, error.what()));
    }
    return loaded;
}

unsigned thread_count(int requested) {
    if (requested > 0) return static_cast<unsigned>(requested);
    return std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
}

// Streams the lines of `files` in batches, runs `work(lines, first, last, out, worker)` for line
// ranges on `threads` threads, and writes each batch's outputs in order.
template <class Work>
void for_line_batches(const std::vector<std::string>& files, unsigned threads, std::ostream& out,
                      Work&& work) {
    constexpr std::size_t kBatchBytes = std::size_t{8} << 20;
    std::vector<std::string> lines;
    std::vector<std::string> outputs(threads);
    auto flush = [&] {
        sdk::run_workers(threads, [&](std::size_t t) {
            outputs[t].clear();
            work(lines, lines.size() * t / threads, lines.size() * (t + 1) / threads, outputs[t],
                 static_cast<unsigned>(t));
        });
        for (const std::string& o : outputs)
            out.write(o.data(), static_cast<std::streamsize>(o.size()));
        lines.clear();
    };
    for (const std::string& file : files) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw UsageError(fmt::format("{}: cannot read", file));
        std::size_t bytes = 0;
        for (std::string line; std::getline(in, line);) {
            bytes += line.size() + 1;
            lines.push_back(std::move(line));
            if (bytes >= kBatchBytes) {
                flush();
                bytes = 0;
            }
        }
    }
    if (!lines.empty()) flush();
}

std::ofstream open_output(const std::string& path) {
    std::ofstream out(path, std::ios::binary);
    if (!out) throw UsageError(fmt::format("{}: cannot write", path));
    return out;
}

}  // namespace

int train_tokenizer_file(const TokenizerTrainArgs& args) {
    require_files(args.corpus);
    // Before training, not after minutes of it.
    if (fs::is_directory(args.out)) {
        throw UsageError(
            fmt::format("-o {}: is a directory; name the tokenizer file to write", args.out));
    }
    if (const fs::path parent = fs::path(args.out).parent_path();
        !parent.empty() && !fs::is_directory(parent)) {
        throw UsageError(
            fmt::format("-o {}: the directory {} does not exist", args.out, parent.string()));
    }
    const core::PluginRegistry registry = core::load_plugin_registry({}, /*allow_refusals=*/false);
    const auto& component = find_tokenizer(registry, args.algo, "--algo");
    std::vector<std::string> options;
    if (args.vocab > 0) options.push_back(fmt::format("vocab_size={}", args.vocab));
    if (!args.pretokenizer.empty()) options.push_back("pretokenizer=" + args.pretokenizer);
    if (args.split_digits) options.push_back("split_digits=true");
    options.insert(options.end(), args.options.begin(), args.options.end());
    const sdk::Params params =
        core::params_from_assignments(options, component.component.params, "tokenizer");

    std::uintmax_t bytes = 0;
    for (const std::string& file : args.corpus) bytes += fs::file_size(file);
    fmt::print(stderr, "training '{}' on {} file(s), {:.1f} MB\n", args.algo, args.corpus.size(),
               static_cast<double>(bytes) / 1e6);
    const auto start = Clock::now();
    const auto tokenizer = core::train_tokenizer(component, {args.corpus}, params);
    const double trained = seconds_since(start);
    const std::string serialized = tokenizer->serialize();
    core::write_file_atomically(args.out, serialized);
    fmt::print(stderr, "trained in {:.2f} s: {} model ids -> {}\n", trained,
               tokenizer->vocab_size(), args.out);
    for (const std::string& format : args.exports) {
        const fs::path out = fs::path(args.out).replace_extension(format + ".json");
        std::string exported;
        try {
            exported = tokenizer->export_as(format);
        } catch (const std::exception& error) {
            throw UsageError(fmt::format("--export {}: {} (the tokenizer itself was written)",
                                         format, error.what()));
        }
        core::write_file_atomically(out, exported);
        fmt::print(stderr, "exported ({}) -> {}\n", format, out.string());
    }
    return kExitOk;
}

int encode_with_tokenizer(const TokenizerUseArgs& args) {
    require_files(args.files);
    const LoadedTokenizer loaded = load_tokenizer_file(args.tokenizer, args.as, args.options);
    const sdk::Tokenizer& tokenizer = *loaded.tokenizer;
    std::ofstream file_out;
    if (!args.out.empty()) file_out = open_output(args.out);
    std::ostream& out = args.out.empty() ? std::cout : file_out;
    std::vector<std::size_t> tokens(thread_count(args.threads), 0), bytes(tokens.size(), 0);
    const auto start = Clock::now();
    for_line_batches(args.files, thread_count(args.threads), out,
                     [&](const std::vector<std::string>& lines, std::size_t first, std::size_t last,
                         std::string& text, unsigned worker) {
                         std::vector<std::int32_t> ids;
                         for (std::size_t i = first; i < last; ++i) {
                             ids.clear();
                             tokenizer.encode(lines[i], ids);
                             tokens[worker] += ids.size();
                             bytes[worker] += lines[i].size();
                             for (std::size_t k = 0; k < ids.size(); ++k) {
                                 if (k) text += ' ';
                                 fmt::format_to(std::back_inserter(text), "{}", ids[k]);
                             }
                             text += '\n';
                         }
                     });
    out.flush();
    const double elapsed = seconds_since(start);
    std::size_t total_tokens = 0, total_bytes = 0;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        total_tokens += tokens[t];
        total_bytes += bytes[t];
    }
    fmt::print(stderr, "encoded {} bytes into {} tokens in {:.3f} s ({:.1f} MB/s, {} threads)\n",
               total_bytes, total_tokens, elapsed, static_cast<double>(total_bytes) / 1e6 / elapsed,
               tokens.size());
    return kExitOk;
}

int decode_with_tokenizer(const TokenizerUseArgs& args) {
    require_files(args.files);
    const LoadedTokenizer loaded = load_tokenizer_file(args.tokenizer, args.as, args.options);
    std::ofstream file_out;
    if (!args.out.empty()) file_out = open_output(args.out);
    std::ostream& out = args.out.empty() ? std::cout : file_out;
    // Single-threaded: a bad id must be reported with its line.
    std::vector<std::int32_t> ids;
    for (const std::string& file : args.files) {
        std::ifstream in(file, std::ios::binary);
        std::size_t number = 0;
        for (std::string line; std::getline(in, line);) {
            ++number;
            ids.clear();
            const char* p = line.data();
            const char* end = p + line.size();
            while (p < end) {
                while (p < end && *p == ' ') ++p;
                if (p == end) break;
                std::int32_t id = 0;
                auto [next, error] = std::from_chars(p, end, id);
                if (error != std::errc() || (next < end && *next != ' ')) {
                    throw UsageError(
                        fmt::format("{}:{}: expected token ids separated by spaces", file, number));
                }
                if (id < 0 || id >= loaded.tokenizer->vocab_size()) {
                    throw UsageError(fmt::format("{}:{}: id {} is outside the vocabulary [0, {})",
                                                 file, number, id, loaded.tokenizer->vocab_size()));
                }
                ids.push_back(id);
                p = next;
            }
            const std::string text = loaded.tokenizer->decode(ids);
            out.write(text.data(), static_cast<std::streamsize>(text.size()));
            out.put('\n');
        }
    }
    return kExitOk;
}

int tokenizer_stats(const TokenizerUseArgs& args) {
    require_files(args.files);
    const LoadedTokenizer loaded = load_tokenizer_file(args.tokenizer, args.as, args.options);
    const sdk::Tokenizer& tokenizer = *loaded.tokenizer;
    const unsigned threads = thread_count(args.threads);
    const auto vocab = static_cast<std::size_t>(tokenizer.vocab_size());
    std::vector<std::vector<std::int64_t>> counts(threads, std::vector<std::int64_t>(vocab, 0));
    std::int64_t bytes = 0;
    for (const std::string& file : args.files)
        bytes += static_cast<std::int64_t>(fs::file_size(file));
    std::ostringstream sink;
    for_line_batches(args.files, threads, sink,
                     [&](const std::vector<std::string>& lines, std::size_t first, std::size_t last,
                         std::string&, unsigned worker) {
                         std::vector<std::int32_t> ids;
                         std::string line;
                         for (std::size_t i = first; i < last; ++i) {
                             ids.clear();
                             line = lines[i];
                             line += '\n';  // statistics of the text as it is, newlines included
                             tokenizer.encode(line, ids);
                             for (std::int32_t id : ids)
                                 ++counts[worker][static_cast<std::size_t>(id)];
                         }
                     });
    std::vector<std::int64_t> total(vocab, 0);
    for (const auto& c : counts) {
        for (std::size_t i = 0; i < vocab; ++i) total[i] += c[i];
    }
    std::int64_t tokens = 0, used = 0;
    for (std::int64_t c : total) {
        tokens += c;
        used += c > 0;
    }
    // Entropy of the token-frequency distribution and redundancy R = 1 - H / log2 |V|
    // (methods.md §8.5, Table 8).
    double entropy = 0.0;
    for (std::int64_t c : total) {
        if (c == 0) continue;
        const double p = static_cast<double>(c) / static_cast<double>(tokens);
        entropy -= p * std::log2(p);
    }
    const double redundancy = 1.0 - entropy / std::log2(static_cast<double>(vocab));
    const double bytes_per_token = tokens ? static_cast<double>(bytes) / tokens : 0.0;
    if (args.json) {
        nlohmann::json report{{"tokenizer", args.tokenizer},
                              {"component", loaded.component},
                              {"files", args.files},
                              {"bytes", bytes},
                              {"tokens", tokens},
                              {"vocab_size", vocab},
                              {"used_ids", used},
                              {"bytes_per_token", bytes_per_token},
                              {"entropy_bits", entropy},
                              {"redundancy", redundancy}};
        nlohmann::json facts = nlohmann::json::object();
        for (const sdk::TokenizerFact& fact : tokenizer.facts()) facts[fact.name] = fact.value;
        report["facts"] = facts;
        fmt::print("{}\n", report.dump(2));
        return kExitOk;
    }
    fmt::print("tokenizer            {} ({})\n", args.tokenizer, loaded.component);
    for (const sdk::TokenizerFact& fact : tokenizer.facts()) {
        fmt::print("{:<20} {}\n", fact.name, fact.value);
    }
    fmt::print("vocabulary           {} ids, {} used in this text\n", vocab, used);
    fmt::print("text                 {} bytes -> {} tokens\n", bytes, tokens);
    fmt::print("bytes per token      {:.4f}\n", bytes_per_token);
    fmt::print("entropy              {:.4f} bits\n", entropy);
    fmt::print("redundancy           {:.4f}\n", redundancy);
    return kExitOk;
}

int export_tokenizer(const TokenizerExportArgs& args) {
    const LoadedTokenizer loaded = load_tokenizer_file(args.tokenizer, args.as, args.options);
    std::string text;
    try {
        text = loaded.tokenizer->export_as(args.format);
    } catch (const std::exception& error) {
        throw UsageError(fmt::format("{}: cannot export as '{}': {}", args.tokenizer, args.format,
                                     error.what()));
    }
    core::write_file_atomically(args.out, text);
    fmt::print(stderr, "exported {} ({}) -> {}\n", args.tokenizer, args.format, args.out);
    return kExitOk;
}

}  // namespace moelab::cli
