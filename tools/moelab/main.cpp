// moelab: the command-line entry point. This file maps the command line onto the subcommand
// functions of commands.h; exit codes are in cli_support.h.

#include <memory>

#include <CLI/CLI.hpp>

#include "cli_support.h"
#include "commands.h"
#include "core/system/allocator.h"

namespace moelab::cli {
namespace {

void add_plugins_command(CLI::App& app, int& exit_code) {
    CLI::App* plugins = app.add_subcommand(
        "plugins",
        "List the components of every plugin on the search path (built-in plugins, "
        "then MOELAB_PLUGIN_PATH)");
    CLI::App* info = plugins->add_subcommand("info", "Show a component's options and defaults");
    auto name = std::make_shared<std::string>();
    info->add_option("name", *name, "Component name, as listed by `moelab plugins`")->required();
    info->callback(
        [&exit_code, name] { exit_code = run_guarded([&] { return show_plugin_info(*name); }); });
    CLI::App* test = plugins->add_subcommand(
        "test",
        "Run the conformance kit on a router, attention or tokenizer (decision contract, "
        "gradients, causality, lossless round trip, determinism, checkpoint round trip, "
        "perturbations, ...): a pass/fail table, exit 1 on a failure");
    auto target = std::make_shared<std::string>();
    test->add_option("component", *target, "Component name, or a plugin library file (.so)")
        ->required();
    test->callback(
        [&exit_code, target] { exit_code = run_guarded([&] { return test_plugin(*target); }); });
    plugins->callback([&exit_code, plugins] {
        if (plugins->get_subcommands().empty()) exit_code = run_guarded(list_plugins);
    });
}

// The recipe file and its --set overrides, as every recipe-taking command accepts them.
void add_recipe_arguments(CLI::App* command, std::string& recipe,
                          std::vector<std::string>& overrides) {
    command->add_option("recipe", recipe, "Recipe file (TOML)")->required();
    command->add_option("--set", overrides,
                        "Override a key: section.key=value (TOML value; repeatable)");
}

void add_check_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<CheckArgs>();
    CLI::App* command = app.add_subcommand(
        "check",
        "Parse and validate a recipe, resolve its plugins and print the resolved recipe "
        "(no training)");
    add_recipe_arguments(command, args->recipe, args->overrides);
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return check_recipe(*args); }); });
}

void add_data_command(CLI::App& app, int& exit_code) {
    CLI::App* data = app.add_subcommand("data", "Token shards of a recipe's corpus");
    data->require_subcommand(1);
    auto prepare = std::make_shared<DataArgs>();
    CLI::App* prepare_cmd = data->add_subcommand(
        "prepare", "Train or load the tokenizer and encode every split into token shards");
    add_recipe_arguments(prepare_cmd, prepare->recipe, prepare->overrides);
    prepare_cmd->callback(
        [&exit_code, prepare] { exit_code = run_guarded([&] { return prepare_data(*prepare); }); });

    auto stats = std::make_shared<DataArgs>();
    CLI::App* stats_cmd = data->add_subcommand(
        "stats", "Documents, tokens and shards of each split (prepares them when needed)");
    add_recipe_arguments(stats_cmd, stats->recipe, stats->overrides);
    stats_cmd->add_flag("--verify", stats->verify,
                        "Read every shard and check its checksum and ids (slow on large corpora)");
    stats_cmd->add_flag("--json", stats->json, "Print JSON");
    stats_cmd->callback(
        [&exit_code, stats] { exit_code = run_guarded([&] { return data_stats(*stats); }); });
}

void add_run_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<RunArgs>();
    CLI::App* command =
        app.add_subcommand("run",
                           "Train the model a recipe describes; progress on the terminal, metrics, "
                           "checkpoints and a summary in the run directory");
    add_recipe_arguments(command, args->recipe, args->overrides);
    command->add_option("--out", args->out_dir,
                        "Run directory (default runs/<recipe name>-<timestamp>)");
    command->add_flag("--resume", args->resume,
                      "Continue the run in --out from its latest checkpoint");
    command
        ->add_option("--stop-after", args->stop_after_steps,
                     "Stop with a checkpoint after this many steps (continue with --resume)")
        ->check(CLI::NonNegativeNumber);
    command->add_flag("--profile", args->profile,
                      "Time each step per phase and operator family after 2 warm-up steps; "
                      "prints a table and writes profile.json to the run directory");
    command->add_flag("--profile-operators", args->profile_operators,
                      "--profile, and the self time of every LibTorch operator of the profiled "
                      "steps: prints the largest and writes operators.json");
    command->callback([&exit_code, args] {
        if (args->resume && args->out_dir.empty()) {
            exit_code = run_guarded([]() -> int {
                throw UsageError("--resume needs --out RUN_DIR naming the run to continue");
            });
            return;
        }
        exit_code = run_guarded([&] { return run_recipe(*args); });
    });
}

