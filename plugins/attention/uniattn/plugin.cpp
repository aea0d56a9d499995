// Registers the `uniattn` attention: softmax unification across SuperBlocks of layers (methods.md
// §6, the authors' modeling_llama_softmax_layer_init.py). Every layer is rotary attention (rope's
// weights and names, so a rope run initialises it through init.from); inside [begin, end) the
// first layer of each SuperBlock of `group_size` layers (the anchor) hands its softmax to the rest
// (the reuse layers), which attend with their own values and the anchor's probabilities and add
// the linear compensation W_c x̃ to their output (§6.3).
//
// Interpretations, also in docs/attention.md:
// * Reuse layers have no query or key projections at all (the authors' code keeps and caches
//   them, as a simulation); their decoding cache holds values only.
// * An anchor whose next layer is not a reuse layer is plain `rope` attention: a model without
//   reuse layers is rope bit for bit.
// * W_c starts at zero (no compensation until calibrated or trained); calibration (Note
//   [Calibration] in the SDK's calibration.h) fits it by least squares: over position-wise means
//   of the calibration samples as the authors do (`position_mean`), or over every token
//   (`tokens`), the variant methods.md §6.4 suggests.

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "moelab/sdk/calibration.h"
#include "moelab/sdk/plugin.h"
#include "moelab/sdk/rotary_attention.h"
#include "moelab/sdk/rotary_heads.h"
#include "superblock_layout.h"

namespace moelab::plugins::uniattn {
namespace {

// Where an anchor leaves its softmax, (batch * kv_heads, group * seq, keys): per key/value head
// its query heads' rows, i.e. (batch, heads, seq, keys) head-major.
constexpr char kProbabilitiesKey[] = "uniattn/probabilities";
// share = "key_value": where it leaves its rotated keys and values (batch, kv_heads, keys,
// head_dim) and their positions (batch or 1, keys) instead.
constexpr char kKeysKey[] = "uniattn/keys";
constexpr char kValuesKey[] = "uniattn/values";
constexpr char kKeyPositionsKey[] = "uniattn/key_positions";

enum class Share { kSoftmax, kKeyValue };

// Query, key, value and output weights drawn in rope's order from the layer's seed, so that a
// UniAttn model trained from scratch starts with rope's weights wherever it has them.
struct RotaryWeights {
    at::Tensor query, key, value, output;
};

RotaryWeights draw_rotary_weights(const sdk::AttentionContext& context) {
    const sdk::ModelShape& model = context.model;
    at::Generator generator = sdk::make_generator(context.seed);
    const double std = context.init_std;
    RotaryWeights weights;
    weights.query =
        sdk::normal_weight({model.heads * model.head_dim, model.d_model}, std, generator);
    weights.key =
        sdk::normal_weight({model.kv_heads * model.head_dim, model.d_model}, std, generator);
    weights.value =
        sdk::normal_weight({model.kv_heads * model.head_dim, model.d_model}, std, generator);
    weights.output = sdk::normal_weight({model.d_model, model.heads * model.head_dim},
                                        sdk::residual_init_std(std, model.layers), generator);
    return weights;
}

// The model's attention heads, as every layer of this plugin sees them.
struct HeadShape {
    explicit HeadShape(const sdk::ModelShape& model)
        : heads(model.heads),
          kv_heads(model.kv_heads),
          head_dim(model.head_dim),
          d_model(model.d_model) {}

    std::int64_t group() const { return heads / kv_heads; }  // query heads per key/value head
    double scale() const { return 1.0 / std::sqrt(static_cast<double>(head_dim)); }
    // (batch, heads, seq, head_dim) rows of per key/value head blocks -> (batch, seq, heads *
    // head_dim), the output projection's input.
    at::Tensor merge(const at::Tensor& per_head, std::int64_t batch, std::int64_t seq) const {
        return per_head.view({batch, heads, seq, head_dim})
            .transpose(1, 2)
            .reshape({batch, seq, heads * head_dim});
    }

    std::int64_t heads, kv_heads, head_dim, d_model;
};

// The rotary frequencies (1, head_dim / 2) in float64, copied to the input's device once (they are
// not module state, so the model's to(device) does not move them).
class Frequencies {
  public:
    explicit Frequencies(const at::Tensor& inv_freq)
        : table_(inv_freq.to(at::kDouble).contiguous()) {}
    const at::Tensor& on(const at::Device& device) {
        if (table_.device() != device) table_ = table_.to(device);
        return table_;
    }

