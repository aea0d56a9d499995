// `moelab new KIND NAME`: a complete out-of-tree plugin project that builds against the installed
// SDK, loads, passes `moelab plugins test` and trains with the recipe it comes with.

#include <cctype>
#include <filesystem>
#include <map>
#include <string>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/printable.h"
#include "moelab/sdk/version.h"

namespace moelab::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCMakeLists =
    R"tmpl(# {{NAME}}: a moelab plugin, built out of tree against the installed SDK.
#   cmake -S . -B build -DCMAKE_PREFIX_PATH="<SDK prefix>;<LibTorch prefix>"
#   cmake --build build
cmake_minimum_required(VERSION 3.25)
project({{IDENT}} LANGUAGES CXX)

find_package(moelabSDK {{SDK_MAJOR}} REQUIRED)

moelab_add_plugin({{NAME}} SOURCES {{IDENT}}.cpp)
)tmpl";

constexpr const char* kRouterSource =
    R"tmpl(// {{NAME}}: a top-k softmax router written with moelab's plugin SDK ({{SDK_VERSION}}). It is
// complete: it trains, it is checked by `moelab plugins test`, and it honours every routing
// perturbation of `moelab compare`. Change route() to make it yours.

#include <tuple>

#include "moelab/sdk/init.h"
#include "moelab/sdk/plugin.h"
#include "moelab/sdk/routing_ops.h"

namespace {{IDENT}} {

namespace sdk = moelab::sdk;

class Router : public sdk::Router {
public:
    Router(const sdk::MoeLayerContext& context, const sdk::Params& params)
        : k_(params.get_int("k")),
          balance_coef_(params.get_float("balance_coef")),
          expert_count_(context.model.experts) {
        // Randomness from the layer's seed keeps runs reproducible (the kit checks it).
        at::Generator generator = sdk::make_generator(context.seed);
        weight_ = register_parameter(
            "weight",
            sdk::normal_weight({expert_count_, context.model.d_model}, context.init_std, generator));
    }

    sdk::RoutingDecision route(const sdk::RouterInput& input) override {
        // input.hidden: (tokens, d_model) float32, autocast off (Note [fp32 routing]).
        sdk::RoutingDecision decision;
        decision.probs = input.hidden.matmul(weight_.t()).softmax(-1);  // clean, for losses
        // Note [Selection contract]: hand the scores to the host, choose from what comes back.
        // Outside a robustness evaluation they come back unchanged.
        const at::Tensor scores =
            input.selection->selectable_scores(decision.probs, sdk::ScoreKind::kSoftmax, 0, {});
        // Top-k; experts with score 0 are not selectable; renormalised only for k > 1.
        std::tie(decision.expert_indices, decision.combine_weights) =
            sdk::select_top_k(scores, k_, /*renormalize=*/true);
        if (balance_coef_ > 0) {
            decision.aux_losses.emplace_back(
                "balance", balance_coef_ * sdk::switch_balance_loss(
                                               decision.probs, decision.expert_indices,
                                               expert_count_, input.batch));
        }
        return decision;
    }

private:
    std::int64_t k_;
    double balance_coef_;
    std::int64_t expert_count_;
    at::Tensor weight_;  // (experts, d_model)
};

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    return sdk::experts_fit(params.get_int("k"), "k", query);
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "{{NAME}}";
    component.summary = "Top-k softmax router (from `moelab new router`)";
    component.params.add_int("k", 2, "Experts per token").between(1, 4096);
    component.params.add_float("balance_coef", 0.01, "Coefficient of the Switch balance loss")
        .at_least(0);
    component.supports = supports;
    // The perturbations this router honours: all of them, through the selection control.
    component.features = sdk::all_selection_perturbations();
    // The balance loss sees the whole batch (input.batch) and the experts are used through mix()
    // only: the router can run split over processes (docs/parallel.md).
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_router = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<Router>(context, params);
    };
    registrar.add_router(std::move(component));
}

}  // namespace {{IDENT}}