void add_launch_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<LaunchArgs>();
    CLI::App* command = app.add_subcommand(
        "launch",
        "Run a moelab command as a job of N processes on this machine (what torchrun "
        "--no-python does): moelab launch -n 2 -- run RECIPE --set parallel.expert=2");
    command->add_option("-n,--nproc-per-node", args->processes, "Processes to start")
        ->required()
        ->check(CLI::Range(1, 1024));
    command->add_option("--master-port", args->port, "Port of the rendezvous (default: a free one)")
        ->check(CLI::Range(0, 65535));
    command->add_option("command", args->command, "The moelab command and its arguments, after --")
        ->required();
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return launch_job(*args); }); });
}

void add_eval_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<EvalArgs>();
    CLI::App* command = app.add_subcommand(
        "eval",
        "Evaluate a run's latest checkpoint (or a given one): loss, perplexity and "
        "routing statistics per MoE layer; with --context or --passkey, long-context "
        "perplexity with sliding windows and passkey retrieval. --max-batches 0 evaluates the "
        "whole split");
    command->add_option("target", args->target, "Run directory or checkpoint directory")
        ->required();
    command->add_option("--split", args->split, "validation (default), test or train");
    command->add_option("--max-batches", args->max_batches,
                        "Evaluate at most this many batches per source; 0: the whole split "
                        "(default: the recipe's eval.max_batches)");
    command->add_option(
        "--perturb", args->perturb,
        "Routing perturbation KIND[=STRENGTH]: disable_top=N, logit_noise=SIGMA, "
        "expert_dropout=P, random_routing=Q, forced_balance (docs/robustness.md); other switches "
        "with --set eval.perturbation.KEY=VALUE");
    command
        ->add_option("--disable-top-experts", args->disable_top_experts,
                     "Shorthand for --perturb disable_top=N (the CartesianMoE paper's probe)")
        ->check(CLI::NonNegativeNumber);
    command->add_option("--set", args->set,
                        "Override a key of the run's resolved recipe, e.g. "
                        "eval.perturbation.routers=[1] (repeatable)");
    command
        ->add_option("--device", args->device,
                     "Evaluate on this device instead of the one the run recorded (cpu, cuda; "
                     "on cpu a bfloat16 run is evaluated in float32)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    command->add_flag("--json", args->json, "Print the result as JSON");
    command
        ->add_option("--context", args->contexts,
                     "Long-context evaluation instead: perplexity at these context lengths "
                     "(comma-separated) with sliding windows, on the split's documents at least "
                     "as long as the longest (docs/inference.md)")
        ->delimiter(',')
        ->check(CLI::Range(2LL, 1LL << 22));
    command
        ->add_option("--stride", args->stride,
                     "Tokens between the starts of sliding windows (default 256, the HARPE "
                     "paper's; at most the context)")
        ->check(CLI::Range(1LL, 1LL << 22));
    command
        ->add_option("--max-tokens", args->max_tokens,
                     "Tokens of documents to score per context length (default 16384; 0: all)")
        ->check(CLI::NonNegativeNumber);
    command->add_flag("--passkey", args->passkey,
                      "Long-context evaluation: the passkey retrieval test at the --context "
                      "lengths (default: the recipe's seq_len), greedy decoding through the "
                      "attention caches; accuracy by length and depth");
    command
        ->add_option("--depths", args->depths,
                     "Relative depths of the passkey in the prompt (default 0,0.25,0.5,0.75,1)")
        ->delimiter(',')
        ->check(CLI::Range(0.0, 1.0));
    command->add_option("--trials", args->trials, "Passkey trials per length and depth (default 5)")
        ->check(CLI::Range(1LL, 100000LL));
    command->add_option("--trace", args->trace,
                        "Record every MoE layer's selected experts and weights of every evaluated "
                        "token into this file (safetensors; read it with "
                        "tools/python/moelab_trace.py)");
    command->add_option("--replay", args->replay,
                        "Route with the selections and weights recorded by --trace instead of the "
                        "routers (same tokens, same MoE layers, gate routers only)");
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return evaluate_run(*args); }); });
}

