#include "core/model/language_model.h"

#include <cmath>

#include <fmt/format.h>

#include "core/model/decoding_cache.h"
#include "core/model/seeds.h"
#include "core/model/transformer_layer.h"
#include "core/moe/sharded_expert_bank.h"
#include "core/moe/standard_block.h"
#include "core/plugin/deferred_checks.h"
#include "core/plugin/host_attention_kernels.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/resolve.h"
#include "core/system/profile_scope.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

namespace {

bool is_moe_layer(const Recipe& recipe, std::int64_t layer) {
    const MoeOptions& moe = recipe.moe;
    return recipe.model.ffn == FfnKind::kMoe && layer >= moe.first_layer &&
           (layer - moe.first_layer) % moe.interval == 0;
}

}  // namespace

LanguageModel::LanguageModel(const ResolvedRecipe& resolved, std::int64_t vocab_size,
                             std::function<at::Tensor()> token_counts,
                             std::shared_ptr<ProcessGroup> expert_group)
    : vocab_size_(vocab_size), d_model_(resolved.recipe.model.d_model) {
    const Recipe& recipe = resolved.recipe;
    const ModelOptions& m = recipe.model;
    const auto seed = static_cast<std::uint64_t>(recipe.seed);
    const double init_std = m.init_std;
    const double output_std = sdk::residual_init_std(init_std, m.layers);
    // The shape plugins were asked about when the recipe was resolved.
    const sdk::ModelShape shape =
        capability_query(recipe, recipe.train.device, vocab_size, {}).model;

    at::Generator generator = sdk::make_generator(derive_seed(seed, "embedding", 0));
    embedding_ = register_parameter(
        "embedding", sdk::normal_weight({vocab_size, m.d_model}, init_std, generator));
    if (!m.tie_embeddings) {
        at::Generator head_generator = sdk::make_generator(derive_seed(seed, "head", 0));
        head_ = register_parameter(
            "head", sdk::normal_weight({vocab_size, m.d_model}, init_std, head_generator));
    }

    std::int64_t moe_count = 0;
    for (std::int64_t l = 0; l < m.layers; ++l) moe_count += is_moe_layer(recipe, l) ? 1 : 0;

    const DispatchPolicy policy{recipe.moe.capacity_factor,
                                recipe.moe.drop_policy == DropPolicy::kProbability,
                                recipe.moe.kernel};
    int moe_index = 0;
    for (std::int64_t l = 0; l < m.layers; ++l) {
        const int layer = static_cast<int>(l);
        sdk::AttentionContext attention_context;
        attention_context.model = shape;
        attention_context.layer_index = layer;
        attention_context.seed = derive_seed(seed, "attention", l);
        attention_context.init_std = init_std;
        attention_context.kernels = &host_attention_kernels();
        auto attention = instantiate_attention(*resolved.attention, attention_context,
                                               resolved.attention_params);

        std::shared_ptr<SwiGluFfn> dense;
        std::shared_ptr<MoeLayer> moe;
        if (is_moe_layer(recipe, l)) {
            const std::uint64_t bank_seed = derive_seed(seed, "experts", l);
            hosts_.push_back(
                expert_group != nullptr && expert_group->size() > 1
                    ? std::make_unique<LayerHostServices>(
                          sharded_expert_banks(policy, init_std, output_std, expert_group),
                          bank_seed, token_counts)
                    : std::make_unique<LayerHostServices>(policy, init_std, output_std, bank_seed,
                                                          token_counts));
            LayerHostServices& host = *hosts_.back();
            sdk::MoeLayerContext context;
            context.model = shape;
            context.layer_index = layer;
            context.moe_layer_index = moe_index++;
            context.moe_layers = static_cast<int>(moe_count);
            context.seed = derive_seed(seed, "router", l);
            context.model_seed = derive_seed(seed, "router-model", 0);
            context.init_std = init_std;
            context.host = &host;
            moe = make_moe_layer(*resolved.router, resolved.router_params, context, host);
        } else {
            dense = std::make_shared<SwiGluFfn>(m.d_model, m.d_ff, m.norm_eps, init_std, output_std,
                                                derive_seed(seed, "ffn", l));
        }
        layers_.push_back(register_module(
            fmt::format("layer{}", l),
            std::make_shared<TransformerLayer>(layer, attention, resolved.attention->plugin,
                                               resolved.attention->library, dense, moe, m.d_model,
                                               m.norm_eps)));
    }
    final_norm_ =
        register_module("final_norm", std::make_shared<sdk::RmsNorm>(m.d_model, m.norm_eps));
}