MOELAB_PLUGIN("{{NAME}}", "0.1.0", "{{NAME}} router", {{IDENT}}::register_components)
)tmpl";

constexpr const char* kBlockSource =
    R"tmpl(// {{NAME}}: an MoE block written with moelab's plugin SDK ({{SDK_VERSION}}). A block owns the
// whole FFN sub-layer, residual included: here RMSNorm -> top-k softmax router -> the host's
// expert bank -> residual, the same function as the standard block, as a starting point for
// blocks that route several times or gate from expert outputs. It trains, passes `moelab plugins
// test` and honours every routing perturbation of `moelab compare`.

#include <tuple>

#include "moelab/sdk/init.h"
#include "moelab/sdk/no_autocast.h"
#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rms_norm.h"
#include "moelab/sdk/routing_ops.h"

namespace {{IDENT}} {

namespace sdk = moelab::sdk;

class Block : public sdk::MoeBlock {
public:
    Block(const sdk::MoeLayerContext& context, const sdk::Params& params)
        : k_(params.get_int("k")),
          balance_coef_(params.get_float("balance_coef")),
          expert_count_(context.model.experts) {
        const std::int64_t d_model = context.model.d_model;
        norm_ = register_module("norm",
                                std::make_shared<sdk::RmsNorm>(d_model, context.model.norm_eps));
        // Experts live in the host: its kernels, dispatch and statistics. Register the bank so
        // that it is trained and saved.
        experts_ = register_module(
            "experts", context.host->make_expert_bank(
                           {"experts", expert_count_, d_model, context.model.d_ff_expert, -1.0}));
        at::Generator generator = sdk::make_generator(context.seed);
        router_ = register_parameter(
            "router", sdk::normal_weight({expert_count_, d_model}, context.init_std, generator));
    }

    sdk::BlockOutput forward(const sdk::BlockInput& input) override {
        const at::Tensor x = norm_->forward(input.hidden);  // the model's compute dtype
        sdk::RoutingDecision decision;
        {
            sdk::NoAutocast fp32_routing;  // Note [fp32 routing]
            decision.probs = x.to(at::kFloat).matmul(router_.t()).softmax(-1);
            // Note [Selection contract]: this block's only router is router 0.
            const at::Tensor scores = input.selection->selectable_scores(
                decision.probs, sdk::ScoreKind::kSoftmax, 0, {});
            std::tie(decision.expert_indices, decision.combine_weights) =
                sdk::select_top_k(scores, k_, /*renormalize=*/true);
        }
        const at::Tensor mixed = experts_->mix(x, decision.expert_indices, decision.combine_weights);
        sdk::BlockOutput output;
        output.hidden = input.hidden + mixed.to(input.hidden.scalar_type());
        if (balance_coef_ > 0) {
            output.aux_losses.emplace_back(
                "balance", balance_coef_ * sdk::switch_balance_loss(
                                               decision.probs, decision.expert_indices,
                                               expert_count_, input.batch));
        }
        output.routing.push_back(std::move(decision));
        return output;
    }

private:
    std::int64_t k_;
    double balance_coef_;
    std::int64_t expert_count_;
    std::shared_ptr<sdk::RmsNorm> norm_;
    std::shared_ptr<sdk::ExpertBank> experts_;
    at::Tensor router_;  // (experts, d_model)
};

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params& params) {
    return sdk::experts_fit(params.get_int("k"), "k", query);
}

void register_components(sdk::Registrar& registrar) {
    sdk::RouterComponent component;
    component.name = "{{NAME}}";
    component.summary = "Top-k MoE block (from `moelab new block`)";
    component.params.add_int("k", 2, "Experts per token").between(1, 4096);
    component.params.add_float("balance_coef", 0.01, "Coefficient of the Switch balance loss")
        .at_least(0);
    component.supports = supports;
    component.features = sdk::all_selection_perturbations();
    component.features.emplace_back(sdk::feature::kSplitBatch);
    component.features.emplace_back(sdk::feature::kShardedExperts);
    component.make_block = [](const sdk::MoeLayerContext& context, const sdk::Params& params) {
        return std::make_shared<Block>(context, params);
    };
    registrar.add_router(std::move(component));
}

}  // namespace {{IDENT}}

