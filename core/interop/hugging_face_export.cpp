#include "core/interop/hugging_face_export.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/config/diagnostics.h"
#include "core/moe/standard_block.h"
#include "core/plugin/plugin_error.h"
#include "core/plugin/required_feature.h"
#include "core/system/atomic_file.h"
#include "core/system/remove_tree.h"
#include "core/system/tensor_text.h"
#include "core/train/model_state.h"
#include "moelab/sdk/batch_reduction.h"
#include "moelab/sdk/capability.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/no_autocast.h"
#include "moelab/sdk/rotary_attention.h"
#include "moelab/sdk/router.h"
#include "moelab/sdk/selection_control.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

bool is_moe(const Recipe& recipe) { return recipe.model.ffn == FfnKind::kMoe; }

[[noreturn]] void no_equivalent(const Recipe& recipe, const std::string& key,
                                const std::string& what) {
    throw ConfigError(ConfigIssue{
        recipe.location_of(key), key,
        what + ": Hugging Face's Llama and Mixtral have no equivalent, so the model cannot be "
               "exported to their layout"});
}

// What the host itself decides about the model: Mixtral has a routed FFN in every layer, no
// shared experts, and never drops a token.
void check_host_layout(const Recipe& recipe) {
    if (!is_moe(recipe)) return;
    const MoeOptions& moe = recipe.moe;
    if (recipe.model.layers > 1 && (moe.first_layer != 0 || moe.interval != 1)) {
        no_equivalent(recipe, moe.first_layer != 0 ? "moe.first_layer" : "moe.interval",
                      fmt::format("MoE layers from layer {} every {} leave dense layers between "
                                  "them (Mixtral routes in every layer)",
                                  moe.first_layer, moe.interval));
    }
    if (moe.shared_experts > 0) {
        no_equivalent(recipe, "moe.shared_experts",
                      fmt::format("{} shared expert{} beside the routed ones", moe.shared_experts,
                                  moe.shared_experts == 1 ? "" : "s"));
    }
    if (moe.capacity_factor > 0) {
        no_equivalent(recipe, "moe.capacity_factor",
                      fmt::format("capacity_factor = {} drops tokens beyond an expert's capacity, "
                                  "in evaluation too (Mixtral never drops one)",
                                  moe.capacity_factor));
    }
}

// The model's tensors by name, each taken once by the mapping; whatever is left has no place in
// the layout.
class TensorTable {
  public:
    explicit TensorTable(const LanguageModel& model) {
        for (const NamedTensor& t : model_tensors(model)) {
            if (!no_longer_saved(t.name)) {
                left_[t.name] = t.tensor.detach().to(at::kCPU, at::kFloat).contiguous();
            }
        }
    }

    at::Tensor take(const std::string& name) {
        auto it = left_.find(name);
        if (it == left_.end()) {
            throw std::logic_error(
                fmt::format("the model has no tensor '{}' where its layout has one", name));
        }
        at::Tensor tensor = it->second;
        left_.erase(it);
        return tensor;
    }

    const std::map<std::string, at::Tensor>& left() const { return left_; }

  private:
    std::map<std::string, at::Tensor> left_;
};

std::shared_ptr<torch::nn::Module> module_at(const LanguageModel& model, const std::string& path) {
    const auto modules = model.named_modules();
    const auto* found = modules.find(path);
    return found != nullptr ? *found : nullptr;
}

struct Rotary {
    double theta = 0;
    double factor = 1;
};

// A value that is an integer up to rounding in the fit, as that integer (rope_theta = 10000, not
// 9999.999999999998).
double tidy(double x) {
    const double r = std::round(x);
    return std::abs(x - r) <= 1e-9 * std::abs(x) ? r : x;
}