LanguageModel::~LanguageModel() = default;

ModelOutput LanguageModel::forward(const at::Tensor& tokens, const ForwardOptions& options) {
    const std::int64_t batch = tokens.size(0);
    const std::int64_t seq = tokens.size(1);
    at::Tensor positions = options.positions;
    at::Tensor valid_rows;  // flat indices of the tokens that are not padding; undefined: all
    if (positions.defined()) {
        if (positions.dim() != 2 || positions.size(1) != seq ||
            (positions.size(0) != batch && positions.size(0) != 1)) {
            throw std::invalid_argument(
                fmt::format("positions have shape {}, expected (batch or 1, seq) for tokens {}",
                            c10::str(positions.sizes()), c10::str(tokens.sizes())));
        }
        positions = positions.to(tokens.device(), at::kLong);
        const at::Tensor valid = positions.expand({batch, seq}).reshape({-1}).ge(0);
        if (!valid.all().item<bool>()) valid_rows = valid.nonzero().squeeze(1);
    } else {
        // One row, broadcast over the batch: rotary tables and masks are computed once.
        const std::int64_t first = options.cache != nullptr ? options.cache->length() : 0;
        positions =
            at::arange(first, first + seq, tokens.options().dtype(at::kLong)).view({1, seq});
    }
    DecodingCache* cache = options.cache;
    if (cache != nullptr) {
        if (cache->broken()) {
            throw DecodingError(
                "the decoding cache is unusable: an earlier forward failed after some layers had "
                "appended to it");
        }
        if (cache->batch() != batch) {
            throw DecodingError(fmt::format("the decoding cache holds {} sequences, given {}",
                                            cache->batch(), batch));
        }
        if (seq > cache->free()) {
            throw DecodingError(fmt::format(
                "cannot add {} token{} to a decoding cache of {} tokens that holds {} already", seq,
                seq == 1 ? "" : "s", cache->capacity(), cache->length()));
        }
    }
    at::Tensor hidden = [&] {
        ProfileScope scope(OpFamily::kEmbedding);
        return at::embedding(embedding_, tokens);  // (batch, seq, d_model)
    }();
    sdk::ForwardState state;
    at::Tensor aux_loss = at::zeros({}, hidden.options().dtype(at::kFloat));
    // The plugin outputs' value checks of the pass, read once at its end (Note [Deferred checks]).
    DeferredChecks checks;
    try {
        for (std::size_t l = 0; l < layers_.size(); ++l) {
            LayerInput input{tokens, positions, valid_rows,
                             cache != nullptr ? &cache->layer(l) : nullptr};
            hidden = layers_[l]->forward(hidden, input, state, options, aux_loss);
        }
        checks.read();
    } catch (...) {
        // Some layers may have appended and others not: the cache no longer describes a prefix.
        if (cache != nullptr) cache->mark_broken();
        // A failed check of an earlier layer explains more than what followed from it.
        checks.read_after_failure();
        throw;
    }
    if (cache != nullptr) cache->advance(seq);
    if (options.last_logits_only) hidden = hidden.narrow(1, seq - 1, 1);
    const at::Tensor normed = [&] {
        ProfileScope scope(OpFamily::kNormsElementwise);
        return final_norm_->forward(hidden);
    }();
    if (options.hidden_only) return {at::Tensor(), aux_loss, normed};
    ProfileScope scope(OpFamily::kLmHeadLoss);
    return {at::linear(normed, head_weight()), aux_loss};
}

std::unique_ptr<DecodingCache> LanguageModel::make_decoding_cache(std::int64_t batch,
                                                                  std::int64_t capacity) {
    if (batch < 1 || capacity < 1) {
        throw std::invalid_argument(fmt::format(
            "a decoding cache needs a batch and a capacity of at least 1, got {} and {}", batch,
            capacity));
    }
    std::vector<std::shared_ptr<sdk::AttentionCache>> caches;
    for (const auto& layer : layers_) caches.push_back(layer->make_cache(batch, capacity));
    return std::make_unique<DecodingCache>(batch, capacity, std::move(caches));
}

MoeLayer* LanguageModel::moe_layer(std::int64_t index) const { return layers_.at(index)->moe(); }

bool LanguageModel::calibrates_layer(std::int64_t index) const {
    return layers_.at(index)->calibrates();
}

void LanguageModel::calibrate_layer(std::int64_t index, const sdk::CalibrationData& data) {
    layers_.at(index)->calibrate(data);
}

