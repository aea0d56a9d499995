#pragma once

// A read-only view of a token id stream, 16- or 32-bit, wherever it lives: a memory-mapped shard
// (core/data/token_shard.h) or a vector, with which of its tokens a loss counts (loss_mask.h).
// Does not own the ids; whoever made it keeps them alive.

#include <cstdint>
#include <vector>

#include "core/data/loss_mask.h"

namespace moelab::core {

class TokenView {
  public:
    TokenView() = default;
    // Views `ids` (implicit, so that a vector can stand wherever a view is asked for).
    TokenView(const std::vector<std::int32_t>& ids)  // NOLINT(google-explicit-constructor)
        : wide_(ids.data()), size_(static_cast<std::int64_t>(ids.size())) {}
    TokenView(const std::int32_t* ids, std::int64_t size) : wide_(ids), size_(size) {}
    TokenView(const std::uint16_t* ids, std::int64_t size) : narrow_(ids), size_(size) {}

    std::int64_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    // Bytes per id in the storage: 2 or 4.
    int id_bytes() const { return narrow_ != nullptr ? 2 : 4; }

    const LossMask& loss_mask() const { return loss_mask_; }
    TokenView with_loss_mask(const LossMask& mask) const {
        TokenView view = *this;
        view.loss_mask_ = mask;
        return view;
    }

    std::int32_t operator[](std::int64_t i) const {
        return narrow_ != nullptr ? static_cast<std::int32_t>(narrow_[i]) : wide_[i];
    }

    // out[0, count) = ids [begin, begin + count), widened.
    void copy_to(std::int64_t begin, std::int64_t count, std::int64_t* out) const {
        if (narrow_ != nullptr) {
            for (std::int64_t i = 0; i < count; ++i) out[i] = narrow_[begin + i];
        } else {
            for (std::int64_t i = 0; i < count; ++i) out[i] = wide_[begin + i];
        }
    }

  private:
    const std::int32_t* wide_ = nullptr;
    const std::uint16_t* narrow_ = nullptr;
    std::int64_t size_ = 0;
    LossMask loss_mask_;
};

}  // namespace moelab::core