// Note [Checking export claims]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A listed feature is a promise, and the export is only as good as the promise, so the host
// checks it on the built model instead of trusting it:
// - attention: every layer is sdk::RotaryAttention with a single row of frequencies, and those are
//   base^(-2i/head_dim) / factor to 1e-9 relative for one base and one factor (the fit reads the
//   base off the first two and checks every other), the same in every layer;
// - router: every MoE layer has the host's standard block with a router whose only tensor is
//   `weight` (experts, d_model), and on a probe of random hidden states it selects and weights
//   exactly as Mixtral would with that weight (same experts, weights to 1e-5).
// A component that fails says so as a PluginError naming the plugin and layer.
Rotary llama_rotary(const ResolvedRecipe& resolved, const LanguageModel& model) {
    const PluginInfo& plugin = *resolved.attention->plugin;
    const std::string claim =
        fmt::format("{}: lists {}, but", describe_plugin(plugin), sdk::feature::kHfLlamaAttention);
    std::optional<Rotary> first;
    for (std::int64_t l = 0; l < resolved.recipe.model.layers; ++l) {
        const auto module = module_at(model, fmt::format("layer{}.attention", l));
        const auto* attention = dynamic_cast<const sdk::RotaryAttention*>(module.get());
        if (attention == nullptr) {
            throw PluginError(
                fmt::format("{} the attention of layer {} is not sdk::RotaryAttention", claim, l));
        }
        const at::Tensor frequencies = attention->inv_freq();  // (rows, head_dim / 2) float64
        if (frequencies.size(0) != 1) {
            throw PluginError(fmt::format(
                "{} the attention of layer {} rotates with {} sets of frequencies (one per "
                "key/value head); Llama rotates every head with the same set",
                claim, l, frequencies.size(0)));
        }
        const std::int64_t half = frequencies.size(1);
        if (half < 2) {
            no_equivalent(resolved.recipe, "model.heads",
                          "a head dimension of 2 has one rotary frequency, from which the base "
                          "cannot be told");
        }
        const auto f = frequencies.accessor<double, 2>();
        Rotary rotary;
        rotary.factor = 1.0 / f[0][0];
        rotary.theta = std::pow(f[0][0] / f[0][1], static_cast<double>(half));
        for (std::int64_t i = 0; i < half; ++i) {
            const double expected =
                std::pow(rotary.theta, -static_cast<double>(i) / static_cast<double>(half)) /
                rotary.factor;
            if (!(std::abs(f[0][i] - expected) <= 1e-9 * expected)) {
                throw PluginError(fmt::format(
                    "{} frequency {} of layer {} is {:.17g}, not base^(-2i/head_dim) / factor = "
                    "{:.17g} (base {:.17g}, factor {:.17g} from the first two)",
                    claim, i, l, f[0][i], expected, rotary.theta, rotary.factor));
            }
        }
        rotary = {tidy(rotary.theta), tidy(rotary.factor)};
        if (first && (first->theta != rotary.theta || first->factor != rotary.factor)) {
            throw PluginError(fmt::format(
                "{} layer {} rotates with base {} and factor {}, layer 0 with base {} and factor "
                "{}; Llama has one rotary embedding for every layer",
                claim, l, rotary.theta, rotary.factor, first->theta, first->factor));
        }
        first = rotary;
    }
    return *first;
}

constexpr std::int64_t kProbeTokens = 256;

// "[3, 5]" or "[0.6125, 0.3875]": a short row of a probe for a message.
std::string values_text(const at::Tensor& row) {
    const at::Tensor values = row.to(at::kDouble).contiguous();
    std::vector<std::string> parts;
    for (std::int64_t i = 0; i < values.numel(); ++i) {
        parts.push_back(fmt::format("{:.6g}", values.data_ptr<double>()[i]));
    }
    return fmt::format("[{}]", fmt::join(parts, ", "));
}