MOELAB_PLUGIN("{{NAME}}", "0.1.0", "{{NAME}} MoE block", {{IDENT}}::register_components)
)tmpl";

constexpr const char* kAttentionSource =
    R"tmpl(// {{NAME}}: causal multi-head self-attention with rotary position embeddings, written with
// moelab's plugin SDK ({{SDK_VERSION}}). It trains and passes `moelab plugins test`. It does not
// decode incrementally (no kv_cache feature; make_cache throws): return an sdk::KeyValueCache
// from make_cache, append to it in forward and list sdk::feature::kKvCache for decoding
// (sdk/rotary_attention.h shows how). A plugin that only changes the rotary frequencies can
// return an sdk::RotaryAttention instead, as the built-in rope and harpe do.

#include <cmath>

#include "moelab/sdk/causal_mask.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rotary.h"

namespace {{IDENT}} {

namespace sdk = moelab::sdk;

class Attention : public sdk::Attention {
public:
    Attention(const sdk::AttentionContext& context, const sdk::Params& params)
        : heads_(context.model.heads), head_dim_(context.model.head_dim) {
        const std::int64_t d_model = context.model.d_model;
        // Randomness from the layer's seed keeps runs reproducible (the kit checks it).
        at::Generator generator = sdk::make_generator(context.seed);
        const double std = context.init_std;
        w_qkv_ = register_parameter(
            "w_qkv", sdk::normal_weight({3 * heads_ * head_dim_, d_model}, std, generator));
        // Matrices writing into the residual stream start smaller (Note [Initialisation]).
        w_output_ = register_parameter(
            "w_output",
            sdk::normal_weight({d_model, heads_ * head_dim_},
                               sdk::residual_init_std(std, context.model.layers), generator));
        // A buffer, not a plain member: saved in checkpoints and moved with the module.
        inv_freq_ = register_buffer(
            "inv_freq", sdk::rope_inv_freq(params.get_float("base"), head_dim_).unsqueeze(0));
    }

    at::Tensor forward(const sdk::AttentionInput& input) override {
        if (input.cache != nullptr) throw sdk::Error("{{NAME}} does not decode with a cache");
        const at::Tensor& x = input.hidden;  // (batch, seq, d_model), normalised by the host
        const std::int64_t batch = x.size(0), seq = x.size(1);
        const at::Tensor qkv =
            at::linear(x, w_qkv_).view({batch, seq, 3, heads_, head_dim_}).permute({2, 0, 3, 1, 4});
        const auto [cos, sin] = sdk::rope_tables(inv_freq_, input.positions);
        const at::Tensor query = sdk::apply_rope(qkv[0], cos, sin);  // (batch, heads, seq, dim)
        const at::Tensor key = sdk::apply_rope(qkv[1], cos, sin);
        // Causal by contract: position p attends to positions <= p of its row, never to padding
        // (negative positions). Softmax in fp32.
        const at::Tensor scores = at::matmul(query, key.transpose(-2, -1)).to(at::kFloat) /
                                  std::sqrt(static_cast<double>(head_dim_));
        const at::Tensor allowed = sdk::causal_mask(input.positions, input.positions);
        const at::Tensor probs = sdk::masked_softmax(scores, allowed).to(qkv.scalar_type());
        const at::Tensor mixed = at::matmul(probs, qkv[2])
                                     .transpose(1, 2)
                                     .reshape({batch, seq, heads_ * head_dim_});
        return at::linear(mixed, w_output_);
    }

