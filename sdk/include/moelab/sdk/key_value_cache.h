#pragma once

// A ready-made AttentionCache for attention that caches keys and values per key/value head:
// max_len token slots allocated once, appended in place, read back as views of the filled part.

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "moelab/sdk/attention.h"
#include "moelab/sdk/error.h"

namespace moelab::sdk {

class KeyValueCache : public AttentionCache {
  public:
    // What the cache holds after an append: views of the filled slots.
    struct Filled {
        at::Tensor keys;       // (batch, kv_heads, length, head_dim)
        at::Tensor values;     // (batch, kv_heads, length, value_dim)
        at::Tensor positions;  // (batch, length) int64, negative for padding slots
    };

    // The slots are allocated at the first append, on `device`, in the dtype of the keys and
    // values appended (the compute dtype: bfloat16 under autocast, not the weights' float32).
    KeyValueCache(std::int64_t batch, std::int64_t kv_heads, std::int64_t max_len,
                  std::int64_t head_dim, std::int64_t value_dim, at::Device device)
        : batch_(batch),
          kv_heads_(kv_heads),
          capacity_(max_len),
          head_dim_(head_dim),
          value_dim_(value_dim),
          device_(device) {}

    std::int64_t length() const override { return length_; }
    std::int64_t capacity() const { return capacity_; }
    // -1 until the first append fixes the dtype.
    std::int64_t bytes_per_token() const override {
        if (!keys_.defined()) return -1;
        return static_cast<std::int64_t>(keys_.nbytes() + values_.nbytes() + positions_.nbytes()) /
               (batch_ * capacity_);
    }

    // keys: (batch, kv_heads, seq, head_dim); values likewise; positions: (batch, seq) or
    // (1, seq) for the same positions in every row.
    Filled append(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& positions) {
        const std::int64_t added = keys.size(2);
        if (length_ + added > capacity_) {
            throw Error("attention cache overflow: " + std::to_string(length_ + added) +
                        " tokens for a cache of " + std::to_string(capacity_));
        }
        if (!keys_.defined()) {
            const at::TensorOptions options = keys.options().device(device_);
            keys_ = at::zeros({batch_, kv_heads_, capacity_, head_dim_}, options);
            values_ = at::zeros({batch_, kv_heads_, capacity_, value_dim_},
                                options.dtype(values.scalar_type()));
            positions_ = at::full({batch_, capacity_}, -1, options.dtype(at::kLong));
        }
        keys_.narrow(2, length_, added).copy_(keys);
        values_.narrow(2, length_, added).copy_(values);
        positions_.narrow(1, length_, added).copy_(positions);
        length_ += added;
        return {keys_.narrow(2, 0, length_), values_.narrow(2, 0, length_),
                positions_.narrow(1, 0, length_)};
    }

  private:
    std::int64_t batch_, kv_heads_, capacity_, head_dim_, value_dim_;
    at::Device device_;
    at::Tensor keys_;
    at::Tensor values_;
    at::Tensor positions_;
    std::int64_t length_ = 0;
};

}  // namespace moelab::sdk