void add_generate_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<GenerateArgs>();
    CLI::App* command = app.add_subcommand(
        "generate",
        "Generate text from a run's latest checkpoint (or a given one) through the attention "
        "caches, streamed as it is produced; prints prefill and decode tokens/s");
    command->add_option("target", args->target, "Run directory or checkpoint directory")
        ->required();
    command->add_option("--prompt", args->prompts,
                        "Prompt text (repeatable with --batch); it follows an end-of-document "
                        "token, as every training document does");
    command->add_option("--prompt-file", args->prompt_file,
                        "Read the prompt from this file (with --batch: one prompt per line)");
    command->add_option("--max-new", args->max_new, "New tokens per prompt (default 128)")
        ->check(CLI::Range(1LL, 1LL << 24));
    command
        ->add_option("--temperature", args->temperature,
                     "Sampling temperature; 0: greedy (default 0.8)")
        ->check(CLI::NonNegativeNumber);
    command->add_option("--top-k", args->top_k, "Sample among the K most likely tokens (0: all)")
        ->check(CLI::NonNegativeNumber);
    command
        ->add_option("--top-p", args->top_p,
                     "Sample among the most likely tokens whose probability reaches P "
                     "(nucleus; 1: all)")
        ->check(CLI::Range(0.0, 1.0));
    command->add_option("--seed", args->seed, "Seed of the sampler (default 0)");
    command->add_flag("--batch", args->batch,
                      "Decode every prompt as its own sequence, all together (prompts of "
                      "different lengths are left-padded)");
    command->add_flag("--stats", args->stats,
                      "Also print attention FLOPs and KV-cache bytes per token, prefill and "
                      "decode time per token, and the speed-up against recomputing the whole "
                      "prefix for every token (generates exactly --max-new tokens; recorded in "
                      "the run's metrics.jsonl)");
    command->add_option("--set", args->set, "Override a key of the run's resolved recipe");
    command
        ->add_option("--device", args->device,
                     "Generate on this device instead of the one the run recorded (cpu, cuda)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return generate_text(*args); }); });
}

void add_export_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<ExportArgs>();
    CLI::App* command = app.add_subcommand(
        "export",
        "Write a run's latest checkpoint (or a given one) in another tool's layout: hf, Hugging "
        "Face's Llama (dense) or Mixtral (top-k softmax routing in every layer) with config.json, "
        "model.safetensors and tokenizer.json (docs/checkpoints.md)");
    command->add_option("target", args->target, "Run directory or checkpoint directory")
        ->required();
    command->add_option("--format", args->format, "Layout to write (hf)")
        ->check(CLI::IsMember({"hf"}));
    command->add_option("-o,--out", args->out, "Directory to write (new or empty)")->required();
    command->add_option("--max-shard-size", args->max_shard_size,
                        "Split model.safetensors into shards of at most this size, with "
                        "model.safetensors.index.json (bytes, or with KB, MB, GB, KiB, MiB, GiB; "
                        "default 5GB)");
    command->add_option("--dtype", args->dtype, "dtype of the written weights (default float32)")
        ->check(CLI::IsMember({"float32", "bfloat16"}));
    command->add_option("--set", args->set, "Override a key of the run's resolved recipe");
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return export_model(*args); }); });
}

void add_compare_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<CompareArgs>();
    CLI::App* command = app.add_subcommand(
        "compare",
        "Train (or reuse) the runs a comparison file names, evaluate each unperturbed and under "
        "every routing perturbation, and write results.csv/json/md (docs/robustness.md)");
    command->add_option("file", args->file, "Comparison file (TOML)")->required();
    command->add_option("--output", args->output,
                        "Output directory (default: the file's `output`, else "
                        "runs/compare/<name>)");
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return compare_runs(*args); }); });
}

