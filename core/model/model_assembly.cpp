#include "core/model/model_assembly.h"

namespace moelab::core {

std::shared_ptr<LanguageModel> assemble_model(const ResolvedRecipe& resolved, DeviceChoice device,
                                              std::int64_t vocab_size,
                                              std::function<at::Tensor()> token_counts,
                                              const std::vector<std::string>& features,
                                              std::shared_ptr<ProcessGroup> expert_group) {
    check_support(resolved, capability_query(resolved.recipe, device, vocab_size, features));
    return std::make_shared<LanguageModel>(resolved, vocab_size, std::move(token_counts),
                                           std::move(expert_group));
}

}  // namespace moelab::core
