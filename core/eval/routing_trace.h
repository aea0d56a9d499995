#pragma once

// Routing traces: `moelab eval --trace FILE` records every MoE layer's routing of every evaluated
// token; `moelab eval --replay FILE` forces a recorded routing into an evaluation, for ablations
// that keep the routing and change something else (other experts, a model whose router is
// swapped). tools/python/moelab_trace.py reads the files.
//
// Note [Routing trace format]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A safetensors file (core/checkpoint/safetensors.h), N = evaluated tokens in evaluation order:
//   tokens                         I32 (N,)         the input token ids every MoE layer routed
//   layer.L.router.R.experts       I16 (N, slots)   expert of each slot, -1 for an empty slot
//                                                   (I32 with more than 32767 experts)
//   layer.L.router.R.weights       F32 (N, slots)   combine weights, bit for bit
//   layer.L.router.R.token_scale   F32 (N,)         only for decisions that have one
// L is the model layer (0-based), R the router of the block in execution order. Slots follow the
// decisions; where they vary between batches (variable-k routers) shorter ones are padded with
// empty slots. `__metadata__` holds "moelab.trace", a JSON object: {"version": 1, "tokens": N,
// "experts": E, "layers": [{"layer": L, "plugin": name, "routers": count}, ...]} plus what the
// recording evaluation was (run, checkpoint, step, split, max_batches, seq_len, batch_size,
// perturbation); `moelab eval --replay` refuses another seq_len or batch size.
//
// Replay drives only the host's standard block (gate routers): it hands each MoE layer the
// recorded decision in place of calling the router, so the evaluation's loss equals the recorded
// one bit for bit when nothing else changed (on the CPU; CUDA's combine adds atomically unless
// deterministic kernels are on). Blocks that route inside themselves (make_block)
// cannot be driven, so a model with one is refused, as is a trace whose layers, expert count or
// tokens differ from the evaluation's.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/language_model.h"
#include "core/moe/routing_tap.h"

namespace moelab::core {

// A trace that cannot be read, or does not fit the evaluation; the message names the file.
class TraceError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class RoutingTraceRecorder final : public RoutingTap {
  public:
    // `experts`: [moe] experts of the model.
    RoutingTraceRecorder(const LanguageModel& model, std::int64_t experts);

    std::optional<sdk::RoutingDecision> replace(int layer, const at::Tensor& token_ids) override;
    void observe(int layer, const at::Tensor& token_ids,
                 const std::vector<sdk::RoutingDecision>& routing) override;

    // Writes the file atomically (a sibling, then renamed); `context` joins the metadata.
    void write(const std::filesystem::path& file, const nlohmann::json& context) const;
    std::int64_t tokens() const { return tokens_; }

  private:
    struct Stream {
        std::vector<at::Tensor> experts, weights, token_scale;  // CPU chunks, one per forward
    };
    std::int64_t experts_;
    int first_moe_layer_ = -1;
    std::map<int, std::string> plugins_;  // MoE layer -> plugin name
    std::map<int, std::vector<Stream>> layers_;
    std::vector<at::Tensor> token_chunks_;
    std::int64_t tokens_ = 0;
};

class RoutingTraceReplay final : public RoutingTap {
  public:
    // Reads `file` and checks it against `model`: TraceError unless every MoE layer of the model
    // is a gate router's and the trace has the same MoE layers, one decision per layer, and the
    // same expert count.
    RoutingTraceReplay(const std::filesystem::path& file, const LanguageModel& model,
                       std::int64_t experts);

    // The recorded decision of the next tokens of `layer`; TraceError when they are not the
    // recorded tokens or run past the trace.
    std::optional<sdk::RoutingDecision> replace(int layer, const at::Tensor& token_ids) override;
    void observe(int, const at::Tensor&, const std::vector<sdk::RoutingDecision>&) override {}

    // TraceError unless the evaluation routed exactly the trace's tokens in every layer.
    void finish() const;
    const nlohmann::json& metadata() const { return metadata_; }

  private:
    struct Layer {
        at::Tensor experts;      // (N, slots) int64
        at::Tensor weights;      // (N, slots) float32
        at::Tensor token_scale;  // (N,) float32 or undefined
        std::int64_t cursor = 0;
    };
    std::filesystem::path file_;
    nlohmann::json metadata_;
    at::Tensor tokens_;  // (N,) int64
    std::map<int, Layer> layers_;
};

}  // namespace moelab::core