void add_new_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<NewArgs>();
    CLI::App* command = app.add_subcommand(
        "new",
        "Write a complete out-of-tree plugin project (CMakeLists, source, recipe, README) that "
        "builds against the installed SDK and passes `moelab plugins test`");
    command->add_option("kind", args->kind, "router, block, attention or tokenizer")
        ->required()
        ->check(CLI::IsMember({"router", "block", "attention", "tokenizer"}));
    command->add_option("name", args->name, "Component name: lower-case letters, digits, '-'")
        ->required();
    command->add_option("--dir", args->dir, "Parent directory (default: the working directory)");
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return new_plugin(*args); }); });
}

void add_report_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<ReportArgs>();
    CLI::App* command = app.add_subcommand(
        "report",
        "Write report.html (self-contained, opens offline) for a run or comparison directory, "
        "and each chart as SVG and PNG");
    command->add_option("directory", args->directory, "Run directory or comparison directory")
        ->required();
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return write_report(*args); }); });
}

void add_peak_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<PeakArgs>();
    CLI::App* command = app.add_subcommand(
        "peak",
        "Measure this machine's GEMM peak, the reference of MFU, for a while and keep it if it is "
        "the best yet (a new machine's first short measurement can land in a busy second)");
    command->add_option("--seconds", args->seconds, "How long to measure (default 10)");
    command->add_option("--device", args->device, "cpu (default) or cuda");
    command->add_option("--dtype", args->dtype,
                        "float32 (default) or bfloat16 (CUDA: what bfloat16 runs compute in)");
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return measure_gemm_peak(*args); }); });
}

void add_use_options(CLI::App& command, TokenizerUseArgs& args, bool output) {
    command.add_option("tokenizer", args.tokenizer, "Tokenizer file (JSON)")->required();
    command.add_option("files", args.files, "Text files")->required();
    if (output) command.add_option("-o,--output", args.out, "Output file (default: stdout)");
    command.add_option("--as", args.as,
                       "Tokenizer component that loads the file (default: the file's own; e.g. "
                       "lbpe to encode a bpe vocabulary long token first)");
    command
        .add_option("--set", args.options, "Component option key=value (TOML value; repeatable)")
        ->allow_extra_args(false);
}

// Threads of encode and stats: they change the speed, never the output.
void add_threads_option(CLI::App& command, int& threads) {
    command.add_option("--threads", threads, "Threads (default: one per core, at most 16)")
        ->check(CLI::Range(1, 256));
}

void add_tokenizer_command(CLI::App& app, int& exit_code) {
    CLI::App* tokenizer =
        app.add_subcommand("tokenizer", "Train, apply and measure tokenizers outside a recipe");
    tokenizer->require_subcommand(1);

    auto train = std::make_shared<TokenizerTrainArgs>();
    CLI::App* train_cmd =
        tokenizer->add_subcommand("train", "Train a tokenizer on text files and write it as JSON");
    train_cmd->add_option("--algo", train->algo,
                          "Tokenizer component: bpe, scaffold-bpe, lbpe, ... (default bpe)");
    train_cmd->add_option("--vocab", train->vocab, "Vocabulary size (the component's vocab_size)")
        ->check(CLI::PositiveNumber);
    train_cmd->add_option("--pretokenizer", train->pretokenizer, "gpt2 (default) or whitespace");
    train_cmd->add_flag("--split-digits", train->split_digits, "Every digit is its own piece");
    train_cmd
        ->add_option("--set", train->options, "Component option key=value (TOML value; repeatable)")
        ->allow_extra_args(false);
    train_cmd->add_option("-o,--output", train->out, "Tokenizer file to write")->required();
    train_cmd
        ->add_option("--export", train->exports,
                     "Also write another format next to it (hf: Hugging Face tokenizer.json "
                     "layout, as OUT.hf.json)")
        ->allow_extra_args(false);
    train_cmd->add_option("corpus", train->corpus, "Training text files")->required();
    train_cmd->callback([&exit_code, train] {
        exit_code = run_guarded([&] { return train_tokenizer_file(*train); });
    });

    auto encode = std::make_shared<TokenizerUseArgs>();
    CLI::App* encode_cmd = tokenizer->add_subcommand(
        "encode",
        "Encode text: one line of space-separated ids per input line (line ends are "
        "not encoded; decode writes one after every line)");
    add_use_options(*encode_cmd, *encode, true);
    add_threads_option(*encode_cmd, encode->threads);
    encode_cmd->callback([&exit_code, encode] {
        exit_code = run_guarded([&] { return encode_with_tokenizer(*encode); });
    });

    auto decode = std::make_shared<TokenizerUseArgs>();
    CLI::App* decode_cmd = tokenizer->add_subcommand(
        "decode", "Decode lines of space-separated ids back to text, one line each");
    add_use_options(*decode_cmd, *decode, true);
    decode_cmd->callback([&exit_code, decode] {
        exit_code = run_guarded([&] { return decode_with_tokenizer(*decode); });
    });

    auto stats = std::make_shared<TokenizerUseArgs>();
    CLI::App* stats_cmd = tokenizer->add_subcommand(
        "stats",
        "Bytes per token, token-frequency entropy and redundancy on text files (each "
        "line encoded with its line end)");
    add_use_options(*stats_cmd, *stats, false);
    add_threads_option(*stats_cmd, stats->threads);
    stats_cmd->add_flag("--json", stats->json, "Print JSON");
    stats_cmd->callback(
        [&exit_code, stats] { exit_code = run_guarded([&] { return tokenizer_stats(*stats); }); });

    auto exported = std::make_shared<TokenizerExportArgs>();
    CLI::App* export_cmd = tokenizer->add_subcommand(
        "export", "Write a tokenizer in another format (hf: Hugging Face tokenizer.json)");
    export_cmd->add_option("tokenizer", exported->tokenizer, "Tokenizer file (JSON)")->required();
    export_cmd->add_option("--format", exported->format, "Format (default hf)");
    export_cmd->add_option("-o,--output", exported->out, "File to write")->required();
    export_cmd->add_option("--as", exported->as, "Tokenizer component that loads the file");
    export_cmd->add_option("--set", exported->options, "Component option key=value")
        ->allow_extra_args(false);
    export_cmd->callback([&exit_code, exported] {
        exit_code = run_guarded([&] { return export_tokenizer(*exported); });
    });
}

