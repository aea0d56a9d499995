#pragma once

// Which tokens of a token stream a next-token loss counts as targets.
//
// Note [Response-only loss]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// A source of (prompt, response) pairs (format = "pairs") teaches a model to answer, not to write
// prompts, as supervised fine-tuning does (UniAttn's post-training, methods.md §6). Each document
// is its prompt's tokens, its response's tokens and the end-of-document id; the loss counts the
// predictions of the response's tokens and of that end-of-document id (so that the model learns
// where an answer stops), never the prediction of a prompt token. Prompt and response are encoded
// separately, so no token straddles the boundary.
//
// Sequences are packed across documents exactly as plain text is: a window may hold the end of one
// pair and the start of the next, and attention is not reset between them. Only which targets
// count changes. A training step's language-model loss is the mean over the counted targets of the
// whole global batch, all micro-batches of all processes together, so gradient accumulation and
// data parallelism give the gradient of one large batch; a mean of micro-batch means would weight
// a micro-batch with few response tokens as much as one with many. Evaluation likewise averages
// over counted targets only: a pairs source's perplexity is its responses' given their prompts.
//
// A stream without prompts (plain text, JSONL documents) counts every target.

#include <algorithm>
#include <cstdint>

namespace moelab::core {

class LossMask {
  public:
    LossMask() = default;  // every token counts
    // Document d holds tokens [ends[d - 1], ends[d]) (ends[-1] = 0), of which the first
    // prompt_lengths[d] are its prompt. Does not own the arrays; whoever made it keeps them alive.
    LossMask(const std::uint64_t* document_ends, const std::uint64_t* prompt_lengths,
             std::int64_t documents)
        : ends_(document_ends), prompt_lengths_(prompt_lengths), documents_(documents) {}

    bool counts_every_token() const { return prompt_lengths_ == nullptr; }

    // out[i] = whether token begin + i counts in the loss (is not a prompt token), i < count.
    // Never reads outside the arrays, whatever they hold: a damaged index only gives wrong flags
    // (and MappedTokenShard::verify names it).
    void fill(std::int64_t begin, std::int64_t count, bool* out) const {
        if (counts_every_token()) {
            std::fill(out, out + count, true);
            return;
        }
        const auto first = static_cast<std::uint64_t>(begin);
        std::int64_t d = std::upper_bound(ends_, ends_ + documents_, first) - ends_;
        std::int64_t i = begin;
        const std::int64_t end = begin + count;
        for (; i < end && d < documents_; ++d) {
            const std::uint64_t start = d == 0 ? 0 : ends_[d - 1];
            const std::uint64_t prompt_end = std::min(start + prompt_lengths_[d], ends_[d]);
            const auto stop = static_cast<std::int64_t>(
                std::min<std::uint64_t>(ends_[d], static_cast<std::uint64_t>(end)));
            for (; i < stop; ++i) out[i - begin] = static_cast<std::uint64_t>(i) >= prompt_end;
        }
        for (; i < end; ++i) out[i - begin] = true;  // past the index: no prompt there
    }

  private:
    const std::uint64_t* ends_ = nullptr;
    const std::uint64_t* prompt_lengths_ = nullptr;
    std::int64_t documents_ = 0;
};

}  // namespace moelab::core