sdk::AttentionCost LanguageModel::attention_cost(std::int64_t context) const {
    sdk::AttentionCost total;
    total.flops_per_token = 0;
    for (const auto& layer : layers_) {
        const sdk::AttentionCost cost = layer->attention_cost(context);
        if (cost.flops_per_token < 0) return {};
        total.flops_per_token += cost.flops_per_token;
    }
    return total;
}

namespace {

// Parameters of `bank` in the whole model, also when this process holds a share of its experts.
std::int64_t bank_parameters(const ManagedExpertBank& bank) {
    std::int64_t numel = 0;
    for (const at::Tensor& p : bank.parameters()) numel += p.numel();
    return bank.shard().whole_numel(numel);
}

}  // namespace

ParameterCounts LanguageModel::parameter_counts() const {
    ParameterCounts counts;
    for (const at::Tensor& p : parameters()) counts.total += p.numel();
    for (const auto& layer : layers_) {
        if (layer->moe() == nullptr) continue;
        for (const auto& bank : layer->moe()->banks()) {
            std::int64_t local = 0;
            for (const at::Tensor& p : bank->parameters()) local += p.numel();
            counts.total += bank_parameters(*bank) - local;
            counts.expert += bank_parameters(*bank);
        }
    }
    return counts;
}

std::map<std::string, ExpertShard> LanguageModel::expert_shards() const {
    std::map<std::string, ExpertShard> shards;
    for (const auto& item : named_modules()) {
        const auto* bank = dynamic_cast<const ManagedExpertBank*>(item.value().get());
        if (bank == nullptr || bank->shard().whole()) continue;
        for (const auto& parameter : bank->named_parameters(/*recurse=*/false)) {
            shards[item.key() + "." + parameter.key()] = bank->shard();
        }
    }
    return shards;
}

double LanguageModel::active_parameters(const RoutingStats& stats) const {
    double active = static_cast<double>(parameter_counts().total);
    for (const auto& layer : layers_) {
        MoeLayer* moe = layer->moe();
        if (moe == nullptr) continue;
        const auto fractions = stats.layer_or_empty(moe->layer_index()).active_fractions();
        for (const auto& bank : moe->banks()) {
            const std::int64_t numel = bank_parameters(*bank);
            auto it = fractions.find(bank->spec().name);
            active -=
                static_cast<double>(numel) * (1.0 - (it == fractions.end() ? 1.0 : it->second));
        }
    }
    return active;
}

std::optional<double> LanguageModel::forward_flops_per_token(const RoutingStats& stats,
                                                             std::int64_t seq_len) const {
    auto matrix_numel = [](const torch::nn::Module& module) {
        double numel = 0;
        for (const at::Tensor& p : module.parameters()) {
            if (p.dim() >= 2) numel += static_cast<double>(p.numel());
        }
        return numel;
    };
    double matrices = matrix_numel(*this);
    if (head_.defined()) matrices -= static_cast<double>(embedding_.numel());  // a lookup
    double attention = 0;
    for (const auto& layer : layers_) {
        matrices -= matrix_numel(layer->attention());  // counted by the plugin's cost below
        MoeLayer* moe = layer->moe();
        if (moe == nullptr) continue;
        const auto fractions = stats.layer_or_empty(moe->layer_index()).active_fractions();
        for (const auto& bank : moe->banks()) {
            // The whole bank, also when this process holds a share of its experts, times the
            // fraction a token uses, in place of what matrix_numel counted here.
            const auto it = fractions.find(bank->spec().name);
            const double used = it == fractions.end() ? 1.0 : it->second;
            matrices += static_cast<double>(bank_parameters(*bank)) * used - matrix_numel(*bank);
        }
    }
    for (std::int64_t context = 1; context <= seq_len; ++context) {
        const sdk::AttentionCost cost = attention_cost(context);
        if (cost.flops_per_token < 0) return std::nullopt;
        attention += cost.flops_per_token;
    }
    return 2.0 * matrices + attention / static_cast<double>(std::max<std::int64_t>(seq_len, 1));
}

std::vector<at::Tensor> LanguageModel::decayed_parameters() const {
    std::vector<at::Tensor> out;
    for (const at::Tensor& p : parameters()) {
        if (p.dim() >= 2) out.push_back(p);
    }
    return out;
}

std::vector<at::Tensor> LanguageModel::undecayed_parameters() const {
    std::vector<at::Tensor> out;
    for (const at::Tensor& p : parameters()) {
        if (p.dim() < 2) out.push_back(p);
    }
    return out;
}

}  // namespace moelab::core
