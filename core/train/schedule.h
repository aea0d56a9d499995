#pragma once

// Learning-rate schedule: linear warm-up from 0 to lr_peak over warmup_steps, then cosine decay to
// lr_min at the last step. `step` is 0-based.

#include <cmath>
#include <cstdint>

#include "core/config/options.h"

namespace moelab::core {

inline double learning_rate(const TrainOptions& train, std::int64_t step) {
    if (step < train.warmup_steps) {
        return train.lr_peak * static_cast<double>(step + 1) / static_cast<double>(train.warmup_steps);
    }
    const double span = static_cast<double>(std::max<std::int64_t>(1, train.steps - train.warmup_steps));
    const double progress = std::min(1.0, static_cast<double>(step - train.warmup_steps) / span);
    return train.lr_min + 0.5 * (train.lr_peak - train.lr_min) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace moelab::core
