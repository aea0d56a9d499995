#pragma once

// The attention caches of one decoding session: one per layer, each created by that layer's
// attention plugin (make_cache) and holding the plugin's library loaded for as long as it lives.
// Every row of the batch has the same number of filled slots; rows with shorter prompts are
// left-padded (Note [Positions and padding] in the SDK's attention.h).

#include <cstdint>
#include <memory>
#include <vector>

#include "moelab/sdk/attention.h"

namespace moelab::core {

class DecodingCache {
  public:
    DecodingCache(std::int64_t batch, std::int64_t capacity,
                  std::vector<std::shared_ptr<sdk::AttentionCache>> layers)
        : batch_(batch), capacity_(capacity), layers_(std::move(layers)) {}

    std::int64_t batch() const { return batch_; }
    std::int64_t capacity() const { return capacity_; }  // token slots per row
    std::int64_t length() const { return length_; }      // slots filled so far
    std::int64_t free() const { return capacity_ - length_; }

    sdk::AttentionCache& layer(std::size_t index) const { return *layers_.at(index); }
    std::size_t layers() const { return layers_.size(); }

    // Bytes all layers' caches hold per token of one sequence; -1 when a plugin does not say.
    std::int64_t bytes_per_token() const {
        std::int64_t total = 0;
        for (const auto& cache : layers_) {
            const std::int64_t bytes = cache->bytes_per_token();
            if (bytes < 0) return -1;
            total += bytes;
        }
        return total;
    }

    // Called by the model once every layer has appended `tokens` slots.
    void advance(std::int64_t tokens) { length_ += tokens; }
    // A forward that failed part-way leaves the layers' caches at different lengths; the model
    // refuses a broken cache.
    void mark_broken() { broken_ = true; }
    bool broken() const { return broken_; }

  private:
    std::int64_t batch_;
    std::int64_t capacity_;
    std::int64_t length_ = 0;
    bool broken_ = false;
    std::vector<std::shared_ptr<sdk::AttentionCache>> layers_;
};

}  // namespace moelab::core
