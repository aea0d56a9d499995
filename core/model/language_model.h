#pragma once

// The decoder-only language model assembled from plugins:
//
//   h_0 = Embed(tokens)
//   h   = h + Attention_l(RMSNorm(h))                  attention plugin, every layer
//   h   = FFN_l(h)                                     dense SwiGLU, or an MoE block (router
//                                                      plugin) on the layers [moe] selects
//   logits = RMSNorm(h) E^T (tied) or RMSNorm(h) W_head^T
//
// Note [Initialisation]: every weight matrix ~ N(0, init_std^2); matrices that write into the
// residual stream (attention output, FFN and expert down-projections) use
// init_std / sqrt(2 * layers) (GPT-2); norms start at 1; the untied head ~ N(0, init_std^2).
// Each module draws from its own generator seeded by derive_seed(recipe seed, role, layer), so the
// initial weights depend on the recipe only. Plugins receive init_std and a seed in their context
// and follow the same convention for their own weights.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/config/options.h"
#include "core/dist/process_group.h"
#include "core/model/layer_observer.h"
#include "core/moe/perturbation.h"
#include "core/moe/routing_stats.h"
#include "core/moe/routing_tap.h"
#include "core/plugin/resolve.h"
#include "moelab/sdk/attention.h"
#include "moelab/sdk/batch_reduction.h"
#include "moelab/sdk/calibration.h"
#include "moelab/sdk/rms_norm.h"
#include "moelab/sdk/routing.h"

namespace moelab::core {

class DecodingCache;
class LayerHostServices;
class MoeLayer;
class TransformerLayer;

struct ForwardOptions {
    bool training = false;
    std::int64_t step = 0;
    // Training: this forward's micro-batch of the optimizer step and the step's micro-batches
    // (RouterInput::micro_batch in the SDK).
    std::int64_t micro_batch = 0;
    std::int64_t micro_batches = 1;
    // Evaluation under a routing perturbation; null: none. `batch` numbers the evaluation batch
    // and seeds the perturbation's draws.
    const Perturbation* perturbation = nullptr;
    std::int64_t batch = 0;
    RoutingStats* stats = nullptr;      // where MoE layers report routing statistics; may be null
    RoutingTap* routing_tap = nullptr;  // sees (and may replace) every MoE layer's routing
    // The batch split across processes (data parallelism); null: this process holds all of it.
    const sdk::BatchReduction* batch_reduction = nullptr;
    // (batch, seq) int64 absolute positions, or (1, seq) for the same in every row (Note
    // [Positions and padding] in the SDK's attention.h: negative marks a padding slot, whose
    // output is meaningless and which no router or FFN sees); undefined: the next positions,
    // 0 .. seq-1 without a cache, after the cached tokens with one.
    at::Tensor positions;
    // Decoding: the new tokens attend to what every layer's cache holds and are appended to it.
    DecodingCache* cache = nullptr;
    // Logits of the last position only, (batch, 1, vocab): what decoding needs, without the
    // (batch, seq, vocab) head of a long prompt.
    bool last_logits_only = false;
    // The final norm's output in ModelOutput::hidden instead of logits: for a caller that applies
    // the LM head itself (training on the CPU: chunked with the loss, chunked_lm_loss.h).
    bool hidden_only = false;
    LayerObserver* observer = nullptr;  // sees each layer's attention step; may be null
};

struct ModelOutput {
    at::Tensor logits;    // (batch, seq, vocab); undefined with ForwardOptions::hidden_only
    at::Tensor aux_loss;  // () sum of every MoE layer's auxiliary losses (0 for dense models)
    at::Tensor hidden;    // (batch, seq, d_model) with ForwardOptions::hidden_only
};

// Decoding past what the cache can hold, or with a cache made for another batch.
class DecodingError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct ParameterCounts {
    std::int64_t total = 0;
    std::int64_t expert = 0;  // in expert banks (routed and shared)
};

class LanguageModel : public torch::nn::Module {
  public:
    // `token_counts` yields the training split's token counts (HostServices); called lazily.
    // `expert_group`: the expert-parallel group the routed experts are sharded over (Note [Parallel
    // layout]); null or a group of one: every expert in this process.
    LanguageModel(const ResolvedRecipe& resolved, std::int64_t vocab_size,
                  std::function<at::Tensor()> token_counts,
                  std::shared_ptr<ProcessGroup> expert_group = nullptr);
    ~LanguageModel() override;