    std::unique_ptr<sdk::AttentionCache> make_cache(std::int64_t, std::int64_t) override {
        throw sdk::Error("{{NAME}} does not decode incrementally (no kv_cache feature)");
    }

private:
    std::int64_t heads_;
    std::int64_t head_dim_;
    at::Tensor w_qkv_;     // (3 heads head_dim, d_model): query, key, value
    at::Tensor w_output_;  // (d_model, heads head_dim)
    at::Tensor inv_freq_;  // (1, head_dim / 2)
};

sdk::Support supports(const sdk::CapabilityQuery& query, const sdk::Params&) {
    if (query.model.kv_heads != query.model.heads) {
        return sdk::Support::no("grouped-query attention is not implemented: set [model] "
                                "kv_heads = 0");
    }
    if (query.model.head_dim % 2 != 0) {
        return sdk::Support::no("rotary embeddings need an even head dimension");
    }
    return sdk::Support::yes();
}

void register_components(sdk::Registrar& registrar) {
    sdk::AttentionComponent component;
    component.name = "{{NAME}}";
    component.summary = "Causal multi-head attention with RoPE (from `moelab new attention`)";
    component.params.add_float("base", 10000.0, "RoPE base: theta_i = base^(-2i/head_dim)")
        .at_least(1.0);
    component.supports = supports;
    component.make_attention = [](const sdk::AttentionContext& context,
                                  const sdk::Params& params) {
        return std::make_shared<Attention>(context, params);
    };
    registrar.add_attention(std::move(component));
}

}  // namespace {{IDENT}}

MOELAB_PLUGIN("{{NAME}}", "0.1.0", "{{NAME}} attention", {{IDENT}}::register_components)
)tmpl";

constexpr const char* kTokenizerSource =
    R"tmpl(// {{NAME}}: a word-level tokenizer with byte fallback, written with moelab's plugin SDK
// ({{SDK_VERSION}}). Ids 0-255 are the bytes, 256 is the end-of-document token, and the rest are
// the most frequent words of the training split (ASCII letters, with their leading space). A word
// of the vocabulary is one id; anything else is spelled in bytes, so every byte string round-trips
// (`moelab plugins test` checks it). Replace train() and encode() with your algorithm.

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "moelab/sdk/plugin.h"

namespace {{IDENT}} {

namespace sdk = moelab::sdk;

constexpr std::int32_t kEos = 256;
constexpr std::int32_t kFirstWord = 257;

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// The word starting at `at`: an optional space, then ASCII letters; empty when there is none.
std::string_view word_at(std::string_view text, std::size_t at) {
    std::size_t end = at + (text[at] == ' ' ? 1 : 0);
    const std::size_t letters = end;
    while (end < text.size() && is_letter(text[end])) ++end;
    return end == letters ? std::string_view() : text.substr(at, end - at);
}

class WordTokenizer : public sdk::Tokenizer {
public:
    explicit WordTokenizer(std::vector<std::string> words) : words_(std::move(words)) {
        for (std::size_t i = 0; i < words_.size(); ++i) {
            ids_.emplace(words_[i], kFirstWord + static_cast<std::int32_t>(i));
        }
    }

    std::int64_t vocab_size() const override {
        return kFirstWord + static_cast<std::int64_t>(words_.size());
    }
    sdk::SpecialTokens special_tokens() const override { return {kEos, -1, -1}; }

    void encode(std::string_view text, std::vector<std::int32_t>& out) const override {
        for (std::size_t at = 0; at < text.size();) {
            const std::string_view word = word_at(text, at);
            if (!word.empty()) {
                if (auto it = ids_.find(std::string(word)); it != ids_.end()) {
                    out.push_back(it->second);
                    at += word.size();
                    continue;
                }
            }
            const std::size_t bytes = word.empty() ? 1 : word.size();
            for (std::size_t i = 0; i < bytes; ++i) {
                out.push_back(static_cast<unsigned char>(text[at + i]));
            }
            at += bytes;
        }
    }

    std::string decode(std::span<const std::int32_t> ids) const override {
        std::string text;
        for (std::int32_t id : ids) {
            if (id >= 0 && id < 256) {
                text += static_cast<char>(id);
            } else if (id >= kFirstWord && id < vocab_size()) {
                text += words_[id - kFirstWord];
            } else if (id != kEos) {
                throw sdk::Error("{{NAME}}: id " + std::to_string(id) + " is outside [0, " +
                                 std::to_string(vocab_size()) + ")");
            }
        }
        return text;
    }

