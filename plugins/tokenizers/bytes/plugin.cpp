// The `bytes` tokenizer: every byte is a token (ids 0..255), plus an end-of-document token (256).
// Lossless on any byte string; needs no training.

#include <string>

#include <nlohmann/json.hpp>

#include "byte_level.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/plugin.h"
#include "tokenizer_file.h"

namespace moelab::plugins::bytes {
namespace {

constexpr std::int32_t kEndOfDocument = 256;
// tokenizer.json names it as the BPE family does, at the same id.
static_assert(kEndOfDocument == bpe_family::kEndOfDocument);
// "tokenizer" names the component that loads the file (what `moelab tokenizer` reads); files
// written before it was added hold only "type" and load all the same.
constexpr char kSerialized[] = R"({"tokenizer": "bytes", "type": "bytes", "version": 1})";

class ByteTokenizer : public sdk::Tokenizer {
  public:
    std::int64_t vocab_size() const override { return 257; }

    sdk::SpecialTokens special_tokens() const override {
        sdk::SpecialTokens specials;
        specials.eos = kEndOfDocument;
        return specials;
    }

    void encode(std::string_view text, std::vector<std::int32_t>& out) const override {
        out.reserve(out.size() + text.size());
        for (char c : text) out.push_back(static_cast<unsigned char>(c));
    }

    // Special tokens decode to nothing.
    std::string decode(std::span<const std::int32_t> ids) const override {
        std::string text;
        text.reserve(ids.size());
        for (std::int32_t id : ids) {
            if (id >= 0 && id < 256) text.push_back(static_cast<char>(id));
        }
        return text;
    }

    std::string serialize() const override { return kSerialized; }

    // "hf": Hugging Face's tokenizer.json as a byte-level BPE without merges, so that every byte
    // is its own token and id b is byte b (the vocabulary spells bytes as GPT-2's printable
    // characters, as every byte-level tokenizer.json does).
    std::string export_as(std::string_view format) const override {
        if (format != "hf") {
            throw sdk::Error(
                "the bytes tokenizer exports only to 'hf' (Hugging Face "
                "tokenizer.json), asked for '" +
                std::string(format) + "'");
        }
        using nlohmann::json;
        json vocab = json::object();
        for (int b = 0; b < 256; ++b) {
            vocab[bpe_family::bytes_to_piece(std::string(1, static_cast<char>(b)))] = b;
        }
        const json pre_tokenizer{{"type", "ByteLevel"},
                                 {"add_prefix_space", false},
                                 {"trim_offsets", false},
                                 {"use_regex", false}};
        return bpe_family::hugging_face_bpe_json(vocab, json::array(), pre_tokenizer);
    }
};

void register_components(sdk::Registrar& registrar) {
    sdk::TokenizerComponent component;
    component.name = "bytes";
    component.summary = "Byte-level tokenizer: 256 byte ids plus an end-of-document id";
    component.train = [](const sdk::TokenizerTrainingData&, const sdk::Params&) {
        return std::make_shared<ByteTokenizer>();
    };
    component.load = [](std::string_view serialized, const sdk::Params&) {
        if (serialized.find("\"bytes\"") == std::string_view::npos) {
            throw sdk::Error("not a serialized bytes tokenizer");
        }
        return std::make_shared<ByteTokenizer>();
    };
    registrar.add_tokenizer(std::move(component));
}

}  // namespace
}  // namespace moelab::plugins::bytes

MOELAB_PLUGIN("bytes", "1.2.0", "Byte-level tokenizer", moelab::plugins::bytes::register_components)