  private:
    at::Tensor table_;
};

// Rotary attention that materialises its softmax and leaves it (or its keys and values) in the
// forward state for the reuse layers after it. The same computation as sdk::RotaryAttention's
// one-product path.
class AnchorAttention : public sdk::Attention {
  public:
    AnchorAttention(const sdk::AttentionContext& context, const at::Tensor& inv_freq, Share share)
        : share_(share), shape_(context.model), frequencies_(inv_freq) {
        RotaryWeights weights = draw_rotary_weights(context);
        w_query_ = register_parameter("w_query", weights.query);
        w_key_ = register_parameter("w_key", weights.key);
        w_value_ = register_parameter("w_value", weights.value);
        w_output_ = register_parameter("w_output", weights.output);
    }

    at::Tensor forward(const sdk::AttentionInput& input) override {
        const std::int64_t batch = input.hidden.size(0), seq = input.hidden.size(1);
        const sdk::RotaryHeads rotated = sdk::rotary_heads(
            input, w_query_, w_key_, w_value_, frequencies_.on(input.hidden.device()), shape_.heads,
            shape_.kv_heads, shape_.head_dim);
        const std::int64_t blocks = batch * shape_.kv_heads, keys = rotated.key.size(2);
        const at::Tensor probabilities = sdk::causal_probabilities(
            rotated.query.reshape({blocks, shape_.group() * seq, shape_.head_dim}), rotated.key,
            input.positions, rotated.key_positions, shape_.scale(), rotated.value.scalar_type());
        if (share_ == Share::kSoftmax) {
            input.state->put(kProbabilitiesKey, probabilities);
        } else {
            input.state->put(kKeysKey, rotated.key);
            input.state->put(kValuesKey, rotated.value);
            input.state->put(kKeyPositionsKey, rotated.key_positions);
        }
        const at::Tensor per_head =
            at::bmm(probabilities, rotated.value.reshape({blocks, keys, shape_.head_dim}));
        return at::linear(shape_.merge(per_head, batch, seq), w_output_);
    }

    std::unique_ptr<sdk::AttentionCache> make_cache(std::int64_t batch,
                                                    std::int64_t max_len) override {
        return std::make_unique<sdk::KeyValueCache>(
            batch, shape_.kv_heads, max_len, shape_.head_dim, shape_.head_dim, w_key_.device());
    }

    sdk::AttentionCost cost(std::int64_t context) const override {
        // As rope: query and output projections d_model x heads*head_dim, key and value
        // d_model x kv_heads*head_dim, then q.k and p.v over `context` keys per head.
        const double d = static_cast<double>(shape_.d_model);
        const double q = static_cast<double>(shape_.heads * shape_.head_dim);
        const double kv = static_cast<double>(shape_.kv_heads * shape_.head_dim);
        sdk::AttentionCost cost;
        cost.flops_per_token =
            2.0 * d * (2.0 * q + 2.0 * kv) + 4.0 * q * static_cast<double>(context);
        return cost;
    }

  private:
    Share share_;
    HeadShape shape_;
    Frequencies frequencies_;
    at::Tensor w_query_, w_key_, w_value_, w_output_;
};

// A cache that holds nothing: a layer that attends to another layer's cached keys and values
// only counts its tokens (the host checks every cache's length).
class NoCache : public sdk::AttentionCache {
  public:
    explicit NoCache(std::int64_t capacity) : capacity_(capacity) {}
    std::int64_t length() const override { return length_; }
    std::int64_t bytes_per_token() const override { return 0; }
    void append(std::int64_t added) {
        if (length_ + added > capacity_) {
            throw sdk::Error("attention cache overflow: " + std::to_string(length_ + added) +
                             " tokens for a cache of " + std::to_string(capacity_));
        }
        length_ += added;
    }

  private:
    std::int64_t capacity_;
    std::int64_t length_ = 0;
};

// share = "key_value", the cross-layer KV sharing baseline (Brandon et al. 2024, "CLA"; UniAttn's
// paper compares against it): its own rotated queries against the anchor's keys and values. No
// key or value projection, no compensation, nothing cached.
class KeyValueReuseAttention : public sdk::Attention {
  public:
    KeyValueReuseAttention(const sdk::AttentionContext& context, const at::Tensor& inv_freq)
        : layer_(context.layer_index), shape_(context.model), frequencies_(inv_freq) {
        RotaryWeights weights = draw_rotary_weights(context);
        w_query_ = register_parameter("w_query", weights.query);
        w_output_ = register_parameter("w_output", weights.output);
    }

