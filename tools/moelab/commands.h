#pragma once

// The subcommands, as plain functions returning an exit code (cli_support.h). main.cpp maps the
// command line onto them; only it sees CLI11.

#include <cstdint>
#include <string>
#include <vector>

namespace moelab::cli {

std::string version_text();

int list_plugins();
int show_plugin_info(const std::string& name);
// The conformance kit: every check of core/conformance on a component (by name) or on every
// router of a library file. Exit 1 when a check fails.
int test_plugin(const std::string& target);

// Measures the machine's GEMM peak (core/system/gemm_peak.h) for `seconds` with the threads a run
// uses by default and raises the cached best with it; prints both.
struct PeakArgs {
    double seconds = 10;
    std::string device = "cpu";
    std::string dtype = "float32";
};
int measure_gemm_peak(const PeakArgs& args);

struct CheckArgs {
    std::string recipe;
    std::vector<std::string> overrides;  // --set key=value
};
int check_recipe(const CheckArgs& args);

struct RunArgs {
    std::string recipe;
    std::vector<std::string> overrides;
    std::string out_dir;
    bool resume = false;
    long long stop_after_steps = 0;
    bool profile = false;
    bool profile_operators = false;
};
int run_recipe(const RunArgs& args);

// Starts `processes` copies of this moelab running `command` (its arguments after `launch -n N
// --`) as one job on this machine, with torchrun's environment; returns the job's exit status.
struct LaunchArgs {
    int processes = 1;
    int port = 0;  // MASTER_PORT; 0: a free one
    std::vector<std::string> command;
};
int launch_job(const LaunchArgs& args);

struct EvalArgs {
    std::string target;  // run directory or checkpoint
    std::string split = "validation";
    long long max_batches = -1;    // -1: the recipe's eval.max_batches
    int disable_top_experts = 0;   // shorthand for perturb = "disable_top=N"
    std::string perturb;           // KIND[=STRENGTH]: eval.perturbation.kind and .strength
    std::vector<std::string> set;  // KEY=VALUE overrides of the run's resolved recipe
    std::string device;            // empty: the device the run recorded
    bool json = false;
    // Long-context evaluation (core/eval/long_context.h): perplexity at these context lengths
    // with sliding windows `stride` apart, and the passkey test at the same lengths.
    std::vector<long long> contexts;
    long long stride = 256;
    long long max_tokens = 16384;  // scored tokens per context length
    bool passkey = false;
    std::vector<double> depths{0.0, 0.25, 0.5, 0.75, 1.0};
    long long trials = 5;
    // Routing traces (core/eval/routing_trace.h): record every MoE layer's routing to this file,
    // or force the routing recorded in it.
    std::string trace;
    std::string replay;
};
int evaluate_run(const EvalArgs& args);

struct GenerateArgs {
    std::string target;                // run directory or checkpoint
    std::vector<std::string> prompts;  // --prompt, repeatable with --batch
    std::string prompt_file;
    long long max_new = 128;
    double temperature = 0.8;
    long long top_k = 0;
    double top_p = 1.0;
    unsigned long long seed = 0;
    bool batch = false;  // every prompt (and line of the prompt file) is its own sequence
    bool stats = false;  // costs, and the speed-up against decoding without the cache
    std::vector<std::string> set;
    std::string device;
};
int generate_text(const GenerateArgs& args);

struct CompareArgs {
    std::string file;    // comparison file (TOML)
    std::string output;  // empty: the file's `output`
};
int compare_runs(const CompareArgs& args);

struct ExportArgs {
    std::string target;  // run directory or checkpoint
    std::string format = "hf";
    std::string out;
    std::string max_shard_size = "5GB";
    std::string dtype = "float32";
    std::vector<std::string> set;
};
// A trained model in another tool's layout (hf: Hugging Face Llama / Mixtral).
int export_model(const ExportArgs& args);

struct NewArgs {
    std::string kind;  // router, block or attention
    std::string name;
    std::string dir;  // parent directory; empty: the working directory
};
int new_plugin(const NewArgs& args);

struct DataArgs {
    std::string recipe;
    std::vector<std::string> overrides;  // --set key=value
    bool verify = false;                 // stats: read every shard against its checksum
    bool json = false;                   // stats: JSON on stdout
};
// Encodes the recipe's corpus into token shards ahead of training (as `moelab run` would).
int prepare_data(const DataArgs& args);
// Documents, tokens, bytes per token and shards of each split; prepares them if needed.
int data_stats(const DataArgs& args);

struct ReportArgs {
    std::string directory;  // run directory or comparison output directory
};
int write_report(const ReportArgs& args);

struct TokenizerTrainArgs {
    std::string algo = "bpe";  // tokenizer component
    long long vocab = 0;       // 0: the component's default
    std::string pretokenizer;  // empty: the component's default
    bool split_digits = false;
    std::vector<std::string> options;  // --set key=value (component options)
    std::vector<std::string> corpus;
    std::string out;
    std::vector<std::string> exports;  // --export FORMAT
};
int train_tokenizer_file(const TokenizerTrainArgs& args);

struct TokenizerUseArgs {
    std::string tokenizer;  // tokenizer file
    std::vector<std::string> files;
    std::string out;  // empty: stdout
    std::string as;   // component that loads the file; empty: the file's "tokenizer" key
    std::vector<std::string> options;
    int threads = 0;  // 0: one per hardware thread (at most 16)
    bool json = false;
};
int encode_with_tokenizer(const TokenizerUseArgs& args);
int decode_with_tokenizer(const TokenizerUseArgs& args);
int tokenizer_stats(const TokenizerUseArgs& args);

struct TokenizerExportArgs {
    std::string tokenizer;
    std::string format = "hf";
    std::string out;
    std::string as;
    std::vector<std::string> options;
};
int export_tokenizer(const TokenizerExportArgs& args);

// HARPE's peak/valley base search (plugins/attention/harpe/base_sets.h).
struct HarpeBasesArgs {
    std::int64_t heads = 32;
    double b_min = 1e6, b_max = 5e6, stride = 3e4;
    std::int64_t head_dim = 128;
    std::int64_t window = 131072;
    std::int64_t window_start = 0;  // 0: window / 4
    std::int64_t extrema = 6;
    std::int64_t min_gap = 50;
    bool json = false;
};
int harpe_bases(const HarpeBasesArgs& args);

}  // namespace moelab::cli
