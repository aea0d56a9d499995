#include "rope_attention.h"

#include <cmath>
#include <limits>

#include "moelab/sdk/error.h"
#include "moelab/sdk/init.h"
#include "moelab/sdk/rotary.h"

namespace moelab::plugins::rope {

RopeCache::RopeCache(std::int64_t batch, std::int64_t kv_heads, std::int64_t max_len,
                     std::int64_t head_dim, const at::TensorOptions& options)
    : keys_(at::zeros({batch, kv_heads, max_len, head_dim}, options)),
      values_(at::zeros({batch, kv_heads, max_len, head_dim}, options)) {}

std::pair<at::Tensor, at::Tensor> RopeCache::append(const at::Tensor& keys,
                                                    const at::Tensor& values) {
    const std::int64_t added = keys.size(2);
    if (length_ + added > keys_.size(2)) {
        throw sdk::Error("attention cache overflow: " + std::to_string(length_ + added) +
                         " tokens for a cache of " + std::to_string(keys_.size(2)));
    }
    keys_.narrow(2, length_, added).copy_(keys);
    values_.narrow(2, length_, added).copy_(values);
    length_ += added;
    return {keys_.narrow(2, 0, length_), values_.narrow(2, 0, length_)};
}

RopeAttention::RopeAttention(const sdk::AttentionContext& context, double base)
    : heads_(context.model.heads),
      kv_heads_(context.model.kv_heads),
      head_dim_(context.model.head_dim) {
    const std::int64_t d_model = context.model.d_model;
    at::Generator generator = sdk::make_generator(context.seed);
    const double std = context.init_std;
    const double out_std = sdk::residual_init_std(std, context.model.layers);
    w_query_ = register_parameter(
        "w_query", sdk::normal_weight({heads_ * head_dim_, d_model}, std, generator));
    w_key_ = register_parameter(
        "w_key", sdk::normal_weight({kv_heads_ * head_dim_, d_model}, std, generator));
    w_value_ = register_parameter(
        "w_value", sdk::normal_weight({kv_heads_ * head_dim_, d_model}, std, generator));
    w_output_ = register_parameter(
        "w_output", sdk::normal_weight({d_model, heads_ * head_dim_}, out_std, generator));
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

    at::Tensor key_positions = input.positions;
    if (input.cache != nullptr) {
        auto* cache = dynamic_cast<RopeCache*>(input.cache);
        if (cache == nullptr) throw sdk::Error("rope attention was given another plugin's cache");
        const std::int64_t start = cache->length();
        std::tie(key, value) = cache->append(key, value);
        key_positions = at::arange(0, start + seq, input.positions.options());
    }
    if (kv_heads_ != heads_) {
        key = key.repeat_interleave(heads_ / kv_heads_, 1);
        value = value.repeat_interleave(heads_ / kv_heads_, 1);
    }

    // Causal: a query at position p sees keys at positions <= p. Softmax in fp32.
    at::Tensor scores = at::matmul(query, key.transpose(-2, -1)).to(at::kFloat) /
                        std::sqrt(static_cast<double>(head_dim_));  // (b, h, s, keys)
    const at::Tensor future = key_positions.view({1, -1}) > input.positions.view({-1, 1});
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
    const at::Tensor probs = scores.softmax(-1).to(value.scalar_type());
    const at::Tensor mixed = at::matmul(probs, value)  // (b, h, s, hd)
                                 .transpose(1, 2)
                                 .reshape({batch, seq, heads_ * head_dim_});
    return at::linear(mixed, w_output_);
}

std::unique_ptr<sdk::AttentionCache> RopeAttention::make_cache(std::int64_t batch,
                                                               std::int64_t max_len) {
    return std::make_unique<RopeCache>(batch, kv_heads_, max_len, head_dim_, w_key_.options());
}

}  // namespace moelab::plugins::rope
