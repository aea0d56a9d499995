#pragma once

// The stages of a run (Note [Stages] in core/config/options.h): where each begins, its learning
// rate at every step, and which parameters it trains.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/options.h"

namespace moelab::core {

// `*` matches any run of characters (dots included), `?` exactly one; everything else itself.
bool glob_match(std::string_view pattern, std::string_view text);

struct StagePosition {
    std::size_t index = 0;           // which stage
    std::int64_t step_in_stage = 0;  // optimizer steps of this stage already taken
};

class StagePlan {
  public:
    // The recipe's [[stage]] tables, or one stage of train.steps training everything with
    // [train]'s schedule.
    explicit StagePlan(const Recipe& recipe);

    std::size_t size() const { return stages_.size(); }
    const StageOptions& stage(std::size_t index) const { return stages_.at(index); }
    std::int64_t first_step(std::size_t index) const { return starts_.at(index); }
    std::int64_t total_steps() const { return starts_.back() + stages_.back().steps; }

    // The stage of the optimizer step with 0-based index `step` (the last stage past the end).
    StagePosition at(std::int64_t step) const;
    // Learning rate of that step: linear warm-up from 0 to lr_peak over the stage's warmup_steps,
    // then cosine decay that would reach lr_min one step after the stage's last (schedule.h).
    double learning_rate(std::int64_t step) const;

    // For every stage, which of `names` (parameter names) it trains. ConfigError at the recipe's
    // stage[i].trainable for a pattern that matches no name, listing the names nearest to it.
    std::vector<std::vector<bool>> trainable(const Recipe& recipe,
                                             const std::vector<std::string>& names) const;

  private:
    std::vector<StageOptions> stages_;
    std::vector<std::int64_t> starts_;
};

}  // namespace moelab::core
