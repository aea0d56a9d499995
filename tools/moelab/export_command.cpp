// `moelab export`: a trained model in Hugging Face's Llama or Mixtral layout (docs/checkpoints.md).
// Nothing is written unless every component has an equivalent there and keeps its promise.

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/diagnostics.h"
#include "core/interop/hugging_face_export.h"
#include "core/model/model_assembly.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/read_file.h"
#include "core/system/threads.h"
#include "core/train/model_state.h"

namespace moelab::cli {

namespace fs = std::filesystem;

namespace {

// "5GB", "500MB", "2GiB", "123456": bytes. Decimal units are Hugging Face's (5GB = 5e9 bytes).
std::int64_t parse_size(const std::string& text) {
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
        ++digits;
    }
    const std::string unit = text.substr(digits);
    const std::pair<const char*, std::int64_t> units[] = {{"", 1},
                                                          {"B", 1},
                                                          {"KB", 1000},
                                                          {"MB", 1000 * 1000},
                                                          {"GB", 1000'000'000},
                                                          {"KiB", 1 << 10},
                                                          {"MiB", 1 << 20},
                                                          {"GiB", std::int64_t{1} << 30}};
    for (const auto& [name, scale] : units) {
        if (unit != name || digits == 0 || digits > 15) continue;
        const std::int64_t number = std::stoll(text.substr(0, digits));
        if (number >= 1 && number <= std::numeric_limits<std::int64_t>::max() / scale) {
            return number * scale;
        }
    }
    throw UsageError(fmt::format(
        "--max-shard-size: expected a size such as 5GB, 500MB, 2GiB or a number of bytes, got '{}'",
        text));
}

}  // namespace

int export_model(const ExportArgs& args) {
    const std::int64_t max_shard_bytes = parse_size(args.max_shard_size);
    // The directory is replaced as a whole: never the working directory or one above it.
    fs::path target = fs::absolute(args.out).lexically_normal();
    if (target.filename().empty()) target = target.parent_path();
    const fs::path inside = fs::current_path().lexically_relative(target);
    if (args.out.empty() || target == target.root_path() ||
        (!inside.empty() && *inside.begin() != "..")) {
        throw UsageError(fmt::format(
            "-o {}: the working directory or one above it; give a new directory by name",
            args.out));
    }
    const fs::path out(args.out);
    std::error_code error;
    if (fs::exists(out, error) && (!fs::is_directory(out, error) || !fs::is_empty(out, error))) {
        throw UsageError(fmt::format("-o {}: exists and is not an empty directory; give a new one",
                                     out.string()));
    }
    const auto [run_dir, step_dir] = trained_target(args.target);
    // The weights are read and checked on the CPU, in float32, whatever device the run trained on.
    std::vector<std::string> overrides = args.set;
    overrides.push_back("train.device=cpu");
    overrides.push_back("model.dtype=float32");
    const std::vector<std::string> features = core::hugging_face_export_features();
    const auto loaded =
        core::load_and_resolve((run_dir / "recipe.resolved.toml").string(), overrides, features);
    const core::ResolvedRecipe& resolved = loaded->resolved;
    core::require_hugging_face_features(resolved);
    core::apply_threads(core::recipe_threads(resolved.recipe.train.intra_op_threads,
                                             resolved.recipe.train.blas_threads));

    const std::filesystem::path tokenizer_file = run_dir / "tokenizer.txt";
    const std::shared_ptr<sdk::Tokenizer> tokenizer = core::load_tokenizer(
        *resolved.tokenizer,
        core::read_file(tokenizer_file, core::kMaxTokenizerBytes, "tokenizer file"),
        resolved.tokenizer_params, tokenizer_file);
    // A tokenizer without a tokenizer.json equivalent is refused like any other component.
    std::string tokenizer_json;
    try {
        tokenizer_json = core::call_plugin(*resolved.tokenizer->plugin, "export to tokenizer.json",
                                           [&] { return tokenizer->export_as("hf"); });
    } catch (const core::PluginError& refused) {
        throw core::ConfigError(core::ConfigIssue{
            resolved.recipe.location_of("tokenizer.plugin"), "tokenizer.plugin",
            fmt::format("tokenizer '{}' cannot be written as Hugging Face's tokenizer.json: {}",
                        resolved.tokenizer->component.name,
                        refused.reason().empty() ? refused.what() : refused.reason())});
    }

    const core::LoadedCheckpoint checkpoint =
        core::load_checkpoint(step_dir, core::CheckpointParts::kModel);
    // The model of the stage that trained the checkpoint's last step (Note [Stages]): its RoPE
    // base and context are what the exported config must say.
    const core::ResolvedRecipe trained = core::checkpoint_recipe(resolved, checkpoint.state.step);
    const auto model = core::assemble_model(
        trained, core::DeviceChoice::kCpu, tokenizer->vocab_size(),
        []() -> at::Tensor {
            throw std::logic_error("an exported model needs no training-token counts");
        },
        features);
    core::load_model_tensors(*model, checkpoint.model);
    model->eval();

    core::HuggingFaceModel hf = core::hugging_face_model(trained, *model, *tokenizer);
    hf.config["moelab"] = {{"run", run_dir.filename().string()},
                           {"step", checkpoint.state.step},
                           {"attention", resolved.attention->component.name},
                           {"router", resolved.router ? resolved.router->component.name : ""}};
    const core::HuggingFaceFiles files =
        core::write_hugging_face_model(hf, tokenizer_json, out, max_shard_bytes,
                                       args.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);

    const std::string architecture = hf.config["architectures"][0].get<std::string>();
    fmt::print("exported step {} of {} as {}", checkpoint.state.step, run_dir.string(),
               architecture);
    if (hf.config.contains("num_local_experts")) {
        fmt::print(" ({} experts, {} per token)", hf.config["num_local_experts"].get<int>(),
                   hf.config["num_experts_per_tok"].get<int>());
    }
    fmt::print(": {} tensors, {:.1f} MB of {} in {}\n", hf.tensors.size(),
               static_cast<double>(files.tensor_bytes) / 1e6, args.dtype, out.string());
    for (const std::string& file : files.files) fmt::print("  {}\n", file);
    return kExitOk;
}

}  // namespace moelab::cli
