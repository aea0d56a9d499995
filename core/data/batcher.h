#pragma once

// Packed fixed-length training sequences. The training stream is cut into non-overlapping windows
// of seq_len + 1 tokens (inputs and next-token targets); every epoch visits all windows once in an
// order drawn from (seed, epoch), so a position (epoch, cursor) identifies the rest of training
// exactly and --resume continues the same sequence of batches.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "core/data/token_view.h"

namespace moelab::core {

struct DataPosition {
    std::int64_t epoch = 0;
    std::int64_t cursor = 0;  // next window within the epoch's order
};

class TrainBatcher {
  public:
    TrainBatcher(TokenView tokens, std::int64_t seq_len, std::int64_t batch_size,
                 std::uint64_t seed);

    // (batch, seq_len + 1) int64 on the CPU.
    at::Tensor next();

    DataPosition position() const { return position_; }
    void restore(const DataPosition& position);
    std::int64_t windows() const { return windows_; }

  private:
    void shuffle_epoch();

    TokenView tokens_;
    std::int64_t seq_len_;
    std::int64_t batch_size_;
    std::uint64_t seed_;
    std::int64_t windows_;
    std::vector<std::int64_t> order_;
    DataPosition position_;
};

// Consecutive non-overlapping windows of seq_len + 1 tokens covering `tokens` in order (the last
// window may be shorter), grouped into batches of at most batch_size; at most max_batches if > 0.
// Each batch is (batch, length) int64; windows of a batch have equal length.
std::vector<at::Tensor> evaluation_batches(TokenView tokens, std::int64_t seq_len,
                                           std::int64_t batch_size, std::int64_t max_batches);

}  // namespace moelab::core