    at::Tensor forward(const sdk::AttentionInput& input) override {
        const at::Tensor& x = input.hidden;
        const std::int64_t batch = x.size(0), seq = x.size(1), blocks = batch * shape_.kv_heads;
        const at::Tensor key = input.state->get(kKeysKey);
        const at::Tensor value = input.state->get(kValuesKey);
        if (!key.defined() || !value.defined()) {
            throw sdk::Error("layer " + std::to_string(layer_) +
                             " reuses its anchor's keys and values, but no uniattn anchor before "
                             "it in this forward pass left them");
        }
        if (input.cache != nullptr) {
            auto* cache = dynamic_cast<NoCache*>(input.cache);
            if (cache == nullptr) throw sdk::Error("a uniattn reuse layer was given another cache");
            cache->append(seq);
        }
        const auto [cos, sin] = sdk::rope_tables(frequencies_.on(x.device()), input.positions);
        const at::Tensor query = sdk::rotate_heads(
            at::linear(x, w_query_).view({batch, seq, shape_.heads, shape_.head_dim}), cos, sin,
            shape_.group());
        const std::int64_t keys = key.size(2);
        const at::Tensor probabilities = sdk::causal_probabilities(
            query.reshape({blocks, shape_.group() * seq, shape_.head_dim}), key, input.positions,
            input.state->get(kKeyPositionsKey), shape_.scale(), value.scalar_type());
        const at::Tensor per_head =
            at::bmm(probabilities, value.reshape({blocks, keys, shape_.head_dim}));
        return at::linear(shape_.merge(per_head, batch, seq), w_output_);
    }

    std::unique_ptr<sdk::AttentionCache> make_cache(std::int64_t batch,
                                                    std::int64_t max_len) override {
        (void)batch;
        return std::make_unique<NoCache>(max_len);
    }

    sdk::AttentionCost cost(std::int64_t context) const override {
        // Query and output projections, q.k and p.v over `context` keys per head.
        const double d = static_cast<double>(shape_.d_model);
        const double q = static_cast<double>(shape_.heads * shape_.head_dim);
        sdk::AttentionCost cost;
        cost.flops_per_token = 4.0 * d * q + 4.0 * q * static_cast<double>(context);
        return cost;
    }

  private:
    int layer_;
    HeadShape shape_;
    Frequencies frequencies_;
    at::Tensor w_query_, w_output_;
};

// A reuse layer's decoding cache: its values only (it has no keys), preallocated for max_len
// tokens, appended in place.
class ValueCache : public sdk::AttentionCache {
  public:
    ValueCache(std::int64_t batch, std::int64_t kv_heads, std::int64_t max_len,
               std::int64_t head_dim, at::Device device)
        : batch_(batch),
          kv_heads_(kv_heads),
          capacity_(max_len),
          head_dim_(head_dim),
          device_(device) {}

    std::int64_t length() const override { return length_; }
    std::int64_t bytes_per_token() const override {
        if (!values_.defined()) return -1;
        return static_cast<std::int64_t>(values_.nbytes()) / (batch_ * capacity_);
    }

    // values: (batch, kv_heads, seq, head_dim); returns every value held, a view.
    at::Tensor append(const at::Tensor& values) {
        const std::int64_t added = values.size(2);
        if (length_ + added > capacity_) {
            throw sdk::Error("attention cache overflow: " + std::to_string(length_ + added) +
                             " tokens for a cache of " + std::to_string(capacity_));
        }
        if (!values_.defined()) {
            values_ = at::zeros({batch_, kv_heads_, capacity_, head_dim_},
                                values.options().device(device_));
        }
        values_.narrow(2, length_, added).copy_(values);
        length_ += added;
        return values_.narrow(2, 0, length_);
    }

  private:
    std::int64_t batch_, kv_heads_, capacity_, head_dim_;
    at::Device device_;
    at::Tensor values_;
    std::int64_t length_ = 0;
};

// A layer that attends with its own values and its anchor's probabilities, plus the linear
// compensation (methods.md §6.3): out = W_o concat_h(P_anchor,h V_h) + W_c x̃ (+ b_c).
class ReuseAttention : public sdk::Attention, public sdk::Calibrated {
  public:
    ReuseAttention(const sdk::AttentionContext& context, bool compensation, bool bias,
                   bool token_level_fit)
        : layer_(context.layer_index), shape_(context.model), token_level_fit_(token_level_fit) {
        RotaryWeights weights = draw_rotary_weights(context);
        w_value_ = register_parameter("w_value", weights.value);
        w_output_ = register_parameter("w_output", weights.output);
        if (compensation) {
            w_compensation_ = register_parameter(
                "w_compensation", at::zeros({shape_.d_model, shape_.d_model}, at::kFloat));
            if (bias) {
                b_compensation_ =
                    register_parameter("b_compensation", at::zeros({shape_.d_model}, at::kFloat));
            }
        }
    }