// Experts per token of the model's Mixtral routers, after checking them (Note [Checking export
// claims]).
std::int64_t mixtral_experts_per_token(const ResolvedRecipe& resolved, const LanguageModel& model,
                                       std::int64_t vocab_size) {
    const PluginInfo& plugin = *resolved.router->plugin;
    const std::string claim =
        fmt::format("{}: lists {}, but", describe_plugin(plugin), sdk::feature::kHfMixtralGate);
    const Recipe& recipe = resolved.recipe;
    const std::int64_t experts = recipe.moe.experts;
    const std::int64_t d_model = recipe.model.d_model;
    std::optional<std::int64_t> k;
    for (std::int64_t l = 0; l < recipe.model.layers; ++l) {
        const std::string path = fmt::format("layer{}.moe.block.router", l);
        const auto module = module_at(model, path);
        auto* router = dynamic_cast<sdk::Router*>(module.get());
        if (router == nullptr) {
            throw PluginError(fmt::format(
                "{} layer {} has no router in the host's standard block (expected at '{}')", claim,
                l, path));
        }
        std::vector<std::string> names;
        for (const auto& p : router->named_parameters()) names.push_back(p.key());
        for (const auto& b : router->named_buffers()) names.push_back(b.key());
        const auto parameters = router->named_parameters();
        const at::Tensor* weight = parameters.find("weight");
        if (names != std::vector<std::string>{"weight"} || weight == nullptr ||
            weight->sizes() != at::IntArrayRef{experts, d_model}) {
            throw PluginError(fmt::format(
                "{} the router of layer {} holds [{}] (weight {}); a Mixtral gate holds only "
                "'weight' of shape ({}, {})",
                claim, l, fmt::join(names, ", "), weight ? tensor_text(*weight) : "missing",
                experts, d_model));
        }

        at::Generator generator = sdk::make_generator(static_cast<std::uint64_t>(l) + 1);
        const at::Tensor hidden = at::randn({kProbeTokens, d_model}, generator);
        sdk::RouterInput input;
        input.hidden = hidden;
        input.token_ids = at::randint(vocab_size, {kProbeTokens}, generator, at::kLong);
        input.training = false;
        sdk::UnperturbedSelection selection;
        const sdk::WholeBatch whole;
        input.selection = &selection;
        input.batch = &whole;
        at::NoGradGuard no_grad;
        sdk::NoAutocast fp32;
        sdk::RoutingDecision decision =
            call_plugin(plugin, fmt::format("routing a probe of layer {}", l),
                        [&] { return router->route(input); });
        try {
            check_routing_decision(decision, kProbeTokens, experts, {});
        } catch (const sdk::Error& error) {
            throw PluginError(
                fmt::format("{}: routing a probe of layer {} returned a malformed "
                            "decision: {}",
                            describe_plugin(plugin), l, error.what()));
        }
        const std::int64_t slots = decision.expert_indices.size(1);
        if (k && *k != slots) {
            throw PluginError(
                fmt::format("{} layer {} routes each token to {} experts, layer 0 to "
                            "{}; Mixtral routes every layer alike",
                            claim, l, slots, *k));
        }
        k = slots;

        if (!decision.extensions.empty()) {
            throw PluginError(fmt::format(
                "{} its decisions in layer {} carry extensions (such as a per-token output "
                "scale), which Mixtral has no place for",
                claim, l));
        }

        // Mixtral's routing, written out: softmax over all experts, the k largest, divided by
        // their sum. Compared by probability rather than by expert id, so that experts whose
        // probabilities tie up to rounding may be chosen either way: the chosen experts must be
        // distinct, their probabilities the k largest (to 1e-6), and each weight its probability
        // over the chosen ones' sum (to 1e-5).
        const at::Tensor probs =
            at::softmax(at::matmul(hidden.to(at::kDouble), weight->to(at::kDouble).t()), -1);
        const at::Tensor top = std::get<0>(probs.topk(slots, -1));  // largest first
        const at::Tensor got_index = decision.expert_indices.to(at::kLong);
        const at::Tensor got_weight = decision.combine_weights.to(at::kDouble);
        const at::Tensor sorted_index = std::get<0>(got_index.sort(-1));
        const at::Tensor repeated = slots > 1 ? sorted_index.narrow(1, 1, slots - 1)
                                                    .eq(sorted_index.narrow(1, 0, slots - 1))
                                                    .any(-1)
                                              : at::zeros({kProbeTokens}, at::kBool);
        const at::Tensor empty = got_index.lt(0).any(-1);
        const at::Tensor picked = probs.gather(1, got_index.clamp_min(0));
        const at::Tensor bad =
            empty.logical_or(repeated)
                .logical_or((std::get<0>(picked.sort(-1, /*descending=*/true)) - top)
                                .abs()
                                .gt(1e-6)
                                .any(-1))
                .logical_or((got_weight - picked / picked.sum(-1, true)).abs().gt(1e-5).any(-1));
        if (bad.any().item<bool>()) {
            const auto [want_weight, want_index] = probs.topk(slots, -1);
            const std::int64_t t = bad.nonzero()[0][0].item<std::int64_t>();
            throw PluginError(fmt::format(
                "{} in layer {} it routes a probe token to experts {} with weights {}, where "
                "Mixtral's routing with the same weight gives experts {} with weights {}",
                claim, l, values_text(got_index[t]), values_text(got_weight[t]),
                values_text(want_index[t]), values_text(want_weight[t] / want_weight[t].sum())));
        }
    }
    return *k;
}

}  // namespace

