#pragma once

// A batch of token windows for next-token prediction: inputs tokens[:, :-1], targets
// tokens[:, 1:], and which targets the loss counts (Note [Response-only loss] in loss_mask.h).

#include <cstdint>

#include <ATen/ATen.h>

namespace moelab::core {

struct TokenBatch {
    at::Tensor tokens;     // (batch, length) int64
    at::Tensor loss_mask;  // (batch, length - 1) bool over the targets; undefined: all count

    std::int64_t rows() const { return tokens.size(0); }
    at::Tensor inputs() const { return tokens.narrow(1, 0, tokens.size(1) - 1); }
    at::Tensor targets() const { return tokens.narrow(1, 1, tokens.size(1) - 1); }
    // Targets the loss counts.
    std::int64_t loss_targets() const {
        return loss_mask.defined() ? loss_mask.sum().item<std::int64_t>() : targets().numel();
    }
    // Rows [first, first + count).
    TokenBatch narrow_rows(std::int64_t first, std::int64_t count) const {
        return {tokens.narrow(0, first, count),
                loss_mask.defined() ? loss_mask.narrow(0, first, count) : at::Tensor()};
    }
    TokenBatch to(const at::Device& device) const {
        return {tokens.to(device), loss_mask.defined() ? loss_mask.to(device) : at::Tensor()};
    }
};

}  // namespace moelab::core
