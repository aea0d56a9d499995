#include "core/eval/routing_trace.h"

#include <unistd.h>

#include <algorithm>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/checkpoint/safetensors.h"
#include "core/moe/moe_layer.h"
#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/tensor_text.h"

namespace moelab::core {

namespace {

constexpr int kTraceVersion = 1;
constexpr char kMetadataKey[] = "moelab.trace";

std::string stream_name(int layer, std::size_t router, const char* field) {
    return fmt::format("layer.{}.router.{}.{}", layer, router, field);
}

// Pads every chunk to the widest slot count (empty slots: `fill`) and concatenates them.
at::Tensor concat_slots(const std::vector<at::Tensor>& chunks, double fill) {
    std::int64_t slots = 0;
    for (const at::Tensor& chunk : chunks) slots = std::max(slots, chunk.size(1));
    std::vector<at::Tensor> padded;
    for (const at::Tensor& chunk : chunks) {
        if (chunk.size(1) == slots) {
            padded.push_back(chunk);
            continue;
        }
        at::Tensor wide = at::full({chunk.size(0), slots}, fill, chunk.options());
        wide.narrow(1, 0, chunk.size(1)).copy_(chunk);
        padded.push_back(wide);
    }
    return at::cat(padded);
}

std::vector<int> model_layers_of(const LanguageModel& model) {
    std::vector<int> layers;
    for (std::int64_t l = 0; l < model.layers(); ++l) {
        if (model.moe_layer(l) != nullptr) layers.push_back(static_cast<int>(l));
    }
    return layers;
}

}  // namespace

RoutingTraceRecorder::RoutingTraceRecorder(const LanguageModel& model, std::int64_t experts)
    : experts_(experts) {
    const std::vector<int> moe_layers = model_layers_of(model);
    if (moe_layers.empty()) throw TraceError("the model has no MoE layer to trace");
    first_moe_layer_ = moe_layers.front();
    for (const int layer : moe_layers) {
        plugins_[layer] = model.moe_layer(layer)->plugin().name;
        layers_[layer];
    }
}

std::optional<sdk::RoutingDecision> RoutingTraceRecorder::replace(int, const at::Tensor&) {
    return std::nullopt;
}

void RoutingTraceRecorder::observe(int layer, const at::Tensor& token_ids,
                                   const std::vector<sdk::RoutingDecision>& routing) {
    if (layer == first_moe_layer_) {
        token_chunks_.push_back(token_ids.to(at::kCPU, at::kInt));
        tokens_ += token_ids.size(0);
    }
    std::vector<Stream>& streams = layers_.at(layer);
    if (streams.empty()) streams.resize(routing.size());
    if (streams.size() != routing.size()) {
        throw TraceError(
            fmt::format("layer {} made {} routing decisions, before {}: a trace needs "
                        "the same number in every forward",
                        layer, routing.size(), streams.size()));
    }
    for (std::size_t r = 0; r < routing.size(); ++r) {
        const sdk::RoutingDecision& decision = routing[r];
        streams[r].experts.push_back(decision.expert_indices.to(at::kCPU));
        streams[r].weights.push_back(decision.combine_weights.detach().to(at::kCPU, at::kFloat));
        const at::Tensor* scale = decision.extensions.find(sdk::decision_extension::kTokenScale);
        streams[r].token_scale.push_back(scale != nullptr ? scale->detach().to(at::kCPU, at::kFloat)
                                                          : at::Tensor());
    }
}

void RoutingTraceRecorder::write(const std::filesystem::path& file,
                                 const nlohmann::json& context) const {
    std::vector<NamedTensor> tensors;
    tensors.push_back(
        {"tokens", token_chunks_.empty() ? at::zeros({0}, at::kInt) : at::cat(token_chunks_)});
    const at::ScalarType index_type = experts_ <= 32767 ? at::kShort : at::kInt;
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& [layer, streams] : layers_) {
        layers.push_back(
            {{"layer", layer}, {"plugin", plugins_.at(layer)}, {"routers", streams.size()}});
        for (std::size_t r = 0; r < streams.size(); ++r) {
            const Stream& stream = streams[r];
            const at::Tensor experts = concat_slots(stream.experts, -1).to(index_type);
            if (experts.size(0) != tokens_) {
                throw TraceError(fmt::format("layer {} routed {} tokens, the model {}", layer,
                                             experts.size(0), tokens_));
            }
            tensors.push_back({stream_name(layer, r, "experts"), experts});
            tensors.push_back({stream_name(layer, r, "weights"), concat_slots(stream.weights, 0)});
            const bool scaled = std::any_of(stream.token_scale.begin(), stream.token_scale.end(),
                                            [](const at::Tensor& t) { return t.defined(); });
            if (!scaled) continue;
            std::vector<at::Tensor> scale;
            for (std::size_t c = 0; c < stream.token_scale.size(); ++c) {
                scale.push_back(stream.token_scale[c].defined()
                                    ? stream.token_scale[c]
                                    : at::ones({stream.experts[c].size(0)}, at::kFloat));
            }
            tensors.push_back({stream_name(layer, r, "token_scale"), at::cat(scale)});
        }
    }
    nlohmann::json metadata = context;
    metadata["version"] = kTraceVersion;
    metadata["tokens"] = tokens_;
    metadata["experts"] = experts_;
    metadata["layers"] = layers;