    // JSON with the component name, so `moelab tokenizer` commands know who loads the file.
    // Words are ASCII letters and spaces: nothing to escape.
    std::string serialize() const override {
        std::string out = "{\"tokenizer\": \"{{NAME}}\", \"words\": [";
        for (std::size_t i = 0; i < words_.size(); ++i) {
            out += (i ? ", \"" : "\"") + words_[i] + "\"";
        }
        return out + "]}\n";
    }

    std::vector<sdk::TokenizerFact> facts() const override {
        return {{"algorithm", "whole words + byte fallback"},
                {"words", std::to_string(words_.size())}};
    }

    static std::vector<std::string> parse(std::string_view text) {
        const std::size_t list = text.find("\"words\": [");
        if (list == std::string_view::npos) {
            throw sdk::Error("{{NAME}}: not a {{NAME}} tokenizer file (no \"words\" list)");
        }
        std::vector<std::string> words;
        std::size_t at = list + 10;
        while (true) {
            const std::size_t open = text.find_first_of("\"]", at);
            if (open == std::string_view::npos) throw sdk::Error("{{NAME}}: unterminated list");
            if (text[open] == ']') break;
            const std::size_t close = text.find('"', open + 1);
            if (close == std::string_view::npos) throw sdk::Error("{{NAME}}: unterminated word");
            words.emplace_back(text.substr(open + 1, close - open - 1));
            at = close + 1;
        }
        return words;
    }

private:
    std::vector<std::string> words_;
    std::unordered_map<std::string, std::int32_t> ids_;
};

// The vocab_size - 257 most frequent words, ties broken alphabetically (deterministic).
std::shared_ptr<sdk::Tokenizer> train(const sdk::TokenizerTrainingData& data,
                                      const sdk::Params& params) {
    std::map<std::string, std::int64_t> counts;
    for (const std::string& file : data.files) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw sdk::Error("{{NAME}}: cannot read " + file);
        const std::string text((std::istreambuf_iterator<char>(in)), {});
        for (std::size_t at = 0; at < text.size();) {
            const std::string_view word = word_at(text, at);
            if (word.size() > 1) ++counts[std::string(word)];
            at += std::max<std::size_t>(word.size(), 1);
        }
    }
    std::vector<std::pair<std::string, std::int64_t>> ranked(counts.begin(), counts.end());
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    const auto wanted = static_cast<std::size_t>(params.get_int("vocab_size") - kFirstWord);
    std::vector<std::string> words;
    for (std::size_t i = 0; i < ranked.size() && i < wanted; ++i) {
        if (ranked[i].second >= 2) words.push_back(ranked[i].first);
    }
    return std::make_shared<WordTokenizer>(std::move(words));
}

void register_components(sdk::Registrar& registrar) {
    sdk::TokenizerComponent component;
    component.name = "{{NAME}}";
    component.summary = "Whole-word tokenizer with byte fallback ({{NAME}})";
    component.params.add_int("vocab_size", 1024, "Bytes, end of document and the frequent words")
        .between(kFirstWord + 1, 1 << 20);
    component.train = train;
    component.load = [](std::string_view serialized, const sdk::Params&) {
        return std::make_shared<WordTokenizer>(WordTokenizer::parse(serialized));
    };
    registrar.add_tokenizer(std::move(component));
}

}  // namespace {{IDENT}}

MOELAB_PLUGIN("{{NAME}}", "0.1.0", "{{NAME}} tokenizer", {{IDENT}}::register_components)
)tmpl";

constexpr const char* kTokenizerRecipe =
    R"tmpl(# Trains the quickstart model (recipes/quickstart.toml of moelab) with the {{NAME}} tokenizer.
