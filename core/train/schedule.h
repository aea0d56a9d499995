#pragma once

// Learning-rate schedule: linear warm-up from 0 to lr_peak over warmup_steps, then cosine decay
// towards lr_min, reached at step `steps` (one past the last 0-based step). Each stage of a run
// has its own (stage_plan.h).

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/config/options.h"

namespace moelab::core {

inline double warmup_cosine(double lr_peak, double lr_min, std::int64_t warmup_steps,
                            std::int64_t steps, std::int64_t step) {
    if (step < warmup_steps) {
        return lr_peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    }
    const double span = static_cast<double>(std::max<std::int64_t>(1, steps - warmup_steps));
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
    return lr_min + 0.5 * (lr_peak - lr_min) * (1.0 + std::cos(M_PI * progress));
}

inline double learning_rate(const TrainOptions& train, std::int64_t step) {
    return warmup_cosine(train.lr_peak, train.lr_min, train.warmup_steps, train.steps, step);
}

}  // namespace moelab::core
