#include "core/conformance/attention_conformance.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <torch/autograd.h>

#include "core/plugin/host_attention_kernels.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

namespace {

constexpr std::int64_t kModel = 32, kHeads = 4, kBatch = 2, kSeq = 16;

sdk::ModelShape kit_shape() {
    sdk::ModelShape shape;
    shape.d_model = kModel;
    shape.layers = 2;
    shape.vocab_size = 64;
    shape.heads = kHeads;
    shape.kv_heads = kHeads;
    shape.head_dim = kModel / kHeads;
    shape.max_seq_len = 64;
    shape.d_ff = 64;
    return shape;
}

// Built as the host builds it, with the host's fused kernels, unless `kernels` says otherwise.
std::shared_ptr<sdk::Attention> build(
    const RegisteredAttention& attention, std::uint64_t seed,
    const sdk::AttentionKernels* kernels = &host_attention_kernels()) {
    sdk::AttentionContext context;
    context.model = kit_shape();
    context.layer_index = 1;
    context.seed = seed;
    context.kernels = kernels;
    context.init_std = 0.1;
    return instantiate_attention(attention, context, default_params(attention.component.params));
}

at::Tensor hidden_states(std::int64_t seq, std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed);
    return at::randn({kBatch, seq, kModel}, generator, at::kFloat);
}

at::Tensor run_at(sdk::Attention& attention, const at::Tensor& hidden, const at::Tensor& positions,
                  sdk::AttentionCache* cache, bool training) {
    attention.train(training);
    sdk::ForwardState state;
    sdk::AttentionInput input;
    input.hidden = hidden;
    input.positions = positions;
    input.cache = cache;
    input.state = &state;
    input.training = training;
    return attention.forward(input);
}

// Every row at positions first_position, first_position + 1, ...
at::Tensor run(sdk::Attention& attention, const at::Tensor& hidden, std::int64_t first_position,
               sdk::AttentionCache* cache, bool training) {
    const at::Tensor positions =
        at::arange(first_position, first_position + hidden.size(1), at::kLong)
            .expand({hidden.size(0), hidden.size(1)});
    return run_at(attention, hidden, positions, cache, training);
}

double max_difference(const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<double>();
}

// Every layer of a kStackLayers-layer model, for components whose layers differ or talk to each
// other through the forward state (UniAttn's anchors and reuse layers).
constexpr std::int64_t kStackLayers = 4;

std::vector<std::shared_ptr<sdk::Attention>> build_stack(const RegisteredAttention& attention) {
    std::vector<std::shared_ptr<sdk::Attention>> layers;
    for (std::int64_t l = 0; l < kStackLayers; ++l) {
        sdk::AttentionContext context;
        context.model = kit_shape();
        context.model.layers = kStackLayers;
        context.layer_index = static_cast<int>(l);
        context.seed = 40 + static_cast<std::uint64_t>(l);
        context.init_std = 0.1;
        context.kernels = &host_attention_kernels();
        layers.push_back(
            instantiate_attention(attention, context, default_params(attention.component.params)));
    }
    return layers;
}

// The layers in order, as the host runs them: one forward state for the pass, each layer's branch
// added to the stream (the host's norms left out); positions first_position, first_position + 1..
at::Tensor run_stack(const std::vector<std::shared_ptr<sdk::Attention>>& layers, at::Tensor hidden,
                     std::int64_t first_position,
                     const std::vector<std::unique_ptr<sdk::AttentionCache>>* caches,
                     bool training) {
    sdk::ForwardState state;
    sdk::AttentionInput input;
    input.positions = at::arange(first_position, first_position + hidden.size(1), at::kLong)
                          .expand({hidden.size(0), hidden.size(1)});
    input.state = &state;
    input.training = training;
    for (std::size_t l = 0; l < layers.size(); ++l) {
        layers[l]->train(training);
        input.hidden = hidden;
        input.cache = caches != nullptr ? (*caches)[l].get() : nullptr;
        hidden = hidden + layers[l]->forward(input);
    }
    return hidden;
}

}  // namespace