    at::Tensor forward(const sdk::AttentionInput& input) override {
        const at::Tensor& x = input.hidden;
        const std::int64_t batch = x.size(0), seq = x.size(1), blocks = batch * shape_.kv_heads;
        const at::Tensor probabilities = input.state->get(kProbabilitiesKey);
        if (!probabilities.defined()) {
            throw sdk::Error("layer " + std::to_string(layer_) +
                             " reuses its anchor's softmax, but no uniattn anchor before it in "
                             "this forward pass left one");
        }
        at::Tensor value = at::linear(x, w_value_)
                               .view({batch, seq, shape_.kv_heads, shape_.head_dim})
                               .transpose(1, 2);
        if (input.cache != nullptr) {
            auto* cache = dynamic_cast<ValueCache*>(input.cache);
            if (cache == nullptr) throw sdk::Error("a uniattn reuse layer was given another cache");
            value = cache->append(value);
        }
        const std::int64_t keys = value.size(2);
        const std::int64_t rows = shape_.group() * seq;
        if (probabilities.dim() != 3 || probabilities.size(0) != blocks ||
            probabilities.size(1) != rows || probabilities.size(2) != keys) {
            throw sdk::Error("layer " + std::to_string(layer_) +
                             ": the anchor's softmax has shape " + c10::str(probabilities.sizes()) +
                             ", this layer needs (" + std::to_string(blocks) + ", " +
                             std::to_string(rows) + ", " + std::to_string(keys) + ")");
        }
        const at::Tensor per_head = at::bmm(probabilities.to(value.scalar_type()),
                                            value.reshape({blocks, keys, shape_.head_dim}));
        at::Tensor out = at::linear(shape_.merge(per_head, batch, seq), w_output_);
        if (w_compensation_.defined()) {
            out = out + at::linear(x, w_compensation_, b_compensation_);
        }
        return out;
    }

    std::unique_ptr<sdk::AttentionCache> make_cache(std::int64_t batch,
                                                    std::int64_t max_len) override {
        return std::make_unique<ValueCache>(batch, shape_.kv_heads, max_len, shape_.head_dim,
                                            w_value_.device());
    }

    sdk::AttentionCost cost(std::int64_t context) const override {
        // Value projection d_model x kv_heads*head_dim, output projection heads*head_dim x
        // d_model, the compensation d_model x d_model, and p.v over `context` keys per head; no
        // query or key projection and no q.k.
        const double d = static_cast<double>(shape_.d_model);
        const double q = static_cast<double>(shape_.heads * shape_.head_dim);
        const double kv = static_cast<double>(shape_.kv_heads * shape_.head_dim);
        const double compensation = w_compensation_.defined() ? 2.0 * d * d : 0.0;
        sdk::AttentionCost cost;
        cost.flops_per_token =
            2.0 * d * (q + kv) + compensation + 2.0 * q * static_cast<double>(context);
        return cost;
    }

    bool calibrates() const override { return w_compensation_.defined(); }

    // methods.md §6.4: W = pinv(X) A with A what the branch must add on top of the attention
    // without compensation, i.e. the host's target plus this layer's current compensation (zero
    // unless trained or calibrated before); singular values <= 1e-10 are dropped, as the authors'
    // pseudo-inverse does. The bias, if any, is zero afterwards (as theirs).
    void calibrate(const sdk::CalibrationData& data) override {
        const at::Tensor x = data.input.to(at::kDouble);
        at::Tensor target = data.target.to(at::kDouble);
        const at::Tensor w_old = w_compensation_.detach().to(at::kCPU, at::kDouble);
        target = target + at::matmul(x, w_old.t());
        if (b_compensation_.defined()) {
            target = target + b_compensation_.detach().to(at::kCPU, at::kDouble);
        }
        // Position-wise means over the samples (seq, d_model), or every token (samples * seq,
        // d_model).
        const at::Tensor inputs = token_level_fit_ ? x.reshape({-1, shape_.d_model}) : x.mean(0);
        const at::Tensor targets =
            token_level_fit_ ? target.reshape({-1, shape_.d_model}) : target.mean(0);
        const auto [u, s, vh] = at::linalg_svd(inputs, /*full_matrices=*/false);
        const at::Tensor kept = s.gt(1e-10);
        const at::Tensor inverse_s = at::where(kept, s.reciprocal(), at::zeros_like(s));
        // pinv(X) = V diag(1/s) U^T
        const at::Tensor w =
            at::matmul(vh.t() * inverse_s.unsqueeze(0), at::matmul(u.t(), targets));  // (d, d)
        at::NoGradGuard no_grad;
        w_compensation_.copy_(w.t().to(w_compensation_.scalar_type()));
        if (b_compensation_.defined()) b_compensation_.zero_();
    }

