#include "bpe_family_tokenizer.h"

#include <cstdio>

#include "moelab/sdk/error.h"

namespace moelab::plugins::bpe_family {

BpeFamilyTokenizer::BpeFamilyTokenizer(TokenizerFile file)
    : file_(std::move(file)), encoder_(file_.vocabulary, file_.pretokenizer, file_.encoding) {}

sdk::SpecialTokens BpeFamilyTokenizer::special_tokens() const {
    sdk::SpecialTokens specials;
    specials.eos = kEndOfDocument;  // below every scaffold id, so the model id equals it
    return specials;
}

void BpeFamilyTokenizer::encode(std::string_view text, std::vector<std::int32_t>& out) const {
    encoder_.encode(text, out);
}

std::string BpeFamilyTokenizer::decode(std::span<const std::int32_t> ids) const {
    return encoder_.decode(ids.data(), ids.size());
}

std::vector<sdk::TokenizerFact> BpeFamilyTokenizer::facts() const {
    const Vocabulary& v = file_.vocabulary;
    std::vector<sdk::TokenizerFact> facts;
    facts.push_back({"algorithm", file_.algorithm});
    std::string encoding = file_.encoding.policy == EncodingPolicy::kMergeRank
                               ? "merge rank"
                               : std::string("longest first (length in ") +
                                     (file_.encoding.length_unit == LengthUnit::kBytes ? "bytes" : "chars") +
                                     ", ties by " +
                                     (file_.encoding.tie_break == TieBreak::kRank ? "rank" : "position") + ")";
    facts.push_back({"encoding", encoding});
    facts.push_back({"pretokenizer", file_.pretokenizer.kind_name() +
                                         (file_.pretokenizer.split_digits ? ", digits split" : "")});
    facts.push_back({"merges", std::to_string(v.merges.size())});
    facts.push_back({"expanded vocabulary", std::to_string(v.expanded_size())});
    char share[32];
    std::snprintf(share, sizeof share, "%.2f%%",
                  100.0 * static_cast<double>(v.scaffold_count()) / v.expanded_size());
    facts.push_back({"scaffold tokens", std::to_string(v.scaffold_count()) + " (" + share +
                                            " of the expanded vocabulary)"});
    return facts;
}

std::string BpeFamilyTokenizer::export_as(std::string_view format) const {
    if (format == "hf") return export_hugging_face(file_);
    throw sdk::Error("unknown export format '" + std::string(format) + "' (available: hf)");
}

void add_training_params(sdk::ParamSchema& schema, const std::string& vocab_size_doc) {
    schema.add_int("vocab_size", 4096, vocab_size_doc).between(258, 1 << 22);
    schema.add_int("min_frequency", 2, "Stop training when no pair occurs this often").at_least(1);
    schema.add_choice("pretokenizer", "gpt2", {"gpt2", "whitespace"},
                      "Pieces that merges never cross: gpt2 (GPT-2's regex: letters, numbers, other, "
                      "whitespace) or whitespace (whitespace boundaries only)");
    schema.add_bool("split_digits", false, "Every digit is a piece of its own (LLaMA style)");
}

PretokenizerConfig pretokenizer_from(const sdk::Params& params) {
    PretokenizerConfig config;
    config.kind = parse_pretokenizer_kind(params.get_string("pretokenizer"));
    config.split_digits = params.get_bool("split_digits");
    return config;
}

TrainOptions train_options_from(const sdk::Params& params) {
    TrainOptions options;
    options.vocab_size = params.get_int("vocab_size");
    options.min_frequency = params.get_int("min_frequency");
    return options;
}

std::shared_ptr<BpeFamilyTokenizer> train_tokenizer(const sdk::TokenizerTrainingData& data,
                                                    const sdk::Params& params,
                                                    std::string component, std::string algorithm,
                                                    EncodingOptions encoding) {
    TokenizerFile file;
    file.component = std::move(component);
    file.algorithm = std::move(algorithm);
    file.encoding = encoding;
    file.pretokenizer = pretokenizer_from(params);
    const PretokenCounts corpus = count_pretokens(data.files, file.pretokenizer);
    file.vocabulary = file.algorithm == "scaffold-bpe"
                          ? train_scaffold_bpe(corpus, train_options_from(params))
                          : train_bpe(corpus, train_options_from(params));
    return std::make_shared<BpeFamilyTokenizer>(std::move(file));
}

TokenizerFile read_for(std::string_view serialized, const std::string& component,
                       std::initializer_list<const char*> algorithms) {
    TokenizerFile file = read_tokenizer_file(serialized);
    for (const char* algorithm : algorithms) {
        if (file.algorithm == algorithm) {
            file.component = component;
            return file;
        }
    }
    throw sdk::Error("the file holds a " + file.algorithm + " vocabulary, which the '" + component +
                     "' tokenizer cannot load (use the '" + file.component + "' tokenizer)");
}

}  // namespace moelab::plugins::bpe_family
