#pragma once

// The serialized form of a BPE-family tokenizer: JSON that records the component that loads it,
// the training algorithm, the encoding policy, the pre-tokenizer, the expanded vocabulary (each
// token's bytes in the byte-level alphabet of byte_level.h, so "Ġthe" is " the"), the merges in
// rank order as pairs of expanded ids and, for Scaffold-BPE, the scaffold flags and the
// precomputed demolition sequences. Example (abridged):
//
//   {"tokenizer": "scaffold-bpe", "format": "moelab-bpe", "version": 1,
//    "algorithm": "scaffold-bpe",
//    "encoding": {"policy": "merge-rank"},
//    "pretokenizer": {"kind": "gpt2", "split_digits": false},
//    "end_of_document": 256,
//    "tokens": ["Ā", ..., "ÿ", "<|endoftext|>", "Ġt", "he", ...],
//    "merges": [[220, 116], [104, 101], ...],
//    "scaffold": [1033, ...],
//    "demolition": {"1033": [412, 97], ...}}
//
// Model ids are the normal tokens in expanded-id order (identical to expanded ids without
// scaffold tokens).

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "encoder.h"
#include "pretokenizer.h"
#include "vocabulary.h"

namespace moelab::plugins::bpe_family {

struct TokenizerFile {
    std::string component;  // the plugin component that loads the file: bpe, lbpe, scaffold-bpe
    std::string algorithm;  // how the vocabulary was trained: bpe or scaffold-bpe
    EncodingOptions encoding;
    PretokenizerConfig pretokenizer;
    Vocabulary vocabulary;
};

std::string write_tokenizer_file(const TokenizerFile& file);

// Throws sdk::Error saying what is wrong (not JSON, missing or mistyped keys, an invalid
// vocabulary, demolition sequences that differ from the vocabulary's).
TokenizerFile read_tokenizer_file(std::string_view text);

// Hugging Face tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder, the end-of-document
// token as a special added token). Only merge-rank encoding without scaffold tokens can be
// expressed; anything else throws sdk::Error.
std::string export_hugging_face(const TokenizerFile& file);

// The tokenizer.json of a byte-level BPE from its parts: `vocab` (piece -> id, pieces in GPT-2's
// byte alphabet), `merges` ("left right", rank order), the pre-tokenizer object; the decoder is
// ByteLevel and the end-of-document id kEndOfDocument the special added token kEndOfDocumentText.
// Also the `bytes` tokenizer's export (a BPE without merges).
std::string hugging_face_bpe_json(const nlohmann::json& vocab, const nlohmann::json& merges,
                                  const nlohmann::json& pre_tokenizer);

}  // namespace moelab::plugins::bpe_family
