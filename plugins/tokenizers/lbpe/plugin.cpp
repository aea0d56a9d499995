// Registers the `lbpe` tokenizer: LBPE (methods.md §7), a BPE vocabulary encoded long token
// first. Training is unchanged BPE; within each pre-token the encoder applies, among adjacent
// token pairs whose concatenation is a vocabulary token, the one with the longest result first,
// ties by the result's merge rank (or leftmost position), every occurrence left to right.
// Interpretation of the paper's abstract: the length unit and the tie-break are options.

#include "bpe_family_tokenizer.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::lbpe {
namespace {

using namespace bpe_family;

EncodingOptions encoding_from(const sdk::Params& params) {
    EncodingOptions encoding;
    encoding.policy = EncodingPolicy::kLongestFirst;
    encoding.length_unit =
        params.get_string("length_unit") == "bytes" ? LengthUnit::kBytes : LengthUnit::kChars;
    encoding.tie_break =
        params.get_string("tie_break") == "rank" ? TieBreak::kRank : TieBreak::kPosition;
    return encoding;
}

void register_components(sdk::Registrar& registrar) {
    sdk::TokenizerComponent component;
    component.name = "lbpe";
    component.summary = "LBPE: a BPE vocabulary encoded long token first (methods.md §7)";
    add_training_params(component.params,
                        "Vocabulary size: 256 bytes + end-of-document token + learned tokens");
    component.params.add_choice("length_unit", "bytes", {"bytes", "chars"},
                                "Token length for the longest-first order: bytes or Unicode "
                                "characters (when training, or loading a plain BPE file; an LBPE "
                                "file keeps the options it records)");
    component.params.add_choice("tie_break", "rank", {"rank", "position"},
                                "Among equally long results: the earlier merge (rank), then the "
                                "leftmost; or the leftmost only (position) (when training, or "
                                "loading a plain BPE file; an LBPE file keeps its own)");
    component.train = [](const sdk::TokenizerTrainingData& data, const sdk::Params& params) {
        return train_tokenizer(data, params, "lbpe", "bpe", encoding_from(params));
    };
    // Any BPE vocabulary. A file written by lbpe is encoded as it records (the tokenizer a run
    // trained, or one made by `moelab tokenizer train --algo lbpe`, encodes the way it was made,
    // whatever the loader's defaults); a plain BPE file gets the options of the recipe / --set.
    component.load = [](std::string_view serialized, const sdk::Params& params) {
        TokenizerFile file = read_for(serialized, "lbpe", {"bpe"});
        if (file.encoding.policy != EncodingPolicy::kLongestFirst) file.encoding = encoding_from(params);
        return std::make_shared<BpeFamilyTokenizer>(std::move(file));
    };
    registrar.add_tokenizer(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::lbpe

MOELAB_PLUGIN("lbpe", "1.0.0", "LBPE: long-token-first BPE encoding",
              moelab::plugins::lbpe::register_components)