  private:
    int layer_;
    HeadShape shape_;
    bool token_level_fit_;
    at::Tensor w_value_, w_output_;
    at::Tensor w_compensation_, b_compensation_;  // (d_model, d_model), (d_model); undefined: off
};

SuperblockLayout layout_of(const sdk::ModelShape& model, const sdk::Params& params) {
    return superblock_layout(model.layers, params.get_int("group_size"), params.get_int("begin"),
                             params.get_int("end"));
}

void register_components(sdk::Registrar& registrar) {
    sdk::AttentionComponent component;
    component.name = "uniattn";
    component.summary =
        "Rotary attention with the softmax unified across SuperBlocks of layers (UniAttn) and a "
        "linear compensation";
    component.params.add_float("base", 10000.0, "RoPE base b: theta_i = b^(-2i/head_dim)")
        .at_least(1.0);
    component.params
        .add_int("group_size", 4,
                 "SuperBlock size G: the first layer of each computes the softmax, the G - 1 "
                 "after it reuse it")
        .at_least(1);
    component.params
        .add_int("begin", -1,
                 "first layer inside a SuperBlock; -1: layers / 2 (the upper half, as the "
                 "authors' scripts)")
        .at_least(-1);
    component.params
        .add_int("end", -1, "one past the last layer inside a SuperBlock; -1: every layer")
        .at_least(-1);
    component.params.add_choice(
        "share", "softmax", {"softmax", "key_value"},
        "what reuse layers take from their anchor: its softmax (UniAttn) or its keys and values "
        "(cross-layer KV sharing, the baseline; no compensation)");
    component.params.add_bool("compensation", true,
                              "reuse layers add W_c x (zero until calibrated or trained)");
    component.params.add_bool("compensation_bias", false,
                              "W_c has a bias (zero after calibration)");
    component.params.add_choice("calibration_fit", "position_mean", {"position_mean", "tokens"},
                                "least squares for W_c over position-wise means of the calibration "
                                "samples (the authors') or over every token");
    component.supports = [](const sdk::CapabilityQuery& query, const sdk::Params& params) {
        const sdk::Support fits = sdk::rotary_attention_fits(query);
        if (!fits.ok) return fits;
        const std::int64_t begin = params.get_int("begin"), end = params.get_int("end");
        const SuperblockLayout layout = layout_of(query.model, params);
        if ((begin >= 0 && end >= 0 && end <= begin) || layout.end < layout.begin) {
            return sdk::Support::no(
                "end (" + std::to_string(layout.end) + ") must be greater than begin (" +
                std::to_string(layout.begin) + "): SuperBlocks are layers [begin, end)");
        }
        return sdk::Support::yes();
    };
    component.features = {std::string(sdk::feature::kKvCache),
                          std::string(sdk::feature::kCalibration)};
    component.make_attention = [](const sdk::AttentionContext& context,
                                  const sdk::Params& params) -> std::shared_ptr<sdk::Attention> {
        const SuperblockLayout layout = layout_of(context.model, params);
        const at::Tensor inv_freq =
            sdk::rope_inv_freq(params.get_float("base"), context.model.head_dim).unsqueeze(0);
        const Share share =
            params.get_string("share") == "key_value" ? Share::kKeyValue : Share::kSoftmax;
        if (layout.reuses(context.layer_index) && share == Share::kKeyValue) {
            return std::make_shared<KeyValueReuseAttention>(context, inv_freq);
        }
        if (layout.reuses(context.layer_index)) {
            return std::make_shared<ReuseAttention>(
                context, params.get_bool("compensation"), params.get_bool("compensation_bias"),
                params.get_string("calibration_fit") == "tokens");
        }
        if (layout.hands_over(context.layer_index)) {
            return std::make_shared<AnchorAttention>(context, inv_freq, share);
        }
        return std::make_shared<sdk::RotaryAttention>(context, inv_freq);
    };
    registrar.add_attention(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::uniattn

MOELAB_PLUGIN("uniattn", "1.0.0", "Softmax unification across layers (UniAttn)",
              moelab::plugins::uniattn::register_components)