std::vector<std::string> hugging_face_export_features() {
    return {std::string(sdk::feature::kHfLlamaAttention),
            std::string(sdk::feature::kHfMixtralGate)};
}

void require_hugging_face_features(const ResolvedRecipe& resolved) {
    check_host_layout(resolved.recipe);
    constexpr char kWhy[] =
        "exporting to Hugging Face's layout needs each component's equivalent there";
    require_feature(resolved, ComponentKind::kAttention, sdk::feature::kHfLlamaAttention, kWhy);
    if (is_moe(resolved.recipe)) {
        require_feature(resolved, ComponentKind::kRouter, sdk::feature::kHfMixtralGate, kWhy);
    }
}

HuggingFaceModel hugging_face_model(const ResolvedRecipe& resolved, const LanguageModel& model,
                                    const sdk::Tokenizer& tokenizer) {
    const Recipe& recipe = resolved.recipe;
    const ModelOptions& m = recipe.model;
    check_host_layout(recipe);
    const Rotary rotary = llama_rotary(resolved, model);
    const std::int64_t vocab_size = tokenizer.vocab_size();
    const std::int64_t experts_per_token =
        is_moe(recipe) ? mixtral_experts_per_token(resolved, model, vocab_size) : 0;

    TensorTable table(model);
    HuggingFaceModel out;
    auto put = [&](const std::string& name, const at::Tensor& tensor) {
        out.tensors.push_back({name, tensor.contiguous()});
    };
    put("model.embed_tokens.weight", table.take("embedding"));
    for (std::int64_t l = 0; l < m.layers; ++l) {
        const std::string from = fmt::format("layer{}.", l);
        const std::string to = fmt::format("model.layers.{}.", l);
        put(to + "input_layernorm.weight", table.take(from + "attention_norm.weight"));
        // RotaryAttention's projections are (out, in) like torch.nn.Linear, and it rotates
        // halves (coordinate i with i + head_dim / 2) like Llama: no permutation.
        put(to + "self_attn.q_proj.weight", table.take(from + "attention.w_query"));
        put(to + "self_attn.k_proj.weight", table.take(from + "attention.w_key"));
        put(to + "self_attn.v_proj.weight", table.take(from + "attention.w_value"));
        put(to + "self_attn.o_proj.weight", table.take(from + "attention.w_output"));
        if (!is_moe(recipe)) {
            // w_in (d_model, 2 d_ff) = [gate | up], w_out (d_ff, d_model): (in, out), transposed
            // into Linear's (out, in).
            put(to + "post_attention_layernorm.weight", table.take(from + "ffn.norm.weight"));
            const at::Tensor w_in = table.take(from + "ffn.w_in");
            const std::int64_t d_ff = w_in.size(1) / 2;
            put(to + "mlp.gate_proj.weight", w_in.narrow(1, 0, d_ff).t());
            put(to + "mlp.up_proj.weight", w_in.narrow(1, d_ff, d_ff).t());
            put(to + "mlp.down_proj.weight", table.take(from + "ffn.w_out").t());
            continue;
        }
        const std::string block = from + "moe.block.";
        put(to + "post_attention_layernorm.weight", table.take(block + "norm.weight"));
        put(to + "block_sparse_moe.gate.weight", table.take(block + "router.weight"));
        // The bank's stacks: w_in (experts, d_model, 2 d_ff), w_out (experts, d_ff, d_model).
        // Mixtral's w1 is the gate, w3 the up projection, w2 the down projection.
        const at::Tensor w_in = table.take(block + "experts.w_in");
        const at::Tensor w_out = table.take(block + "experts.w_out");
        const std::int64_t d_ff = w_in.size(2) / 2;
        for (std::int64_t e = 0; e < w_in.size(0); ++e) {
            const std::string expert = fmt::format("{}block_sparse_moe.experts.{}.", to, e);
            put(expert + "w1.weight", w_in[e].narrow(1, 0, d_ff).t());
            put(expert + "w2.weight", w_out[e].t());
            put(expert + "w3.weight", w_in[e].narrow(1, d_ff, d_ff).t());
        }
    }
    put("model.norm.weight", table.take("final_norm.weight"));
    if (!m.tie_embeddings) put("lm_head.weight", table.take("head"));
    if (!table.left().empty()) {
        const std::string name = table.left().begin()->first;
        throw PluginError(fmt::format(
            "the model's tensor '{}' ({} in all are left over) has no place in the {} layout", name,
            table.left().size(), is_moe(recipe) ? "Mixtral" : "Llama"));
    }

    const std::int32_t eos = tokenizer.special_tokens().eos;
    const nlohmann::json end_id = eos >= 0 ? nlohmann::json(eos) : nlohmann::json(nullptr);
    nlohmann::json config{
        {"architectures", {is_moe(recipe) ? "MixtralForCausalLM" : "LlamaForCausalLM"}},
        {"model_type", is_moe(recipe) ? "mixtral" : "llama"},
        {"vocab_size", vocab_size},
        {"hidden_size", m.d_model},
        {"intermediate_size", is_moe(recipe) ? recipe.moe.d_ff_expert : m.d_ff},
        {"num_hidden_layers", m.layers},
        {"num_attention_heads", m.heads},
        {"num_key_value_heads", m.kv_heads > 0 ? m.kv_heads : m.heads},
        {"head_dim", m.d_model / m.heads},
        {"hidden_act", "silu"},
        {"max_position_embeddings", recipe.data.seq_len},
        {"rms_norm_eps", m.norm_eps},
        {"rope_theta", rotary.theta},
        {"rope_scaling", rotary.factor == 1.0 ? nlohmann::json(nullptr)
                                              : nlohmann::json{{"rope_type", "linear"},
                                                               {"type", "linear"},
                                                               {"factor", rotary.factor}}},
        {"attention_bias", false},
        {"attention_dropout", 0.0},
        {"tie_word_embeddings", m.tie_embeddings},
        // Documents start after an end-of-document id (moelab generate prompts with it too).
        {"bos_token_id", end_id},
        {"eos_token_id", end_id},
        {"initializer_range", m.init_std},
        {"use_cache", true}};
    if (is_moe(recipe)) {
        config["num_local_experts"] = recipe.moe.experts;
        config["num_experts_per_tok"] = experts_per_token;
        config["output_router_logits"] = false;
        config["router_jitter_noise"] = 0.0;
        config["sliding_window"] = nullptr;
    } else {
        config["mlp_bias"] = false;
        config["pretraining_tp"] = 1;
    }
    out.config = std::move(config);
    return out;
}

