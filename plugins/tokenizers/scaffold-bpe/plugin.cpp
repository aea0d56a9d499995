// Registers the `scaffold-bpe` tokenizer: Scaffold-BPE (methods.md §8). Training is Algorithm 1
// (scaffold marking with re-activation; bytes never scaffold); encoding applies the merges of the
// expanded vocabulary by rank and then demolishes every scaffold token into its shortest normal
// decomposition. The model sees normal tokens only, and vocab_size counts normal tokens.

#include "bpe_family_tokenizer.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::scaffold_bpe {
namespace {

using namespace bpe_family;

void register_components(sdk::Registrar& registrar) {
    sdk::TokenizerComponent component;
    component.name = "scaffold-bpe";
    component.summary = "Scaffold-BPE: BPE without scaffold tokens in the output (methods.md §8)";
    add_training_params(component.params,
                        "Normal tokens (256 bytes + end-of-document + learned normal tokens); "
                        "scaffold tokens come on top");
    component.train = [](const sdk::TokenizerTrainingData& data, const sdk::Params& params) {
        return train_tokenizer(data, params, "scaffold-bpe", "scaffold-bpe");
    };
    component.load = [](std::string_view serialized, const sdk::Params&) {
        return std::make_shared<BpeFamilyTokenizer>(
            read_for(serialized, "scaffold-bpe", {"scaffold-bpe"}));
    };
    registrar.add_tokenizer(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::scaffold_bpe

MOELAB_PLUGIN("scaffold-bpe", "1.0.0", "Scaffold-BPE tokenizer",
              moelab::plugins::scaffold_bpe::register_components)
