#include "core/data/mixture_batcher.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "core/system/hash.h"

namespace moelab::core {

MixtureBatcher::MixtureBatcher(const std::vector<MixtureSource>& sources, std::int64_t seq_len,
                               std::int64_t batch_size, std::uint64_t seed)
    : seq_len_(seq_len),
      batch_size_(batch_size),
      choice_seed_(mix_seed(seed, 0x6d697874757265ULL)) {  // "mixture"
    if (sources.empty()) throw std::invalid_argument("a mixture needs at least one source");
    double largest = 0;
    for (const MixtureSource& source : sources) {
        if (!(source.weight > 0) || !std::isfinite(source.weight)) {
            throw std::invalid_argument(
                fmt::format("source '{}' has weight {}; weights must be finite and > 0",
                            source.name, source.weight));
        }
        largest = std::max(largest, source.weight);
    }
    // Relative to the largest weight, so that the sum cannot overflow.
    double total = 0;
    for (const MixtureSource& source : sources) total += source.weight / largest;
    double running = 0;
    for (const MixtureSource& source : sources) {
        // One source keeps the run's own data seed (its batches are what they always were);
        // in a mixture each source's order is keyed by its name, so adding or reordering sources
        // leaves the others' orders alone.
        const std::uint64_t source_seed =
            sources.size() == 1 ? seed : mix_seed(seed, ContentHash().add(source.name).value());
        try {
            batchers_.emplace_back(source.tokens, seq_len, 1, source_seed);
        } catch (const std::runtime_error& error) {
            throw std::runtime_error(fmt::format("source '{}': {}", source.name, error.what()));
        }
        names_.push_back(source.name);
        running += source.weight / largest;
        cumulative_.push_back(running / total);
    }
    cumulative_.back() = 1.0;
}

std::size_t MixtureBatcher::source_of(std::int64_t sequence) const {
    if (batchers_.size() == 1) return 0;
    const auto draw = static_cast<std::uint64_t>(sequence);
    // 53 random bits as a uniform draw in [0, 1).
    const double u = static_cast<double>(mix_seed(choice_seed_, draw) >> 11) * 0x1.0p-53;
    std::size_t s = 0;
    while (u >= cumulative_[s]) ++s;
    return s;
}

TokenBatch MixtureBatcher::next() {
    const bool has_prompts = std::any_of(batchers_.begin(), batchers_.end(),
                                         [](const TrainBatcher& b) { return b.has_prompts(); });
    TokenBatch batch;
    batch.tokens = at::empty({batch_size_, seq_len_ + 1}, at::kLong);
    if (has_prompts) batch.loss_mask = at::empty({batch_size_, seq_len_}, at::kBool);
    std::int64_t* out = batch.tokens.data_ptr<std::int64_t>();
    bool* counted = has_prompts ? batch.loss_mask.data_ptr<bool>() : nullptr;
    for (std::int64_t b = 0; b < batch_size_; ++b) {
        batchers_[source_of(sequences_++)].next_window(
            out + b * (seq_len_ + 1), counted != nullptr ? counted + b * seq_len_ : nullptr);
    }
    return batch;
}

MixturePosition MixtureBatcher::position() const {
    MixturePosition position;
    position.sequences = sequences_;
    for (const TrainBatcher& batcher : batchers_) position.sources.push_back(batcher.position());
    return position;
}

void MixtureBatcher::restore(const MixturePosition& position) {
    if (position.sources.size() != batchers_.size() || position.sequences < 0) {
        throw std::runtime_error(fmt::format(
            "the saved data position has {} sources, the recipe {}: the corpus changed since the "
            "checkpoint was written",
            position.sources.size(), batchers_.size()));
    }
    for (std::size_t s = 0; s < batchers_.size(); ++s) {
        try {
            batchers_[s].restore(position.sources[s]);
        } catch (const std::runtime_error& error) {
            throw std::runtime_error(batchers_.size() == 1
                                         ? std::string(error.what())
                                         : fmt::format("source '{}': {}", names_[s], error.what()));
        }
    }
    sequences_ = position.sequences;
}

}  // namespace moelab::core
