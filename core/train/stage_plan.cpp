#include "core/train/stage_plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/config/diagnostics.h"
#include "core/config/suggest.h"
#include "core/train/schedule.h"

namespace moelab::core {

bool glob_match(std::string_view pattern, std::string_view text) {
    // Iterative matching with one backtrack point, the last `*` seen.
    std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

StagePlan::StagePlan(const Recipe& recipe) {
    if (recipe.stages.empty()) {
        StageOptions whole;
        whole.name = "train";
        whole.steps = recipe.train.steps;
        whole.lr_peak = recipe.train.lr_peak;
        whole.lr_min = recipe.train.lr_min;
        whole.warmup_steps = recipe.train.warmup_steps;
        whole.seq_len = recipe.data.seq_len;
        whole.batch_size = recipe.train.batch_size;
        stages_.push_back(whole);
    } else {
        stages_ = recipe.stages;
    }
    std::int64_t start = 0;
    for (const StageOptions& stage : stages_) {
        starts_.push_back(start);
        start += stage.steps;
    }
}

StagePosition StagePlan::at(std::int64_t step) const {
    std::size_t index = 0;
    while (index + 1 < stages_.size() && step >= starts_[index + 1]) ++index;
    return {index, step - starts_[index]};
}

double StagePlan::learning_rate(std::int64_t step) const {
    const StagePosition position = at(step);
    const StageOptions& stage = stages_[position.index];
    return warmup_cosine(stage.lr_peak, stage.lr_min, stage.warmup_steps, stage.steps,
                         position.step_in_stage);
}

std::vector<std::vector<bool>> StagePlan::trainable(const Recipe& recipe,
                                                    const std::vector<std::string>& names) const {
    std::vector<std::vector<bool>> masks;
    std::vector<ConfigIssue> issues;
    for (std::size_t s = 0; s < stages_.size(); ++s) {
        std::vector<bool> mask(names.size(), false);
        for (const std::string& pattern : stages_[s].trainable) {
            bool matched = false;
            for (std::size_t i = 0; i < names.size(); ++i) {
                if (glob_match(pattern, names[i])) mask[i] = matched = true;
            }
            if (matched) continue;
            // The names nearest to the pattern (wildcards dropped), for the fix.
            std::string bare;
            for (char c : pattern) {
                if (c != '*' && c != '?') bare += c;
            }
            std::vector<std::pair<std::size_t, std::string>> near;
            for (const std::string& name : names)
                near.emplace_back(edit_distance(bare, name), name);
            std::sort(near.begin(), near.end());
            std::string listed;
            for (std::size_t i = 0; i < std::min<std::size_t>(3, near.size()); ++i) {
                listed += (i == 0 ? "" : ", ") + near[i].second;
            }
            const std::string key = fmt::format("stage[{}].trainable", s);
            issues.push_back(ConfigIssue{
                recipe.location_of(key), key,
                fmt::format("pattern \"{}\" matches no parameter of the model (nearest: {})",
                            pattern, listed)});
        }
        masks.push_back(std::move(mask));
    }
    if (!issues.empty()) throw ConfigError(std::move(issues));
    return masks;
}

}  // namespace moelab::core