    // Written next to the target and renamed over it: a reader never sees a partial trace.
    const std::filesystem::path temporary =
        file.parent_path() / fmt::format(".{}.tmp-{}", file.filename().string(), ::getpid());
    try {
        write_safetensors(temporary, tensors, {{kMetadataKey, metadata.dump()}});
        sync_path(temporary);
        std::filesystem::rename(temporary, file);
        sync_path(file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path());
    } catch (const std::exception& error) {
        std::error_code ignored;
        std::filesystem::remove(temporary, ignored);
        throw TraceError(fmt::format("cannot write the routing trace {}: {}", printable_path(file),
                                     error.what()));
    }
}

RoutingTraceReplay::RoutingTraceReplay(const std::filesystem::path& file,
                                       const LanguageModel& model, std::int64_t experts)
    : file_(file) {
    const std::string name = printable_path(file);
    auto fail = [&](const std::string& what) { return TraceError(name + ": " + what); };
    SafetensorsContents contents;
    try {
        contents = read_safetensors(file);
    } catch (const std::exception& error) {
        throw TraceError(error.what());
    }
    const auto meta = contents.metadata.find(kMetadataKey);
    if (meta == contents.metadata.end()) {
        throw fail(fmt::format("not a routing trace: no '{}' metadata", kMetadataKey));
    }
    metadata_ = nlohmann::json::parse(meta->second, nullptr, /*allow_exceptions=*/false);
    if (metadata_.is_discarded()) {
        throw fail(fmt::format("metadata '{}' is not valid JSON", kMetadataKey));
    }
    auto number = [&](const char* key) -> std::int64_t {
        if (!metadata_.is_object() || !metadata_.contains(key) ||
            !metadata_[key].is_number_integer()) {
            throw fail(fmt::format("metadata '{}': expected an integer '{}'", kMetadataKey, key));
        }
        return metadata_[key].get<std::int64_t>();
    };
    if (const std::int64_t version = number("version"); version != kTraceVersion) {
        throw fail(fmt::format("trace format version {}; this moelab reads version {}", version,
                               kTraceVersion));
    }
    const std::int64_t tokens = number("tokens");
    if (const std::int64_t recorded = number("experts"); recorded != experts) {
        throw fail(fmt::format("recorded with {} experts per layer; this model has {}", recorded,
                               experts));
    }
    auto tensor = [&](const std::string& key, at::ScalarType a, at::ScalarType b,
                      std::vector<std::int64_t> shape) -> at::Tensor {
        const auto it = contents.tensors.find(key);
        if (it == contents.tensors.end()) throw fail(fmt::format("no tensor '{}'", key));
        const at::Tensor& t = it->second;
        const bool shape_ok = t.dim() == static_cast<std::int64_t>(shape.size()) &&
                              t.size(0) == shape[0] && (shape.size() == 1 || t.size(1) >= 1);
        if ((t.scalar_type() != a && t.scalar_type() != b) || !shape_ok) {
            throw fail(fmt::format("tensor '{}': expected {} of shape ({}{}), got {}", key,
                                   a == b ? safetensors_dtype(a)
                                          : safetensors_dtype(a) + " or " + safetensors_dtype(b),
                                   tokens, shape.size() == 2 ? ", slots" : "", tensor_text(t)));
        }
        return t;
    };
    tokens_ = tensor("tokens", at::kInt, at::kInt, {tokens}).to(at::kLong);

    const std::vector<int> model_layers = model_layers_of(model);
    if (model_layers.empty()) throw fail("the model has no MoE layer to replay into");
    for (const int layer : model_layers) {
        const MoeLayer& moe = *model.moe_layer(layer);
        if (!moe.routes_through_host_gate()) {
            throw fail(fmt::format(
                "cannot replay into layer {}: its router ({}) routes inside its own block, "
                "which the host cannot drive; replay needs gate routers",
                layer, moe.plugin().name));
        }
    }
    std::vector<int> trace_layers;
    if (!metadata_.contains("layers") || !metadata_["layers"].is_array()) {
        throw fail(fmt::format("metadata '{}': expected an array 'layers'", kMetadataKey));
    }
    for (const nlohmann::json& entry : metadata_["layers"]) {
        if (!entry.is_object() || !entry.contains("layer") || !entry["layer"].is_number_integer() ||
            !entry.contains("routers") || !entry["routers"].is_number_integer()) {
            throw fail("metadata 'layers': expected {\"layer\": L, \"routers\": R} entries");
        }
        const int layer = entry["layer"].get<int>();
        if (entry["routers"].get<std::int64_t>() != 1) {
            throw fail(fmt::format(
                "layer {} holds {} routing decisions per token (a block with several routers); "
                "replay forces one per layer",
                layer, entry["routers"].get<std::int64_t>()));
        }
        trace_layers.push_back(layer);
    }
    if (trace_layers != model_layers) {
        throw fail(fmt::format("recorded on MoE layers [{}]; this model's are [{}]",
                               fmt::join(trace_layers, ", "), fmt::join(model_layers, ", ")));
    }
    for (const int layer : trace_layers) {
        Layer entry;
        const at::Tensor indices =
            tensor(stream_name(layer, 0, "experts"), at::kShort, at::kInt, {tokens, 0});
        entry.experts = indices.to(at::kLong);
        entry.weights =
            tensor(stream_name(layer, 0, "weights"), at::kFloat, at::kFloat, {tokens, 0});
        if (entry.weights.sizes() != entry.experts.sizes()) {
            throw fail(fmt::format("layer {}: weights {} and experts {} differ in shape", layer,
                                   shape_text(entry.weights.sizes()),
                                   shape_text(entry.experts.sizes())));
        }
        if (entry.experts.numel() > 0 && (entry.experts.min().item<std::int64_t>() < -1 ||
                                          entry.experts.max().item<std::int64_t>() >= experts)) {
            throw fail(fmt::format("layer {}: an expert index outside [-1, {})", layer, experts));
        }
        if (!entry.weights.isfinite().all().item<bool>()) {
            throw fail(fmt::format("layer {}: a combine weight is not finite", layer));
        }
        const std::string scale = stream_name(layer, 0, "token_scale");
        if (contents.tensors.count(scale) > 0) {
            entry.token_scale = tensor(scale, at::kFloat, at::kFloat, {tokens});
            if (!entry.token_scale.isfinite().all().item<bool>()) {
                throw fail(fmt::format("layer {}: a token scale is not finite", layer));
            }
        }
        layers_[layer] = std::move(entry);
    }
}