ConformanceReport test_attention_component(const RegisteredAttention& attention) {
    ConformanceReport report;
    const sdk::AttentionComponent& component = attention.component;
    report.component = describe_component("attention", component.name, *attention.plugin);
    // Every check but the gradient one runs without autograd (which re-enables it).
    torch::NoGradGuard no_grad;

    report.checks.push_back(run_check("output contract", [&] {
        auto layer = build(attention, 11);
        const at::Tensor out = run(*layer, hidden_states(kSeq, 1), 0, nullptr, false);
        if (out.sizes() != at::IntArrayRef{kBatch, kSeq, kModel}) {
            return fail(fmt::format("returned shape {}, expected ({}, {}, {})",
                                    c10::str(out.sizes()), kBatch, kSeq, kModel));
        }
        if (!out.isfinite().all().item<bool>()) return fail("non-finite output");
        return pass(fmt::format("({}, {}, {}) in, same shape out", kBatch, kSeq, kModel));
    }));

    report.checks.push_back(run_check("causality", [&] {
        auto layer = build(attention, 11);
        const at::Tensor x = hidden_states(kSeq, 2);
        at::Tensor changed = x.clone();
        changed.narrow(1, kSeq / 2, kSeq / 2).normal_();
        const at::Tensor a = run(*layer, x, 0, nullptr, false);
        const at::Tensor b = run(*layer, changed, 0, nullptr, false);
        const double leak = max_difference(a.narrow(1, 0, kSeq / 2), b.narrow(1, 0, kSeq / 2));
        if (leak > 1e-5) {
            return fail(fmt::format(
                "changing positions {}.. changed earlier outputs by up to {:.2e}", kSeq / 2, leak));
        }
        return pass("earlier positions do not see later ones");
    }));

    report.checks.push_back(run_check("gradients reach every parameter", [&] {
        torch::AutoGradMode enable(true);
        auto layer = build(attention, 11);
        const at::Tensor out = run(*layer, hidden_states(kSeq, 3), 0, nullptr, true);
        (out * hidden_states(kSeq, 4)).sum().backward();
        std::string missing;
        for (const auto& item : layer->named_parameters()) {
            const at::Tensor& grad = item.value().grad();
            if (item.value().requires_grad() &&
                (!grad.defined() || grad.abs().sum().item<double>() == 0.0)) {
                missing += (missing.empty() ? "" : ", ") + item.key();
            }
        }
        if (!missing.empty()) return fail("no gradient: " + missing);
        return pass(fmt::format("{} parameters", layer->named_parameters().size()));
    }));

    report.checks.push_back(run_check("the host's fused kernels", [&] {
        // Whatever a plugin hands the host's kernels (AttentionContext::kernels) must come back as
        // what it would have computed itself, forward and backward, and stay causal; a plugin
        // that never asks passes trivially. Whole sequences at one row of positions, as in
        // training; 300 of them: whole tiles of the CPU kernel and a part, and past the length
        // whose probabilities it keeps.
        torch::AutoGradMode enable(true);
        constexpr std::int64_t kKernelSeq = 300;
        const at::Tensor positions = at::arange(kKernelSeq, at::kLong).unsqueeze(0);
        const at::Tensor x = hidden_states(kKernelSeq, 13);
        const at::Tensor weights = hidden_states(kKernelSeq, 14);
        struct Result {
            at::Tensor out, grad_input;
            std::vector<at::Tensor> grad_parameters;
        };
        auto result_of = [&](sdk::Attention& layer) {
            const at::Tensor input = x.clone().requires_grad_();
            const at::Tensor out = run_at(layer, input, positions, nullptr, true);
            (out * weights).sum().backward();
            Result result{out.detach(), input.grad(), {}};
            for (const auto& item : layer.named_parameters()) {
                result.grad_parameters.push_back(item.value().grad());
            }
            return result;
        };
        auto own_layer = build(attention, 41, nullptr);
        auto fused_layer = build(attention, 41);
        const Result own = result_of(*own_layer);
        const Result fused = result_of(*fused_layer);
        {
            torch::NoGradGuard no_grad;
            at::Tensor changed = x.clone();
            changed.narrow(1, kKernelSeq / 2, kKernelSeq / 2).normal_();
            const at::Tensor a = run_at(*fused_layer, x, positions, nullptr, false);
            const at::Tensor b = run_at(*fused_layer, changed, positions, nullptr, false);
            const double leak =
                max_difference(a.narrow(1, 0, kKernelSeq / 2), b.narrow(1, 0, kKernelSeq / 2));
            if (leak > 1e-5) {
                return fail(fmt::format(
                    "with the host's kernels, changing positions {}.. changed earlier outputs by "
                    "up to {:.2e}",
                    kKernelSeq / 2, leak));
            }
        }
        // float32 sums in another order: a relative difference of a few 1e-7 per term.
        auto worst = [](const at::Tensor& a, const at::Tensor& b) {
            if (a.defined() != b.defined()) return std::numeric_limits<double>::infinity();
            if (!a.defined()) return 0.0;
            return max_difference(a, b) / (1.0 + b.abs().max().item<double>());
        };
        double difference =
            std::max(worst(fused.out, own.out), worst(fused.grad_input, own.grad_input));
        for (std::size_t i = 0; i < own.grad_parameters.size(); ++i) {
            difference =
                std::max(difference, worst(fused.grad_parameters[i], own.grad_parameters[i]));
        }
        if (!(difference <= 1e-4)) {
            return fail(fmt::format(
                "with the host's kernels, outputs or gradients differ by up to {:.2e} (relative)",
                difference));
        }
        return pass(fmt::format(
            "outputs and gradients as without them (up to {:.1e} relative, {} positions)",
            difference, kKernelSeq));
    }));

    report.checks.push_back(run_check("determinism under a seed", [&] {
        auto a = build(attention, 21);
        auto b = build(attention, 21);
        const at::Tensor x = hidden_states(kSeq, 5);
        if (!at::equal(run(*a, x, 0, nullptr, false), run(*b, x, 0, nullptr, false))) {
            return fail("two layers built with the same seed give different outputs");
        }
        return pass("same seed, same output");
    }));

    report.checks.push_back(run_check("checkpoint round trip", [&] {
        auto a = build(attention, 31);
        auto b = build(attention, 32);
        std::map<std::string, at::Tensor> saved;
        for (const auto& item : a->named_parameters()) saved[item.key()] = item.value();
        for (const auto& item : a->named_buffers()) saved[item.key()] = item.value();
        for (auto& item : b->named_parameters()) item.value().copy_(saved.at(item.key()));
        for (auto& item : b->named_buffers()) item.value().copy_(saved.at(item.key()));
        const at::Tensor x = hidden_states(kSeq, 6);
        if (!at::equal(run(*a, x, 0, nullptr, false), run(*b, x, 0, nullptr, false))) {
            return fail(
                "a layer restored from another's parameters and buffers computes "
                "something else");
        }
        return pass(fmt::format("{} tensors", saved.size()));
    }));

    const auto& features = component.features;
    const bool caches =
        std::find(features.begin(), features.end(), sdk::feature::kKvCache) != features.end();
    report.checks.push_back(run_check("a stack of layers sharing the forward state", [&] {
        auto layers = build_stack(attention);
        const at::Tensor x = hidden_states(kSeq, 12);
        const at::Tensor full = run_stack(layers, x, 0, nullptr, false);
        at::Tensor changed = x.clone();
        changed.narrow(1, kSeq / 2, kSeq / 2).normal_();
        const double leak =
            max_difference(full.narrow(1, 0, kSeq / 2),
                           run_stack(layers, changed, 0, nullptr, false).narrow(1, 0, kSeq / 2));
        if (leak > 1e-5) {
            return fail(
                fmt::format("through {} layers, changing positions {}.. changed earlier outputs by "
                            "up to {:.2e}",
                            kStackLayers, kSeq / 2, leak));
        }
        std::string cached = "no kv_cache";
        if (caches) {
            std::vector<std::unique_ptr<sdk::AttentionCache>> layer_caches;
            for (const auto& layer : layers)
                layer_caches.push_back(layer->make_cache(kBatch, kSeq));
            std::vector<at::Tensor> pieces{
                run_stack(layers, x.narrow(1, 0, 5), 0, &layer_caches, false)};
            for (std::int64_t t = 5; t < kSeq; ++t) {
                pieces.push_back(run_stack(layers, x.narrow(1, t, 1), t, &layer_caches, false));
            }
            const double difference = max_difference(at::cat(pieces, 1), full);
            if (difference > 1e-5) {
                return fail(
                    fmt::format("decoding {} layers with their caches differs from "
                                "recomputation by up to {:.2e}",
                                kStackLayers, difference));
            }
            cached = fmt::format("cached decoding equals recomputation (max difference {:.1e})",
                                 difference);
        }
        torch::AutoGradMode enable(true);
        (run_stack(layers, x, 0, nullptr, true) * hidden_states(kSeq, 13)).sum().backward();
        std::string missing;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            for (const auto& item : layers[l]->named_parameters()) {
                const at::Tensor& grad = item.value().grad();
                if (item.value().requires_grad() &&
                    (!grad.defined() || grad.abs().sum().item<double>() == 0.0)) {
                    missing +=
                        fmt::format("{}layer {} {}", missing.empty() ? "" : ", ", l, item.key());
                }
            }
        }
        if (!missing.empty()) return fail("no gradient through the stack: " + missing);
        return pass(fmt::format("{} layers in order: causal, {}, gradients reach every parameter",
                                kStackLayers, cached));
    }));
    if (caches) {
        report.checks.push_back(run_check("cache equals recomputation", [&] {
            auto layer = build(attention, 11);
            const at::Tensor x = hidden_states(kSeq, 7);
            const at::Tensor full = run(*layer, x, 0, nullptr, false);
            std::unique_ptr<sdk::AttentionCache> cache = layer->make_cache(kBatch, kSeq);
            // A prompt of 5 tokens, then one token at a time.
            std::vector<at::Tensor> pieces{run(*layer, x.narrow(1, 0, 5), 0, cache.get(), false)};
            for (std::int64_t t = 5; t < kSeq; ++t) {
                pieces.push_back(run(*layer, x.narrow(1, t, 1), t, cache.get(), false));
            }
            if (cache->length() != kSeq) {
                return fail(
                    fmt::format("the cache holds {} tokens after {}", cache->length(), kSeq));
            }
            const double difference = max_difference(at::cat(pieces, 1), full);
            if (difference > 1e-5) {
                return fail(
                    fmt::format("decoding with the cache differs from recomputation by "
                                "up to {:.2e}",
                                difference));
            }
            return pass(fmt::format("prompt of 5 + {} single tokens, max difference {:.1e}",
                                    kSeq - 5, difference));
        }));
        report.checks.push_back(run_check("cache with prompts of different lengths", [&] {
            // Row 0 a prompt of 3 tokens left-padded to row 1's 6 (positions -1 mark padding,
            // Note [Positions and padding]); then single tokens until the cache is full. Each
            // row must equal that row alone, recomputed without a cache.
            constexpr std::int64_t kShort = 3, kLong = 6;
            auto layer = build(attention, 11);
            const at::Tensor x = hidden_states(kSeq, 9);  // (2, kSeq, d): row 1's tokens
            const at::Tensor short_row = x[0].narrow(0, 0, kShort + kSeq - kLong).unsqueeze(0);
            const at::Tensor long_row = x[1].unsqueeze(0);
            const at::Tensor alone_short = run(*layer, short_row, 0, nullptr, false);
            const at::Tensor alone_long = run(*layer, long_row, 0, nullptr, false);

            std::unique_ptr<sdk::AttentionCache> cache = layer->make_cache(kBatch, kSeq);
            at::Tensor prompt = at::zeros({kBatch, kLong, kModel});
            prompt[0].narrow(0, kLong - kShort, kShort).copy_(short_row[0].narrow(0, 0, kShort));
            prompt[1].copy_(long_row[0].narrow(0, 0, kLong));
            at::Tensor positions = at::full({kBatch, kLong}, -1, at::kLong);
            positions[0].narrow(0, kLong - kShort, kShort).copy_(at::arange(kShort));
            positions[1].copy_(at::arange(kLong));
            const at::Tensor first = run_at(*layer, prompt, positions, cache.get(), false);
            std::vector<at::Tensor> short_out{first[0].narrow(0, kLong - kShort, kShort)};
            std::vector<at::Tensor> long_out{first[1]};
            for (std::int64_t t = 0; t < kSeq - kLong; ++t) {
                const at::Tensor token =
                    at::stack({short_row[0][kShort + t], long_row[0][kLong + t]})
                        .unsqueeze(1);  // (2, 1, d)
                const at::Tensor step_positions =
                    at::tensor({kShort + t, kLong + t}, at::kLong).unsqueeze(1);
                const at::Tensor out = run_at(*layer, token, step_positions, cache.get(), false);
                short_out.push_back(out[0]);
                long_out.push_back(out[1]);
            }
            const double difference =
                std::max(max_difference(at::cat(short_out, 0), alone_short[0]),
                         max_difference(at::cat(long_out, 0), alone_long[0]));
            if (!(difference <= 1e-5)) {
                return fail(fmt::format(
                    "rows of different lengths decoded together differ from each row alone by up "
                    "to {:.2e}",
                    difference));
            }
            if (cache->length() != kSeq) {
                return fail(fmt::format("the full cache holds {} tokens, expected {}",
                                        cache->length(), kSeq));
            }
            bool refused = false;
            try {
                run(*layer, hidden_states(1, 10), kSeq, cache.get(), false);
            } catch (const std::exception&) {
                refused = true;
            }
            if (!refused) return fail("a full cache accepted one more token");
            return pass(fmt::format(
                "prompts of {} and {} tokens, filled to {} slots, max difference {:.1e}; one more "
                "token is refused",
                kShort, kLong, kSeq, difference));
        }));
    } else {
        report.checks.push_back({"cache equals recomputation", CheckOutcome::kInfo,
                                 "does not list kv_cache: no incremental decoding"});
    }

    report.checks.push_back(run_check("throughput", [&] {
        auto layer = build(attention, 11);
        const at::Tensor x = hidden_states(256, 8);
        run(*layer, x, 0, nullptr, false);
        const auto start = std::chrono::steady_clock::now();
        constexpr int kRounds = 5;
        for (int i = 0; i < kRounds; ++i) run(*layer, x, 0, nullptr, false);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ConformanceCheck info;
        info.outcome = CheckOutcome::kInfo;
        info.detail = fmt::format(
            "{:.0f} tokens/s (batch 2 x 256, d_model 32, 4 heads, CPU, "
            "inference)",
            kRounds * kBatch * 256 / seconds);
        return info;
    }));
    return report;
}

}  // namespace moelab::core
