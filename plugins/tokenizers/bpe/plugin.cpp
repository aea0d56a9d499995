// Registers the `bpe` tokenizer: byte-level BPE, trained on the recipe's training split, encoded
// by merge rank. The algorithm lives in ../bpe_family (shared with lbpe and scaffold-bpe).

#include "bpe_family_tokenizer.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::bpe {
namespace {

using namespace bpe_family;

void register_components(sdk::Registrar& registrar) {
    sdk::TokenizerComponent component;
    component.name = "bpe";
    component.summary = "Byte-level BPE (exact textbook merges, incremental trainer), encoded by "
                        "merge rank; exports Hugging Face tokenizer.json";
    add_training_params(component.params,
                        "Vocabulary size: 256 bytes + end-of-document token + learned tokens");
    component.train = [](const sdk::TokenizerTrainingData& data, const sdk::Params& params) {
        return train_tokenizer(data, params, "bpe", "bpe");
    };
    // An LBPE file is a BPE vocabulary too; loaded here it is encoded by merge rank.
    component.load = [](std::string_view serialized, const sdk::Params&) {
        TokenizerFile file = read_for(serialized, "bpe", {"bpe"});
        file.encoding = EncodingOptions{};
        return std::make_shared<BpeFamilyTokenizer>(std::move(file));
    };
    registrar.add_tokenizer(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::bpe

MOELAB_PLUGIN("bpe", "2.0.0", "Byte-level BPE tokenizer", moelab::plugins::bpe::register_components)
