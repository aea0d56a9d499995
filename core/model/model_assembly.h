#pragma once

// The one way to build the model a resolved recipe describes, used by training (run), evaluation
// (eval, compare) and decoding (generate): every component is asked again about the actual
// vocabulary, device and the features the caller needs, then the model is constructed with the
// recipe's seeded initialisation (a checkpoint's weights are loaded over it by the caller).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model/language_model.h"

namespace moelab::core {

// ConfigError-like failures come from check_support (a component refusing names its reason).
std::shared_ptr<LanguageModel> assemble_model(const ResolvedRecipe& resolved, DeviceChoice device,
                                              std::int64_t vocab_size,
                                              std::function<at::Tensor()> token_counts,
                                              const std::vector<std::string>& features = {},
                                              std::shared_ptr<ProcessGroup> expert_group = nullptr);

}  // namespace moelab::core