namespace {

// tokenizer_config.json: without it, transformers' AutoTokenizer would take the tokenizer class of
// the model type (LlamaTokenizerFast) with its own <s>, </s> and a beginning-of-sequence id to
// prepend, none of which the vocabulary has. The end-of-document token (the added token whose id is
// config.json's eos_token_id) is both the beginning and the end, and nothing is added to a text.
nlohmann::json tokenizer_config(const nlohmann::json& config, const std::string& tokenizer_json) {
    nlohmann::json end_token = nullptr;
    const nlohmann::json tokenizer = nlohmann::json::parse(tokenizer_json, nullptr, false);
    if (tokenizer.is_object() && tokenizer.contains("added_tokens") &&
        tokenizer["added_tokens"].is_array() && config["eos_token_id"].is_number_integer()) {
        for (const nlohmann::json& token : tokenizer["added_tokens"]) {
            if (token.value("id", -1) == config["eos_token_id"].get<int>()) {
                end_token = token.value("content", "");
            }
        }
    }
    return {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"model_max_length", config["max_position_embeddings"]},
            {"bos_token", end_token},
            {"eos_token", end_token},
            {"add_bos_token", false},
            {"add_eos_token", false},
            {"clean_up_tokenization_spaces", false}};
}

std::string dtype_name(at::ScalarType dtype) {
    return dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
}

}  // namespace