std::optional<sdk::RoutingDecision> RoutingTraceReplay::replace(int layer,
                                                                const at::Tensor& token_ids) {
    Layer& entry = layers_.at(layer);
    const std::int64_t n = token_ids.size(0);
    const std::int64_t total = tokens_.size(0);
    const std::string name = printable_path(file_);
    if (entry.cursor + n > total) {
        throw TraceError(fmt::format(
            "{}: the evaluation routes more tokens than the trace's {}: the trace was recorded on "
            "a shorter evaluation (split, --max-batches or data differ)",
            name, total));
    }
    const at::Tensor expected = tokens_.narrow(0, entry.cursor, n);
    const at::Tensor here = token_ids.to(at::kCPU, at::kLong);
    if (!at::equal(expected, here)) {
        const std::int64_t i = expected.ne(here).nonzero()[0][0].item<std::int64_t>();
        throw TraceError(fmt::format(
            "{}: evaluated token {} is id {} here and {} in the trace: it was recorded on other "
            "tokens (split, --max-batches, seq_len, batch size or data differ)",
            name, entry.cursor + i, here[i].item<std::int64_t>(),
            expected[i].item<std::int64_t>()));
    }
    sdk::RoutingDecision decision;
    const at::Device device = token_ids.device();
    decision.expert_indices = entry.experts.narrow(0, entry.cursor, n).to(device);
    decision.combine_weights = entry.weights.narrow(0, entry.cursor, n).to(device);
    if (entry.token_scale.defined()) {
        decision.extensions.set(sdk::decision_extension::kTokenScale,
                                entry.token_scale.narrow(0, entry.cursor, n).to(device));
    }
    entry.cursor += n;
    return decision;
}

void RoutingTraceReplay::finish() const {
    for (const auto& [layer, entry] : layers_) {
        if (entry.cursor != tokens_.size(0)) {
            throw TraceError(fmt::format(
                "{}: the evaluation routed {} tokens in layer {}, the trace holds {}: it was "
                "recorded on a longer evaluation (split, --max-batches or data differ)",
                printable_path(file_), entry.cursor, layer, tokens_.size(0)));
        }
    }
}

}  // namespace moelab::core