    // tokens: (batch, seq) int64. With options.cache, DecodingError when the tokens do not fit.
    ModelOutput forward(const at::Tensor& tokens, const ForwardOptions& options);

    // (vocab, d_model): the LM head's weight, the embedding when they are tied.
    const at::Tensor& head_weight() const { return head_.defined() ? head_ : embedding_; }

    // Caches for decoding `batch` sequences of up to `capacity` tokens each, created by every
    // layer's attention plugin. The plugin must list feature::kKvCache (the caller checks it when
    // resolving, so that a refusal names the recipe); a plugin error here is a PluginError.
    std::unique_ptr<DecodingCache> make_decoding_cache(std::int64_t batch, std::int64_t capacity);

    // Every layer's attention cost for one token attending to `context` keys (summed over layers);
    // flops_per_token is -1 when a plugin does not say.
    sdk::AttentionCost attention_cost(std::int64_t context) const;
    std::int64_t layers() const { return static_cast<std::int64_t>(layers_.size()); }
    // Layer `index`'s MoE layer; null for a dense layer.
    MoeLayer* moe_layer(std::int64_t index) const;
    // Whether layer `index`'s attention is sdk::Calibrated with something to fit, and fitting it
    // (Note [Calibration] in the SDK's calibration.h; a plugin error names the plugin and layer).
    bool calibrates_layer(std::int64_t index) const;
    void calibrate_layer(std::int64_t index, const sdk::CalibrationData& data);

    std::int64_t vocab_size() const { return vocab_size_; }
    // The parameters (by name, as named_parameters() gives them) that hold only this process's
    // share of a bank's experts ([parallel] expert > 1); empty when every process holds all.
    std::map<std::string, ExpertShard> expert_shards() const;
    ParameterCounts parameter_counts() const;
    // Parameters used per token on average, given the banks' active fractions measured in `stats`.
    double active_parameters(const RoutingStats& stats) const;
    // Note [Model FLOPs]
    // ~~~~~~~~~~~~~~~~~~
    // Forward FLOPs of one token of a training sequence of `seq_len` tokens, the work the model
    // needs (not what an implementation happens to do), counted from the assembled model:
    //   2 x the weight matrices a token uses: every parameter of two or more dimensions except
    //       the embedding table (a lookup) unless the head is tied to it, with each expert bank
    //       scaled by its measured active fraction in `stats` (experts used per token / experts);
    //       routers, gates, dense FFNs and the LM head count in full;
    //   + each layer's attention, projections included, as its plugin states it
    //       (Attention::cost), averaged over the causal contexts 1..seq_len of the sequence's
    //       tokens (PaLM's convention counts every token at the full seq_len instead).
    // Norms, activations, softmax and the loss are left out, as is usual. A training step is
    // 3 times this (forward, and a backward of twice the forward). nullopt when an attention
    // plugin does not state its cost.
    std::optional<double> forward_flops_per_token(const RoutingStats& stats,
                                                  std::int64_t seq_len) const;

    // Weight-decayed parameters (matrices) and the rest (norm scales, 1-D parameters).
    std::vector<at::Tensor> decayed_parameters() const;
    std::vector<at::Tensor> undecayed_parameters() const;

  private:
    std::int64_t vocab_size_;
    std::int64_t d_model_;
    at::Tensor embedding_;  // (vocab, d_model)
    at::Tensor head_;       // (vocab, d_model); undefined when tied to embedding_
    std::vector<std::shared_ptr<TransformerLayer>> layers_;
    std::shared_ptr<sdk::RmsNorm> final_norm_;
    // Per MoE layer; plugins may keep their HostServices pointer for the model's lifetime.
    std::vector<std::unique_ptr<LayerHostServices>> hosts_;
};

}  // namespace moelab::core