HuggingFaceFiles write_hugging_face_model(const HuggingFaceModel& model,
                                          const std::string& tokenizer_json,
                                          const fs::path& directory, std::int64_t max_shard_bytes,
                                          at::ScalarType dtype) {
    // Shards in tensor order, each up to max_shard_bytes (a larger tensor gets one to itself).
    std::vector<std::vector<NamedTensor>> shards(1);
    std::int64_t shard_bytes = 0, total = 0;
    for (const NamedTensor& t : model.tensors) {
        const at::Tensor tensor = t.tensor.to(dtype).contiguous();
        const std::int64_t bytes =
            tensor.numel() * static_cast<std::int64_t>(tensor.element_size());
        if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
            shards.emplace_back();
            shard_bytes = 0;
        }
        shards.back().push_back({t.name, tensor});
        shard_bytes += bytes;
        total += bytes;
    }

    // "out/" names the directory out: the temporary sibling must not land inside it.
    fs::path target = fs::absolute(directory).lexically_normal();
    if (target.filename().empty()) target = target.parent_path();
    const fs::path parent = target.parent_path();
    const fs::path staging =
        parent / fmt::format(".tmp-{}-{}", target.filename().string(), ::getpid());
    HuggingFaceFiles files;
    files.tensor_bytes = total;
    try {
        remove_tree(staging);
        fs::create_directories(staging);
        const std::map<std::string, std::string> metadata{{"format", "pt"}};
        if (shards.size() == 1) {
            files.files.push_back("model.safetensors");
            write_safetensors(staging / files.files.back(), shards[0], metadata);
            sync_path(staging / files.files.back());
        } else {
            nlohmann::json weight_map = nlohmann::json::object();
            for (std::size_t i = 0; i < shards.size(); ++i) {
                const std::string name =
                    fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
                files.files.push_back(name);
                write_safetensors(staging / name, shards[i], metadata);
                sync_path(staging / name);
                for (const NamedTensor& t : shards[i]) weight_map[t.name] = name;
            }
            const nlohmann::json index{{"metadata", {{"total_size", total}}},
                                       {"weight_map", weight_map}};
            files.files.push_back("model.safetensors.index.json");
            write_file_atomically(staging / files.files.back(), index.dump(2) + "\n");
        }
        nlohmann::json config = model.config;
        config["torch_dtype"] = dtype_name(dtype);
        files.files.push_back("config.json");
        write_file_atomically(staging / "config.json", config.dump(2) + "\n");
        files.files.push_back("tokenizer.json");
        write_file_atomically(staging / "tokenizer.json", tokenizer_json);
        files.files.push_back("tokenizer_config.json");
        write_file_atomically(staging / "tokenizer_config.json",
                              tokenizer_config(config, tokenizer_json).dump(2) + "\n");
        sync_path(staging);
        std::error_code error;
        fs::remove(target, error);  // an empty directory; rename() would refuse another
        fs::rename(staging, target);
        sync_path(parent);
    } catch (...) {
        remove_tree(staging);
        throw;
    }
    return files;
}

}  // namespace moelab::core
