#pragma once

// The sdk::Tokenizer of the bpe, lbpe and scaffold-bpe plugins, and the recipe options they share.
// The three differ in the trainer (bpe/lbpe: train_bpe; scaffold-bpe: train_scaffold_bpe) and the
// encoding policy (lbpe: longest first); everything else is this class.

#include <memory>
#include <string>

#include "encoder.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/tokenizer.h"
#include "tokenizer_file.h"
#include "trainer.h"

namespace moelab::plugins::bpe_family {

class BpeFamilyTokenizer : public sdk::Tokenizer {
public:
    explicit BpeFamilyTokenizer(TokenizerFile file);

    std::int64_t vocab_size() const override { return encoder_.model_vocab_size(); }
    sdk::SpecialTokens special_tokens() const override;
    void encode(std::string_view text, std::vector<std::int32_t>& out) const override;
    std::string decode(std::span<const std::int32_t> ids) const override;
    std::string serialize() const override { return write_tokenizer_file(file_); }
    std::vector<sdk::TokenizerFact> facts() const override;
    std::string export_as(std::string_view format) const override;

    const TokenizerFile& file() const { return file_; }
    const Encoder& encoder() const { return encoder_; }

private:
    TokenizerFile file_;
    Encoder encoder_;
};

// Options every BPE-family plugin takes: vocab_size, min_frequency, pretokenizer, split_digits.
void add_training_params(sdk::ParamSchema& schema, const std::string& vocab_size_doc);
PretokenizerConfig pretokenizer_from(const sdk::Params& params);
TrainOptions train_options_from(const sdk::Params& params);

// Trains on the recipe's training files with the trainer of `algorithm` ("bpe" or
// "scaffold-bpe") and the options of add_training_params().
std::shared_ptr<BpeFamilyTokenizer> train_tokenizer(const sdk::TokenizerTrainingData& data,
                                                    const sdk::Params& params,
                                                    std::string component, std::string algorithm,
                                                    EncodingOptions encoding = {});

// Reads a serialized tokenizer and checks it was trained by one of `algorithms` (a file of another
// algorithm gets an error naming the component that loads it).
TokenizerFile read_for(std::string_view serialized, const std::string& component,
                       std::initializer_list<const char*> algorithms);

}  // namespace moelab::plugins::bpe_family
