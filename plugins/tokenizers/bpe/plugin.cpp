// Registers the `bpe` tokenizer: byte-level BPE trained on the recipe's training split.

#include <cctype>
#include <string>

#include "bpe_model.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/plugin.h"

namespace moelab::plugins::bpe {
namespace {

// {"type": "bpe", "version": 1, "pretokenizer": "gpt2", "merges": [[104, 101], ...]}
std::string serialize_merges(const std::vector<Merge>& merges) {
    std::string text = R"({"type": "bpe", "version": 1, "pretokenizer": "gpt2", "merges": [)";
    for (std::size_t i = 0; i < merges.size(); ++i) {
        text += (i ? ", [" : "[") + std::to_string(merges[i].first) + ", " +
                std::to_string(merges[i].second) + "]";
    }
    return text + "]}";
}

std::vector<Merge> parse_merges(std::string_view text) {
    if (text.find("\"type\": \"bpe\"") == std::string_view::npos) {
        throw sdk::Error("not a serialized bpe tokenizer");
    }
    const auto start = text.find("\"merges\"");
    if (start == std::string_view::npos) throw sdk::Error("serialized bpe tokenizer has no merges");
    std::vector<std::int32_t> numbers;
    for (std::size_t i = start; i < text.size(); ++i) {
        if (std::isdigit(static_cast<unsigned char>(text[i]))) {
            std::int32_t value = 0;
            while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
                value = value * 10 + (text[i++] - '0');
            }
            numbers.push_back(value);
        }
    }
    if (numbers.size() % 2 != 0) throw sdk::Error("serialized bpe merges are not pairs");
    std::vector<Merge> merges;
    for (std::size_t i = 0; i < numbers.size(); i += 2) merges.emplace_back(numbers[i], numbers[i + 1]);
    return merges;
}

class BpeTokenizer : public sdk::Tokenizer {
public:
    explicit BpeTokenizer(std::vector<Merge> merges) : model_(std::move(merges)) {}

    std::int64_t vocab_size() const override { return model_.vocab_size(); }
    sdk::SpecialTokens special_tokens() const override {
        sdk::SpecialTokens specials;
        specials.eos = kEndOfDocument;
        return specials;
    }
    void encode(std::string_view text, std::vector<std::int32_t>& out) const override {
        model_.encode(text, out);
    }
    std::string decode(std::span<const std::int32_t> ids) const override {
        return model_.decode(ids.data(), ids.size());
    }
    std::string serialize() const override { return serialize_merges(model_.merges()); }

private:
    BpeModel model_;
};

void register_components(sdk::Registrar& registrar) {
    sdk::TokenizerComponent component;
    component.name = "bpe";
    component.summary = "Byte-level BPE trained on the training split (GPT-2 pre-tokenization)";
    component.params.add_int("vocab_size", 4096, "Bytes + end-of-document token + merges")
        .between(258, 1 << 20);
    component.params.add_int("min_frequency", 2, "Stop merging when no pair occurs this often")
        .at_least(1);
    component.train = [](const sdk::TokenizerTrainingData& data, const sdk::Params& params) {
        return std::make_shared<BpeTokenizer>(train_merges(
            data.files, params.get_int("vocab_size"), params.get_int("min_frequency")));
    };
    component.load = [](std::string_view serialized, const sdk::Params&) {
        return std::make_shared<BpeTokenizer>(parse_merges(serialized));
    };
    registrar.add_tokenizer(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::bpe

MOELAB_PLUGIN("bpe", "1.0.0", "Byte-level BPE tokenizer", moelab::plugins::bpe::register_components)
