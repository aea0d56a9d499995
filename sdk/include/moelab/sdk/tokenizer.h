#pragma once

// Tokenizer components: trained from the training split (or loaded from their serialized form),
// then used to encode the corpus once (the host caches the ids keyed by a hash of serialize()).

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/sdk/capability.h"
#include "moelab/sdk/error.h"
#include "moelab/sdk/params.h"

namespace moelab::sdk {

// One line of `moelab tokenizer stats`, e.g. {"scaffold tokens", "412 (4.9% of 8412)"}.
struct TokenizerFact {
    std::string name;
    std::string value;
};

struct SpecialTokens {
    std::int32_t eos = -1;  // appended after every document by the host's data pipeline; -1: none
    std::int32_t bos = -1;
    std::int32_t pad = -1;
};

// Thread-safety: const member functions may be called concurrently.
class Tokenizer {
  public:
    virtual ~Tokenizer() = default;

    virtual std::int64_t vocab_size() const = 0;  // ids are in [0, vocab_size)
    virtual SpecialTokens special_tokens() const = 0;

    // Appends the ids of `text` to `out`. decode(encode(text)) == text for every valid UTF-8 and
    // (byte-level tokenizers) every byte string.
    virtual void encode(std::string_view text, std::vector<std::int32_t>& out) const = 0;
    virtual std::string decode(std::span<const std::int32_t> ids) const = 0;

    // Self-contained text (JSON recommended) from which the component's `load` rebuilds an
    // identical tokenizer. The host hashes it to key its token cache.
    virtual std::string serialize() const = 0;

    // What the tokenizer wants a user comparing vocabularies to know beyond its size (algorithm,
    // pre-tokenizer, counts of special kinds of tokens).
    virtual std::vector<TokenizerFact> facts() const { return {}; }

    // The tokenizer in another tool's file format ("hf": Hugging Face tokenizer.json). Throws
    // sdk::Error when the format is unknown or cannot express this tokenizer.
    virtual std::string export_as(std::string_view format) const {
        throw Error("this tokenizer cannot be exported (asked for format '" + std::string(format) +
                    "')");
    }
};

struct TokenizerTrainingData {
    std::vector<std::string> files;  // UTF-8 text files of the training split
};

struct TokenizerComponent {
    std::string name;
    std::string summary;
    ParamSchema params;
    SupportsFn supports;  // optional
    // Optional features (capability.h feature::) this component has; any other is absent.
    std::vector<std::string> features;
    std::function<std::shared_ptr<Tokenizer>(const TokenizerTrainingData&, const Params&)> train;
    std::function<std::shared_ptr<Tokenizer>(std::string_view serialized, const Params&)> load;
};

}  // namespace moelab::sdk
