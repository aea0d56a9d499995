#include "core/data/batcher.h"

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>

#include "core/system/hash.h"

namespace moelab::core {

TrainBatcher::TrainBatcher(TokenView tokens, std::int64_t seq_len, std::int64_t batch_size,
                           std::uint64_t seed)
    : tokens_(tokens), seq_len_(seq_len), batch_size_(batch_size), seed_(seed) {
    windows_ = tokens.empty() ? 0 : (tokens.size() - 1) / seq_len;
    if (windows_ < 1) {
        throw std::runtime_error("the training split has " + std::to_string(tokens.size()) +
                                 " tokens, fewer than one sequence of data.seq_len + 1 = " +
                                 std::to_string(seq_len + 1));
    }
    shuffle_epoch();
}

void TrainBatcher::shuffle_epoch() {
    if (windows_ > kShuffledWindowsMax) {
        order_.clear();
        half_bits_ = 1;
        while ((std::uint64_t{1} << (2 * half_bits_)) < static_cast<std::uint64_t>(windows_)) {
            ++half_bits_;
        }
        epoch_key_ = mix_seed(seed_, static_cast<std::uint64_t>(position_.epoch) + 1);
        return;
    }
    order_.resize(static_cast<std::size_t>(windows_));
    for (std::int64_t i = 0; i < windows_; ++i) order_[i] = i;
    // std::mt19937_64 is specified exactly by the standard; the Fisher-Yates below is ours, so the
    // order does not depend on the standard library's shuffle.
    std::mt19937_64 rng(seed_ ^
                        (0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(position_.epoch + 1)));
    for (std::int64_t i = windows_ - 1; i > 0; --i) {
        const auto j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
        std::swap(order_[i], order_[j]);
    }
}

std::int64_t TrainBatcher::window_at(std::int64_t cursor) const {
    if (!order_.empty()) return order_[static_cast<std::size_t>(cursor)];
    // A balanced Feistel network is a bijection on [0, 4^half_bits); applying it again to values
    // outside [0, windows) (cycle walking) keeps it a bijection on [0, windows). The domain is
    // less than 4 windows, so a few steps on average.
    const std::uint64_t mask = (std::uint64_t{1} << half_bits_) - 1;
    std::uint64_t x = static_cast<std::uint64_t>(cursor);
    do {
        std::uint64_t left = x >> half_bits_, right = x & mask;
        for (std::uint64_t round = 0; round < 4; ++round) {
            const std::uint64_t f = mix_seed(epoch_key_ ^ (round << 56), right) & mask;
            const std::uint64_t next = left ^ f;
            left = right;
            right = next;
        }
        x = (left << half_bits_) | right;
    } while (x >= static_cast<std::uint64_t>(windows_));
    return static_cast<std::int64_t>(x);
}

TokenBatch TrainBatcher::next() {
    TokenBatch batch;
    batch.tokens = at::empty({batch_size_, seq_len_ + 1}, at::kLong);
    if (has_prompts()) batch.loss_mask = at::empty({batch_size_, seq_len_}, at::kBool);
    std::int64_t* out = batch.tokens.data_ptr<std::int64_t>();
    bool* counted = has_prompts() ? batch.loss_mask.data_ptr<bool>() : nullptr;
    for (std::int64_t b = 0; b < batch_size_; ++b) {
        next_window(out + b * (seq_len_ + 1),
                    counted != nullptr ? counted + b * seq_len_ : nullptr);
    }
    return batch;
}

void TrainBatcher::next_window(std::int64_t* out, bool* counted) {
    if (position_.cursor == windows_) {
        ++position_.epoch;
        position_.cursor = 0;
        shuffle_epoch();
    }
    const std::int64_t start = window_at(position_.cursor++) * seq_len_;
    tokens_.copy_to(start, seq_len_ + 1, out);
    if (counted != nullptr) tokens_.loss_mask().fill(start + 1, seq_len_, counted);
}

void TrainBatcher::restore(const DataPosition& position) {
    // A checkpoint from another corpus (or a damaged one) must not index past the windows.
    if (position.epoch < 0 || position.cursor < 0 || position.cursor > windows_) {
        throw std::runtime_error(
            "the saved data position (epoch " + std::to_string(position.epoch) + ", window " +
            std::to_string(position.cursor) + ") does not fit the training split's " +
            std::to_string(windows_) +
            " windows: the corpus or data.seq_len changed since the checkpoint was written");
    }
    position_ = position;
    shuffle_epoch();
}

std::vector<TokenBatch> evaluation_batches(TokenView tokens, std::int64_t seq_len,
                                           std::int64_t batch_size, std::int64_t max_batches) {
    std::vector<TokenBatch> batches;
    const std::int64_t total = tokens.size();
    const bool has_prompts = !tokens.loss_mask().counts_every_token();
    std::vector<std::vector<std::int64_t>> pending;
    std::vector<std::int64_t> starts;  // of the pending windows
    auto flush = [&] {
        if (pending.empty()) return;
        const auto rows = static_cast<std::int64_t>(pending.size());
        const auto length = static_cast<std::int64_t>(pending[0].size());
        TokenBatch batch;
        batch.tokens = at::empty({rows, length}, at::kLong);
        if (has_prompts) batch.loss_mask = at::empty({rows, length - 1}, at::kBool);
        for (std::int64_t b = 0; b < rows; ++b) {
            std::copy(pending[b].begin(), pending[b].end(),
                      batch.tokens.data_ptr<std::int64_t>() + b * length);
            if (has_prompts) {
                tokens.loss_mask().fill(starts[b] + 1, length - 1,
                                        batch.loss_mask.data_ptr<bool>() + b * (length - 1));
            }
        }
        batches.push_back(std::move(batch));
        pending.clear();
        starts.clear();
    };
    for (std::int64_t start = 0; start + 1 < total; start += seq_len) {
        const std::int64_t length = std::min(seq_len + 1, total - start);
        if (!pending.empty() && static_cast<std::int64_t>(pending[0].size()) != length) flush();
        pending.emplace_back(static_cast<std::size_t>(length));
        starts.push_back(start);
        tokens.copy_to(start, length, pending.back().data());
        if (static_cast<std::int64_t>(pending.size()) == batch_size) flush();
        if (max_batches > 0 && static_cast<std::int64_t>(batches.size()) == max_batches) {
            return batches;
        }
    }
    flush();
    if (max_batches > 0 && static_cast<std::int64_t>(batches.size()) > max_batches) {
        batches.resize(static_cast<std::size_t>(max_batches));
    }
    return batches;
}

}  // namespace moelab::core
