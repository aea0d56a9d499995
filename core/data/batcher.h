#pragma once

// Packed fixed-length training sequences. The training stream is cut into windows of seq_len + 1
// tokens (inputs and next-token targets) that start every seq_len tokens: window w holds tokens
// [w seq_len, (w + 1) seq_len], so consecutive windows share one token (the last target of one is
// the first input of the next) and every token but the first, and a tail shorter than seq_len, is
// a target once per epoch. Every epoch visits all windows once in an order drawn from (seed,
// epoch), so a position (epoch, cursor) identifies the rest of training exactly and --resume
// continues the same sequence of batches.
//
// Note [Window order]
// ~~~~~~~~~~~~~~~~~~~
// Up to kShuffledWindowsMax = 2^22 windows (537 M tokens at seq_len 128; the Brown corpus makes 42
// thousand) an epoch's order is a Fisher-Yates shuffle driven by std::mt19937_64, as it always
// was, so existing runs reproduce bit for bit; its order takes at most 32 MiB. Above, storing the
// order would make memory grow with the corpus (8 bytes a window: 600 MB for 10 GB of text), so the
// order is a keyed pseudo-random permutation computed per position instead: a Feistel network over
// the next power of four, walking cycles until it lands inside [0, windows). Constant memory, the
// same guarantees (every window once per epoch, determined by seed and epoch).
//
// Processes of a data-parallel run all follow the same position and each takes its own rows of
// every batch (Note [Parallel layout] in core/dist/parallel_layout.h), so the position does not
// depend on the number of processes.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "core/data/token_batch.h"
#include "core/data/token_view.h"

namespace moelab::core {

struct DataPosition {
    std::int64_t epoch = 0;
    std::int64_t cursor = 0;  // next window of the epoch's order
};

class TrainBatcher {
  public:
    TrainBatcher(TokenView tokens, std::int64_t seq_len, std::int64_t batch_size,
                 std::uint64_t seed);

    // Windows above which the order is computed, not stored (Note [Window order]).
    static constexpr std::int64_t kShuffledWindowsMax = std::int64_t{1} << 22;

    // (batch, seq_len + 1) tokens on the CPU, with a loss mask when the tokens have prompts.
    TokenBatch next();
    // The next window alone: out[0, seq_len + 1) and, unless null, which of its seq_len targets
    // the loss counts: counted[0, seq_len).
    void next_window(std::int64_t* out, bool* counted = nullptr);
    // Whether some of the tokens are prompts that the loss does not count.
    bool has_prompts() const { return !tokens_.loss_mask().counts_every_token(); }

    DataPosition position() const { return position_; }
    void restore(const DataPosition& position);
    std::int64_t windows() const { return windows_; }

    // The window at `cursor` of the current epoch's order.
    std::int64_t window_at(std::int64_t cursor) const;

  private:
    void shuffle_epoch();

    TokenView tokens_;
    std::int64_t seq_len_;
    std::int64_t batch_size_;
    std::uint64_t seed_;
    std::int64_t windows_;
    std::vector<std::int64_t> order_;  // the stored order (small corpora)
    int half_bits_ = 0;                // Feistel halves (large corpora)
    std::uint64_t epoch_key_ = 0;
    DataPosition position_;
};

// Windows of seq_len + 1 tokens starting every seq_len tokens (consecutive windows share one token,
// so every token but the first is predicted exactly once), covering `tokens` in order (the last
// window may be shorter), grouped into batches of at most batch_size; at most max_batches if > 0.
// Windows of a batch have equal length; batches carry a loss mask when the tokens have prompts.
std::vector<TokenBatch> evaluation_batches(TokenView tokens, std::int64_t seq_len,
                                           std::int64_t batch_size, std::int64_t max_batches);

}  // namespace moelab::core
