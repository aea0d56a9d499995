#include "rope_attention.h"

#include <cmath>

#include "moelab/sdk/causal_mask.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/key_value_cache.h"
#include "moelab/sdk/rotary.h"

namespace moelab::plugins::rope {

RopeAttention::RopeAttention(const sdk::AttentionContext& context, double base)
    : d_model_(context.model.d_model),
      heads_(context.model.heads),
      kv_heads_(context.model.kv_heads),
      head_dim_(context.model.head_dim) {
    at::Generator generator = sdk::make_generator(context.seed);
    const double std = context.init_std;
    const double out_std = sdk::residual_init_std(std, context.model.layers);
    w_query_ = register_parameter(
        "w_query", sdk::normal_weight({heads_ * head_dim_, d_model_}, std, generator));
    w_key_ = register_parameter(
        "w_key", sdk::normal_weight({kv_heads_ * head_dim_, d_model_}, std, generator));
    w_value_ = register_parameter(
        "w_value", sdk::normal_weight({kv_heads_ * head_dim_, d_model_}, std, generator));
    w_output_ = register_parameter(
        "w_output", sdk::normal_weight({d_model_, heads_ * head_dim_}, out_std, generator));
    inv_freq_ = register_buffer("inv_freq", sdk::rope_inv_freq(base, head_dim_).unsqueeze(0));
}

at::Tensor RopeAttention::forward(const sdk::AttentionInput& input) {
    const at::Tensor& x = input.hidden;  // (batch, seq, d_model)
    const std::int64_t batch = x.size(0);
    const std::int64_t seq = x.size(1);

    auto project = [&](const at::Tensor& w, std::int64_t heads) {
        return at::linear(x, w).view({batch, seq, heads, head_dim_}).transpose(1, 2);
    };
    const auto [cos, sin] = sdk::rope_tables(inv_freq_, input.positions);
    at::Tensor query = sdk::apply_rope(project(w_query_, heads_), cos, sin);  // (b, h, s, hd)
    at::Tensor key = sdk::apply_rope(project(w_key_, kv_heads_), cos, sin);   // (b, kv, s, hd)
    at::Tensor value = project(w_value_, kv_heads_);                          // (b, kv, s, hd)

    at::Tensor key_positions = input.positions;  // (b, keys)
    if (input.cache != nullptr) {
        auto* cache = dynamic_cast<sdk::KeyValueCache*>(input.cache);
        if (cache == nullptr) throw sdk::Error("rope attention was given another plugin's cache");
        // Attention reads views of the filled part of the preallocated cache: no concatenation.
        const sdk::KeyValueCache::Filled filled = cache->append(key, value, input.positions);
        key = filled.keys;
        value = filled.values;
        key_positions = filled.positions;
    }

    // Grouped-query attention without copying keys or values per query head: query head h uses
    // key/value head h / group, so a key/value head's group of query heads is one block of
    // group * seq rows multiplied by its keys.
    const std::int64_t group = heads_ / kv_heads_;
    const std::int64_t keys = key.size(2);
    const at::Tensor grouped = query.reshape({batch, kv_heads_, group * seq, head_dim_});
    const at::Tensor scores = (at::matmul(grouped, key.transpose(-2, -1)).to(at::kFloat) /
                               std::sqrt(static_cast<double>(head_dim_)))
                                  .view({batch, kv_heads_, group, seq, keys});
    const at::Tensor allowed = sdk::causal_mask(input.positions, key_positions).unsqueeze(1);
    const at::Tensor probs = sdk::masked_softmax(scores, allowed)
                                 .to(value.scalar_type())
                                 .view({batch, kv_heads_, group * seq, keys});
    const at::Tensor mixed = at::matmul(probs, value)  // (b, kv, g * s, hd)
                                 .view({batch, heads_, seq, head_dim_})
                                 .transpose(1, 2)
                                 .reshape({batch, seq, heads_ * head_dim_});
    return at::linear(mixed, w_output_);
}

std::unique_ptr<sdk::AttentionCache> RopeAttention::make_cache(std::int64_t batch,
                                                               std::int64_t max_len) {
    return std::make_unique<sdk::KeyValueCache>(batch, kv_heads_, max_len, head_dim_, head_dim_,
                                                w_key_.device());
}

sdk::AttentionCost RopeAttention::cost(std::int64_t context) const {
    // Projections: query and output d_model x heads*head_dim each, key and value
    // d_model x kv_heads*head_dim each; then q.k and p.v over `context` keys for every head.
    const double d = static_cast<double>(d_model_);
    const double q = static_cast<double>(heads_ * head_dim_);
    const double kv = static_cast<double>(kv_heads_ * head_dim_);
    sdk::AttentionCost cost;
    cost.flops_per_token = 2.0 * d * (2.0 * q + 2.0 * kv) + 4.0 * q * static_cast<double>(context);
    return cost;
}

}  // namespace moelab::plugins::rope
