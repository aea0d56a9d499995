#pragma once

// State shared by all layers during one forward pass of the model, e.g. the softmax matrix an
// UniAttn anchor layer hands to the reuse layers of its superblock. The host creates a fresh
// ForwardState per forward pass and passes it to every layer in order; components keep their keys
// unique by prefixing them with their own name ("uniattn/probabilities").

#include <map>
#include <string>
#include <string_view>
#include <utility>

#include <ATen/core/Tensor.h>

namespace moelab::sdk {

class ForwardState {
  public:
    void put(std::string key, at::Tensor value) { slots_[std::move(key)] = std::move(value); }

    // An undefined tensor when absent.
    at::Tensor get(std::string_view key) const {
        auto it = slots_.find(key);
        return it == slots_.end() ? at::Tensor() : it->second;
    }

    bool contains(std::string_view key) const { return slots_.find(key) != slots_.end(); }

  private:
    std::map<std::string, at::Tensor, std::less<>> slots_;
};

}  // namespace moelab::sdk
