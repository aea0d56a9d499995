#include "core/train/model_state.h"

#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <torch/autograd.h>

#include "core/config/recipe_printer.h"
#include "core/system/hash.h"
#include "core/system/tensor_text.h"

namespace moelab::core {

std::vector<NamedTensor> model_tensors(const torch::nn::Module& model) {
    std::vector<NamedTensor> tensors;
    for (const auto& item : model.named_parameters()) tensors.push_back({item.key(), item.value()});
    for (const auto& item : model.named_buffers()) tensors.push_back({item.key(), item.value()});
    return tensors;
}

namespace {

// Tensors the host renamed, as (old suffix, new suffix): checkpoints written before the rename
// still load. SDK 4 moved the SMoE-Share gate from the topk/topp routers into the host's
// standard block ([moe] shared_gate).
constexpr std::pair<std::string_view, std::string_view> kRenamedTensors[] = {
    {".block.router.shared_gate_weight", ".block.shared_gate_weight"},
    {".block.router.shared_gate_bias", ".block.shared_gate_bias"},
};

// Tensors that earlier versions saved and that are now computed from the recipe, by suffix: a
// checkpoint may hold them where the model has none. Rotary frequencies are options, not state,
// since sdk::RotaryAttention (SDK 5.1); the rope plugin before 1.1 kept them as a buffer.
constexpr std::string_view kNoLongerSaved[] = {".attention.inv_freq"};

std::map<std::string, at::Tensor> with_current_names(std::map<std::string, at::Tensor> tensors) {
    for (const auto& [old_suffix, new_suffix] : kRenamedTensors) {
        std::vector<std::string> old_names;
        for (const auto& [name, tensor] : tensors) {
            if (name.ends_with(old_suffix)) old_names.push_back(name);
        }
        for (const std::string& name : old_names) {
            std::string current = name.substr(0, name.size() - old_suffix.size());
            current += new_suffix;
            if (tensors.count(current) != 0) continue;  // both present: let the check report it
            tensors[current] = tensors.at(name);
            tensors.erase(name);
        }
    }
    return tensors;
}

}  // namespace

bool no_longer_saved(const std::string& name) {
    for (const std::string_view suffix : kNoLongerSaved) {
        if (name.ends_with(suffix)) return true;
    }
    return false;
}

void load_model_tensors(torch::nn::Module& model,
                        const std::map<std::string, at::Tensor>& checkpoint_tensors) {
    torch::NoGradGuard no_grad;
    const std::map<std::string, at::Tensor> tensors = with_current_names(checkpoint_tensors);
    std::vector<std::string> problems;
    std::size_t matched = 0;
    for (const NamedTensor& target : model_tensors(model)) {
        auto it = tensors.find(target.name);
        if (it == tensors.end()) {
            problems.push_back(fmt::format("missing '{}'", target.name));
            continue;
        }
        if (it->second.sizes() != target.tensor.sizes()) {
            problems.push_back(fmt::format("'{}' has shape {}, the model expects {}", target.name,
                                           shape_text(it->second.sizes()),
                                           shape_text(target.tensor.sizes())));
            continue;
        }
        at::Tensor destination = target.tensor;
        destination.copy_(it->second);
        ++matched;
    }
    if (matched + problems.size() < tensors.size()) {
        for (const auto& [name, tensor] : tensors) {
            bool known = false;
            for (const NamedTensor& target : model_tensors(model)) known |= target.name == name;
            if (!known && !no_longer_saved(name)) {
                problems.push_back(fmt::format("unexpected '{}'", name));
            }
        }
    }
    if (!problems.empty()) {
        std::string text;
        for (const std::string& p : problems) text += "\n  " + p;
        throw CheckpointError("the checkpoint does not fit this model:" + text);
    }
}

std::vector<NamedTensor> rng_state(bool cuda) {
    std::vector<NamedTensor> tensors{{"rng/cpu", at::detail::getDefaultCPUGenerator().get_state()}};
    if (cuda) {
        tensors.push_back(
            {"rng/cuda",
             at::globalContext().defaultGenerator(at::Device(at::kCUDA, 0)).get_state()});
    }
    return tensors;
}

void restore_rng_state(const std::map<std::string, at::Tensor>& tensors, bool cuda) {
    auto it = tensors.find("rng/cpu");
    if (it == tensors.end()) throw CheckpointError("the checkpoint has no CPU random state");
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    cpu.set_state(it->second);
    if (!cuda) return;
    it = tensors.find("rng/cuda");
    if (it == tensors.end()) throw CheckpointError("the checkpoint has no CUDA random state");
    at::Generator gpu = at::globalContext().defaultGenerator(at::Device(at::kCUDA, 0));
    gpu.set_state(it->second);
}

std::string recipe_hash(const ResolvedRecipe& resolved) {
    // The parallel layout is not part of the run (a checkpoint resumes under another one).
    Recipe recipe = resolved.recipe;
    recipe.parallel = ParallelOptions{};
    const std::string text = format_recipe(recipe, resolved.plugin_params());
    return ContentHash().add(text.substr(text.find('\n') + 1)).hex();
}

std::map<std::string, std::string> model_layout_metadata(const Recipe& recipe,
                                                         std::int64_t vocab_size,
                                                         std::int32_t end_of_document_id) {
    const ModelOptions& m = recipe.model;
    const bool moe = m.ffn == FfnKind::kMoe;
    const nlohmann::json shape = {
        {"vocab_size", vocab_size},
        {"d_model", m.d_model},
        {"layers", m.layers},
        {"heads", m.heads},
        {"kv_heads", m.kv_heads > 0 ? m.kv_heads : m.heads},
        {"head_dim", m.d_model / m.heads},
        {"d_ff", m.d_ff},
        {"norm_eps", m.norm_eps},
        {"moe_layers",
         moe ? nlohmann::json{{"first", recipe.moe.first_layer}, {"interval", recipe.moe.interval}}
             : nlohmann::json(nullptr)},
        {"experts", moe ? recipe.moe.experts : 0},
        {"d_ff_expert", moe ? recipe.moe.d_ff_expert : 0},
        {"shared_experts", moe ? recipe.moe.shared_experts : 0},
        {"end_of_document_id", end_of_document_id}};
    return {
        {"moelab.model", shape.dump()},
        {"moelab.output_head", m.tie_embeddings ? "embedding" : "head"},
        {"moelab.orientation",
         "w_in and w_out of dense FFNs and expert banks are (in, out): y = x w; every other matrix "
         "(embedding, head, attention projections, router weights) is (out, in): y = x w^T"},
        {"moelab.swiglu",
         "w_in (d_model, 2 d_ff) = [gate | up] along its last dimension; "
         "y = (silu(x w_in[:, :d_ff]) * (x w_in[:, d_ff:])) w_out"}};
}

nlohmann::json plugin_records(const ResolvedRecipe& resolved) {
    nlohmann::json records = nlohmann::json::array();
    auto add = [&](const std::string& section, const std::string& component,
                   const PluginInfo& plugin) {
        records.push_back({{"section", section},
                           {"component", component},
                           {"plugin", plugin.name},
                           {"version", plugin.version},
                           {"file", plugin.file.string()},
                           {"sdk_version", plugin.sdk_version},
                           {"fingerprint", plugin.build_fingerprint}});
    };
    add("tokenizer", resolved.tokenizer->component.name, *resolved.tokenizer->plugin);
    add("attention", resolved.attention->component.name, *resolved.attention->plugin);
    if (resolved.router) add("router", resolved.router->component.name, *resolved.router->plugin);
    return records;
}

}  // namespace moelab::core