# From the moelab checkout, after building this project:
#   build/bin/moelab run {{DIR}}/recipe.toml
extends = "{{MOELAB_ROOT}}/recipes/quickstart.toml"
name = "{{NAME}}"
description = "The quickstart model with the {{NAME}} tokenizer"

[plugins]
search_path = ["build"]  # relative to this file: where cmake puts the plugin library

[tokenizer]
plugin = "{{NAME}}"
vocab_size = 1024
)tmpl";

constexpr const char* kAttentionRecipe =
    R"tmpl(# Trains the quickstart model (recipes/quickstart.toml of moelab) with the {{NAME}} attention.
# From the moelab checkout, after building this project:
#   build/bin/moelab run {{DIR}}/recipe.toml
extends = "{{MOELAB_ROOT}}/recipes/quickstart.toml"
name = "{{NAME}}"
description = "The quickstart model with the {{NAME}} attention"

[plugins]
search_path = ["build"]  # relative to this file: where cmake puts the plugin library

[attention]
plugin = "{{NAME}}"
base = 10000.0
)tmpl";

constexpr const char* kRecipe =
    R"tmpl(# Trains the quickstart model (recipes/quickstart.toml of moelab) with the {{NAME}} {{KIND}}.
# From the moelab checkout, after building this project:
#   build/bin/moelab run {{DIR}}/recipe.toml
extends = "{{MOELAB_ROOT}}/recipes/quickstart.toml"
name = "{{NAME}}"
description = "The quickstart model with the {{NAME}} {{KIND}}"

[plugins]
search_path = ["build"]  # relative to this file: where cmake puts the plugin library

[router]
plugin = "{{NAME}}"
k = 2
balance_coef = 0.01
)tmpl";

constexpr const char* kReadme = R"tmpl(# {{NAME}}

A moelab {{KIND}} plugin, made by `moelab new {{KIND}} {{NAME}}`. Everything here works as it is;
change `{{IDENT}}.cpp` to make it yours.

```sh
# 1. Build against the installed SDK (moelab's README: "Installing the SDK")
cmake -S . -B build -DCMAKE_PREFIX_PATH="<SDK prefix>;<LibTorch prefix>"
cmake --build build

# 2. Check it: {{CHECKS}}
MOELAB_PLUGIN_PATH=$PWD/build <moelab>/build/bin/moelab plugins test {{NAME}}

# 3. Train the quickstart model with it (from the moelab checkout, which holds data/brown)
build/bin/moelab run {{DIR}}/recipe.toml
```

{{NOTES}} The SDK: `sdk/README.md` of moelab; the tutorial: `docs/writing-a-router.md`.
)tmpl";

// What `moelab new` can make: the source, the recipe and what the README says about it.
struct PluginTemplate {
    const char* kind;
    const char* source;
    const char* recipe;
    const char* checks;  // what `moelab plugins test` checks, for the README
    const char* notes;
};

constexpr const char* kRouterChecks =
    "decision contract, gradients (also at k = 1), determinism, checkpoint round trip,\n"
    "#    every routing perturbation it lists, throughput";
constexpr const char* kRouterNotes =
    "The router chooses from the scores the host hands back "
    "(`input.selection->selectable_scores`):\n"
    "that one call is what lets `moelab compare` measure its robustness (disable the top experts,\n"
    "logit noise, expert dropout, random routing, forced balance). Keep it when you change the\n"
    "selection, and list in `component.features` only the perturbations you honour; for the "
    "others\n"
    "the comparison says n/a.";

