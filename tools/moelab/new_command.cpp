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
          expert_count_(context.model.expert_count) {
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
                                               expert_count_));
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
          expert_count_(context.model.expert_count) {
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
                                               expert_count_));
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
// decode incrementally (no kv_cache feature; make_cache throws): add an AttentionCache and list
// sdk::feature::kKvCache for decoding (the built-in rope plugin shows one).

#include <cmath>
#include <limits>

#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rotary.h"

namespace {{IDENT}} {

namespace sdk = moelab::sdk;

class Attention : public sdk::Attention {
public:
    Attention(const sdk::AttentionContext& context, const sdk::Params& params)
        : heads_(context.model.head_count), head_dim_(context.model.head_dim) {
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
                               sdk::residual_init_std(std, context.model.layer_count), generator));
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
        // Causal by contract: position p attends to positions <= p. Softmax in fp32.
        at::Tensor scores = at::matmul(query, key.transpose(-2, -1)).to(at::kFloat) /
                            std::sqrt(static_cast<double>(head_dim_));
        const at::Tensor future = input.positions.view({1, -1}) > input.positions.view({-1, 1});
        scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
        const at::Tensor mixed = at::matmul(scores.softmax(-1).to(qkv.scalar_type()), qkv[2])
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
    if (query.model.kv_head_count != query.model.head_count) {
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

# 2. Check it: decision contract, gradients (also at k = 1), determinism, checkpoint round trip,
#    every routing perturbation it lists, throughput
MOELAB_PLUGIN_PATH=$PWD/build <moelab>/build/bin/moelab plugins test {{NAME}}

# 3. Train the quickstart model with it (from the moelab checkout, which holds data/brown)
build/bin/moelab run {{DIR}}/recipe.toml
```

The router chooses from the scores the host hands back (`input.selection->selectable_scores`):
that one call is what lets `moelab compare` measure its robustness (disable the top experts,
logit noise, expert dropout, random routing, forced balance). Keep it when you change the
selection, and list in `component.features` only the perturbations you honour; for the others
the comparison says n/a. The SDK: `sdk/README.md` of moelab; the tutorial:
`docs/writing-a-router.md`.
)tmpl";

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
    if (args.kind != "router" && args.kind != "block" && args.kind != "attention") {
        throw UsageError(
            fmt::format("moelab new: '{}' is not a kind it can make yet; expected "
                        "router, block or attention",
                        args.kind));
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
    };
    core::write_file_atomically(dir / "CMakeLists.txt", fill(kCMakeLists, values));
    const char* source = args.kind == "router"  ? kRouterSource
                         : args.kind == "block" ? kBlockSource
                                                : kAttentionSource;
    core::write_file_atomically(dir / (ident + ".cpp"), fill(source, values));
    core::write_file_atomically(
        dir / "recipe.toml", fill(args.kind == "attention" ? kAttentionRecipe : kRecipe, values));
    core::write_file_atomically(dir / "README.md", fill(kReadme, values));
    fmt::print("wrote {}/: CMakeLists.txt, {}.cpp, recipe.toml, README.md\n", dir.string(), ident);
    fmt::print(
        "next: cmake -S {0} -B {0}/build -DCMAKE_PREFIX_PATH=\"<SDK prefix>;<LibTorch "
        "prefix>\" && cmake --build {0}/build\n",
        dir.string());
    return kExitOk;
}

}  // namespace moelab::cli
