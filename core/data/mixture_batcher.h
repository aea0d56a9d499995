#pragma once

// Training sequences drawn from a mixture of sources. Each sequence comes from source s with
// probability weight_s / sum(weights); within a source, sequences follow that source's own
// shuffled epochs (TrainBatcher: every window once per epoch), so a small source with a large
// weight is repeated and a large one with a small weight is not exhausted.
//
// The choice for the n-th sequence is a pure function of (seed, n): no generator state. Together
// with each source's (epoch, cursor), the count of sequences drawn is therefore the whole position,
// and restoring it continues the same sequence of batches bit for bit (--resume). With one source
// every sequence comes from it and its order is TrainBatcher's with the same seed, so a recipe
// with one source reads exactly what it read before mixtures existed.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/data/batcher.h"
#include "core/data/token_view.h"

namespace moelab::core {

struct MixtureSource {
    std::string name;
    double weight = 1;  // > 0
    TokenView tokens;
};

struct MixturePosition {
    std::int64_t sequences = 0;         // drawn so far
    std::vector<DataPosition> sources;  // each source's position, in the mixture's order
};

class MixtureBatcher {
  public:
    // std::runtime_error naming the source when one has less than one sequence of tokens.
    MixtureBatcher(const std::vector<MixtureSource>& sources, std::int64_t seq_len,
                   std::int64_t batch_size, std::uint64_t seed);

    // (batch, seq_len + 1) tokens on the CPU, with a loss mask when a source has prompts
    // (every target of the other sources counts).
    TokenBatch next();

    MixturePosition position() const;
    // std::runtime_error when the position does not fit these sources (another corpus, another
    // seq_len, a damaged checkpoint).
    void restore(const MixturePosition& position);

    // The source that the `sequence`-th sequence is drawn from.
    std::size_t source_of(std::int64_t sequence) const;
    std::size_t size() const { return batchers_.size(); }
    const std::string& name(std::size_t source) const { return names_[source]; }

  private:
    std::vector<TrainBatcher> batchers_;
    std::vector<std::string> names_;
    std::vector<double> cumulative_;  // normalised cumulative weights; the last is 1
    std::int64_t seq_len_, batch_size_;
    std::uint64_t choice_seed_;
    std::int64_t sequences_ = 0;
};

}  // namespace moelab::core