constexpr PluginTemplate kTemplates[] = {
    {"router", kRouterSource, kRecipe, kRouterChecks, kRouterNotes},
    {"block", kBlockSource, kRecipe, kRouterChecks, kRouterNotes},
    {"attention", kAttentionSource, kAttentionRecipe,
     "output contract, causality, gradients, determinism, checkpoint round trip,\n"
     "#    cache equals recomputation (it lists kv_cache), throughput",
     "Attention is causal by contract, by positions: `input.positions` is (batch, seq), negative\n"
     "for padding slots; `sdk::causal_mask` and `sdk::masked_softmax` build the right mask. With\n"
     "`kv_cache` in `component.features` the kit checks that decoding token by token with the\n"
     "cache equals recomputing the sequence, also for prompts of different lengths decoded\n"
     "together."},
    {"tokenizer", kTokenizerSource, kTokenizerRecipe,
     "ids in range, lossless round trip (training and unseen text, multi-byte UTF-8,\n"
     "#    whitespace, control characters, bytes that are not UTF-8), serialize -> load, "
     "determinism,\n"
     "#    concurrent calls, compression and throughput",
     "`decode(encode(text)) == text` for every UTF-8 text is the contract (for every byte string, "
     "if\n"
     "the tokenizer is byte-level); `serialize()` must rebuild an identical tokenizer through "
     "`load`,\n"
     "since the host keys its token cache by that text. `moelab tokenizer "
     "train|encode|decode|stats`\n"
     "work with it as with the built-in ones."},
};

std::string fill(std::string text, const std::map<std::string, std::string>& values) {
    for (const auto& [key, value] : values) {
        const std::string token = "{{" + key + "}}";
        for (auto at = text.find(token); at != std::string::npos; at = text.find(token, at)) {
            text.replace(at, token.size(), value);
            at += value.size();
        }
    }
    return text;
}

}  // namespace

int new_plugin(const NewArgs& args) {
    const PluginTemplate* kind = nullptr;
    for (const PluginTemplate& candidate : kTemplates) {
        if (args.kind == candidate.kind) kind = &candidate;
    }
    if (kind == nullptr) {
        throw UsageError(
            fmt::format("moelab new: '{}' is not a kind it can make; expected router, block, "
                        "attention or tokenizer",
                        core::printable(args.kind)));
    }
    const std::string& name = args.name;
    const bool valid_name =
        !name.empty() && name.size() <= 64 && std::isalpha(static_cast<unsigned char>(name[0])) &&
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
    if (!valid_name) {
        throw UsageError(
            fmt::format("moelab new: the name must be lower-case letters, digits and "
                        "'-', starting with a letter (it becomes the component name "
                        "and the library moelab-plugin-NAME.so), got '{}'",
                        name));
    }
    std::string ident = name;
    for (char& c : ident) c = c == '-' ? '_' : c;
    const fs::path dir = fs::path(args.dir.empty() ? "." : args.dir) / name;
    std::error_code error;
    if (fs::exists(dir, error) && !fs::is_empty(dir, error)) {
        throw UsageError(
            fmt::format("moelab new: {} exists and is not empty; choose another "
                        "--dir or name",
                        core::printable_path(dir)));
    }
    fs::create_directories(dir);
    const std::map<std::string, std::string> values = {
        {"NAME", name},
        {"IDENT", ident},
        {"KIND", args.kind},
        {"DIR", dir.string()},
        {"SDK_MAJOR", std::to_string(sdk::kSdkVersionMajor)},
        {"SDK_VERSION", std::string("SDK ") + sdk::kSdkVersion},
        {"MOELAB_ROOT", fs::weakly_canonical(MOELAB_SOURCE_DIR).string()},
        {"CHECKS", kind->checks},
        {"NOTES", kind->notes},
    };
    core::write_file_atomically(dir / "CMakeLists.txt", fill(kCMakeLists, values));
    core::write_file_atomically(dir / (ident + ".cpp"), fill(kind->source, values));
    core::write_file_atomically(dir / "recipe.toml", fill(kind->recipe, values));
    core::write_file_atomically(dir / "README.md", fill(kReadme, values));
    fmt::print("wrote {}/: CMakeLists.txt, {}.cpp, recipe.toml, README.md\n", dir.string(), ident);
    fmt::print(
        "next: cmake -S {0} -B {0}/build -DCMAKE_PREFIX_PATH=\"<SDK prefix>;<LibTorch "
        "prefix>\" && cmake --build {0}/build\n",
        dir.string());
    return kExitOk;
}

}  // namespace moelab::cli
