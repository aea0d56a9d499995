#pragma once

// Which layers of a UniAttn model compute their own softmax and which reuse it (methods.md §6.2,
// the authors' modeling_llama_softmax_layer_init.py): layers [begin, end) are cut into
// SuperBlocks of `group_size`; the first layer of each (the anchor) computes its softmax and
// hands it to the rest of its SuperBlock (the reuse layers). Layers outside [begin, end) are plain
// attention layers. Torch-free, so that tests and docs can print a layout.

#include <cstdint>

namespace moelab::plugins::uniattn {

struct SuperblockLayout {
    std::int64_t layers = 0;
    std::int64_t group_size = 1;
    std::int64_t begin = 0;  // first layer inside a SuperBlock
    std::int64_t end = 0;    // one past the last

    // anchor(l) := l < begin or l >= end or (l - begin) % group_size == 0.
    bool anchor(std::int64_t layer) const {
        return layer < begin || layer >= end || (layer - begin) % group_size == 0;
    }
    bool reuses(std::int64_t layer) const { return !anchor(layer); }
    // The anchor's softmax is needed by the layer after it.
    bool hands_over(std::int64_t layer) const {
        return anchor(layer) && layer + 1 < layers && reuses(layer + 1);
    }
    std::int64_t reuse_layers() const {
        std::int64_t count = 0;
        for (std::int64_t layer = 0; layer < layers; ++layer) count += reuses(layer) ? 1 : 0;
        return count;
    }
};

// The recipe's options resolved for a model of `layers` layers: begin = -1 is the upper half
// (layers / 2, as the authors' scripts: 16 of 32) and end = -1 the last layer, both clamped to
// the model's layers.
inline SuperblockLayout superblock_layout(std::int64_t layers, std::int64_t group_size,
                                          std::int64_t begin, std::int64_t end) {
    SuperblockLayout layout;
    layout.layers = layers;
    layout.group_size = group_size;
    layout.begin = begin < 0 ? layers / 2 : (begin < layers ? begin : layers);
    layout.end = end < 0 ? layers : (end < layers ? end : layers);
    return layout;
}

}  // namespace moelab::plugins::uniattn
