#pragma once

// Whether a resolved recipe's router can be evaluated under a perturbation. Features are opt-in:
// a router has a perturbation only when its component lists the feature, so an evaluation the
// router cannot honour is reported as n/a with this reason, never as a number.

#include "core/moe/perturbation.h"
#include "core/plugin/resolve.h"
#include "moelab/sdk/capability.h"

namespace moelab::core {

sdk::Support perturbation_support(const ResolvedRecipe& resolved, const Perturbation& perturbation);

}  // namespace moelab::core
