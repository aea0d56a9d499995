#pragma once

// Long-context evaluation (HARPE, methods.md §5): perplexity at a given context length with
// sliding windows over long documents, and the passkey (needle-in-a-haystack) retrieval test.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json_fwd.hpp>

#include "core/data/token_view.h"
#include "core/model/language_model.h"
#include "moelab/sdk/tokenizer.h"

namespace moelab::core {

// Note [Sliding windows]: a document of N tokens is read in windows of `context` tokens whose
// starts are `stride` apart (0, S, 2S, ...; the last window ends at the document's end), with
// 1 <= S < context. Each target token is scored once, in the first window that contains it, by
// the prediction from the token before it; so every target but those of the first window has at
// least context - stride tokens before it in its window, and the first token of a document is
// never a target. (S = context would leave the first token of every window without its
// predecessor.) With one window covering a whole document this is the plain next-token
// perplexity of the document.
struct Window {
    std::int64_t begin = 0;         // first token of the window
    std::int64_t end = 0;           // one past its last token
    std::int64_t first_scored = 0;  // first target scored in this window (begin < first_scored)
};
std::vector<Window> sliding_windows(std::int64_t document_tokens, std::int64_t context,
                                    std::int64_t stride);

struct ContextPerplexity {
    std::int64_t context = 0;
    std::int64_t stride = 0;
    std::int64_t documents = 0;
    std::int64_t tokens = 0;  // targets scored
    double nll_sum = 0;

    double loss() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
    double perplexity() const;
    nlohmann::json to_json() const;
};

struct LongContextSetup {
    at::Device device = at::kCPU;
    bool autocast_bf16 = false;
    std::int64_t batch_size = 8;  // windows per forward
};

// `documents`: each a 1-D int64 tensor of token ids (on any device).
ContextPerplexity sliding_window_perplexity(LanguageModel& model,
                                            const std::vector<at::Tensor>& documents,
                                            std::int64_t context, std::int64_t stride,
                                            const LongContextSetup& setup);

// The documents of `tokens` (split at `document_ends`, the cumulative token counts) with at least
// `min_tokens` tokens, as 1-D int64 tensors, until `max_tokens` tokens are collected (the last
// one cut short; 0: no limit).
std::vector<at::Tensor> long_documents(const TokenView& tokens,
                                       const std::vector<std::int64_t>& document_ends,
                                       std::int64_t min_tokens, std::int64_t max_tokens);

// Note [Passkey]: the synthetic retrieval test of Mohtashami & Jaggi (Landmark Attention), as the
// HARPE paper runs it. A prompt of exactly `length` tokens: the end-of-document id (every training
// document follows one), an instruction, filler text from the
// corpus with "The pass key is N. Remember it. N is the pass key." inserted at a relative `depth`
// (0: right after the instruction, 1: right before the question), and "What is the pass key? The
// pass key is". A trial passes when the greedy continuation, decoded, is N (a random five-digit
// number, seeded per trial) after optional spaces and not followed by another digit. Chance level
// is about 1e-5.
struct PasskeyOptions {
    std::vector<std::int64_t> lengths;
    std::vector<double> depths{0.0, 0.25, 0.5, 0.75, 1.0};
    std::int64_t trials = 5;  // per length and depth
    std::uint64_t seed = 0;
    std::int64_t batch_size = 8;  // prompts per completion call
};

struct PasskeyCell {
    std::int64_t length = 0;
    double depth = 0;
    std::int64_t trials = 0;  // 0 when the length cannot hold a prompt (see `not_measured`)
    std::int64_t correct = 0;
    std::string not_measured;  // why there are no trials; empty when measured
    double accuracy() const {
        return trials > 0 ? static_cast<double>(correct) / static_cast<double>(trials) : 0.0;
    }
};

struct PasskeyResult {
    std::vector<PasskeyCell> cells;  // by length, then depth
    nlohmann::json to_json() const;
};

// Greedy continuation of every prompt by `count` tokens.
using Completion = std::function<std::vector<std::vector<std::int32_t>>(
    const std::vector<std::vector<std::int32_t>>& prompts, std::int64_t count)>;

// `filler`: token ids of ordinary text (end-of-document ids are skipped). A length that cannot
// hold the instruction, needle and question gets cells without trials that say so (n/a, never a
// number); std::invalid_argument when the filler is shorter than a prompt needs.
PasskeyResult passkey_test(const sdk::Tokenizer& tokenizer, const TokenView& filler,
                           const PasskeyOptions& options, const Completion& complete);

}  // namespace moelab::core
