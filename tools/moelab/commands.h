#pragma once

// The subcommands, as plain functions returning an exit code (cli_support.h). main.cpp maps the
// command line onto them; only it sees CLI11.

#include <string>
#include <vector>

namespace moelab::cli {

std::string version_text();

int list_plugins();
int show_plugin_info(const std::string& name);

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
};
int run_recipe(const RunArgs& args);

struct EvalArgs {
    std::string target;  // run directory or checkpoint
    std::string split = "validation";
    long long max_batches = -1;  // -1: the recipe's eval.max_batches
    int disable_top_experts = 0;
    std::string device;  // empty: the device the run recorded
    bool json = false;
};
int evaluate_run(const EvalArgs& args);

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

}  // namespace moelab::cli