void add_harpe_bases_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<HarpeBasesArgs>();
    CLI::App* command = app.add_subcommand(
        "harpe-bases",
        "Search HARPE's per-head RoPE bases by peak/valley complementarity (the paper's settings: "
        "--heads 32 --min 1e6 --max 5e6 --stride 3e4)");
    command->add_option("--heads", args->heads, "Bases to choose: one per key/value head")
        ->required()
        ->check(CLI::Range(1, 4096));
    command->add_option("--min", args->b_min, "Smallest base, always chosen")->required();
    command->add_option("--max", args->b_max, "Largest candidate base")->required();
    command->add_option("--stride", args->stride, "Distance between candidate bases")->required();
    command->add_option("--head-dim", args->head_dim, "Head dimension (default 128)");
    command->add_option("--window", args->window,
                        "Largest relative distance compared (default 131072, the paper's 128k)");
    command->add_option("--from", args->window_start,
                        "Smallest distance whose extrema count (default window / 4)");
    command->add_option("--extrema", args->extrema, "Peaks and valleys kept per base (default 6)");
    command->add_option("--min-gap", args->min_gap,
                        "Least distance between kept extrema (default 50)");
    command->add_flag("--json", args->json, "Print JSON");
    command->callback(
        [&exit_code, args] { exit_code = run_guarded([&] { return harpe_bases(*args); }); });
}

}  // namespace
}  // namespace moelab::cli

int main(int argc, char** argv) {
    using namespace moelab::cli;
    moelab::core::tune_allocator_for_training();  // before the first large allocation
    CLI::App app{"moelab: train and compare Mixture-of-Experts language models built from plugins"};
    app.set_version_flag(
        "--version", [] { return version_text(); },
        "Show versions, build fingerprint and the loaded BLAS library");
    app.require_subcommand(1);
    int exit_code = kExitOk;
    add_plugins_command(app, exit_code);
    add_check_command(app, exit_code);
    add_run_command(app, exit_code);
    add_launch_command(app, exit_code);
    add_data_command(app, exit_code);
    add_eval_command(app, exit_code);
    add_generate_command(app, exit_code);
    add_export_command(app, exit_code);
    add_compare_command(app, exit_code);
    add_report_command(app, exit_code);
    add_new_command(app, exit_code);
    add_tokenizer_command(app, exit_code);
    add_harpe_bases_command(app, exit_code);
    add_peak_command(app, exit_code);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        const int code = app.exit(error);
        return code == 0 ? kExitOk : kExitUsageError;
    }
    return exit_code;
}
