#include "core/eval/long_context.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <random>
#include <stdexcept>

#include <fmt/format.h>
#include <torch/autograd.h>
#include <nlohmann/json.hpp>

#include "core/system/autocast_scope.h"

namespace moelab::core {

std::vector<Window> sliding_windows(std::int64_t document_tokens, std::int64_t context,
                                    std::int64_t stride) {
    if (context < 2) {
        throw std::invalid_argument(
            fmt::format("a context of {} tokens predicts nothing", context));
    }
    if (stride < 1 || stride >= context) {
        throw std::invalid_argument(
            fmt::format("the stride must be between 1 and the context minus one ({}), got {}",
                        context - 1, stride));
    }
    std::vector<Window> windows;
    std::int64_t scored_until = 1;  // the first token of a document is never a target
    for (std::int64_t begin = 0; scored_until < document_tokens; begin += stride) {
        const std::int64_t end = std::min(begin + context, document_tokens);
        // A target needs the token before it inside the window.
        const std::int64_t first = std::max(scored_until, begin + 1);
        if (first < end) windows.push_back({begin, end, first});
        scored_until = std::max(scored_until, end);
    }
    return windows;
}

double ContextPerplexity::perplexity() const { return std::exp(loss()); }

nlohmann::json ContextPerplexity::to_json() const {
    return {{"context", context}, {"stride", stride}, {"documents", documents},
            {"tokens", tokens},   {"loss", loss()},   {"ppl", perplexity()}};
}

ContextPerplexity sliding_window_perplexity(LanguageModel& model,
                                            const std::vector<at::Tensor>& documents,
                                            std::int64_t context, std::int64_t stride,
                                            const LongContextSetup& setup) {
    torch::NoGradGuard no_grad;
    model.eval();
    ContextPerplexity result;
    result.context = context;
    result.stride = stride;
    result.documents = static_cast<std::int64_t>(documents.size());
    // Windows of equal length run together.
    struct Pending {
        at::Tensor tokens;  // (window,) int64
        std::int64_t skip;  // targets before the first scored one
    };
    std::map<std::int64_t, std::vector<Pending>> by_length;
    auto flush = [&](std::vector<Pending>& pending) {
        if (pending.empty()) return;
        std::vector<at::Tensor> rows;
        at::Tensor scored = at::zeros(
            {static_cast<std::int64_t>(pending.size()), pending.front().tokens.size(0) - 1},
            at::kBool);
        for (std::size_t i = 0; i < pending.size(); ++i) {
            rows.push_back(pending[i].tokens);
            scored[static_cast<std::int64_t>(i)]
                .narrow(0, pending[i].skip, scored.size(1) - pending[i].skip)
                .fill_(true);
        }
        const at::Tensor windows = at::stack(rows).to(setup.device);
        const at::Tensor inputs = windows.narrow(1, 0, windows.size(1) - 1);
        at::Tensor logits;
        {
            CudaAutocastScope autocast(setup.autocast_bf16);
            logits = model.forward(inputs, ForwardOptions{}).logits;
        }
        const at::Tensor targets = windows.narrow(1, 1, windows.size(1) - 1);
        const at::Tensor nll =
            -logits.to(at::kFloat).log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
        const at::Tensor mask = scored.to(setup.device);
        result.nll_sum += nll.masked_select(mask).to(at::kDouble).sum().item<double>();
        result.tokens += mask.sum().item<std::int64_t>();
        pending.clear();
    };
    for (const at::Tensor& document : documents) {
        const at::Tensor ids = document.to(at::kCPU, at::kLong);
        for (const Window& window : sliding_windows(ids.size(0), context, stride)) {
            // Window tokens [begin, end) predict [begin + 1, end); targets before first_scored
            // were scored by an earlier window.
            auto& pending = by_length[window.end - window.begin];
            pending.push_back({ids.narrow(0, window.begin, window.end - window.begin),
                               window.first_scored - window.begin - 1});
            if (static_cast<std::int64_t>(pending.size()) >= setup.batch_size) flush(pending);
        }
    }
    for (auto& [length, pending] : by_length) flush(pending);
    return result;
}

std::vector<at::Tensor> long_documents(const TokenView& tokens,
                                       const std::vector<std::int64_t>& document_ends,
                                       std::int64_t min_tokens, std::int64_t max_tokens) {
    std::vector<at::Tensor> documents;
    std::int64_t collected = 0;
    std::int64_t start = 0;
    for (const std::int64_t end : document_ends) {
        const std::int64_t length = end - start;
        if (length >= min_tokens && length > 0) {
            std::int64_t take = length;
            if (max_tokens > 0)
                take = std::min(length, std::max(min_tokens, max_tokens - collected));
            at::Tensor ids = at::empty({take}, at::kLong);
            tokens.copy_to(start, take, ids.data_ptr<std::int64_t>());
            documents.push_back(ids);
            collected += take;
            if (max_tokens > 0 && collected >= max_tokens) break;
        }
        start = end;
    }
    return documents;
}

nlohmann::json PasskeyResult::to_json() const {
    nlohmann::json cells_json = nlohmann::json::array();
    std::int64_t trials = 0, correct = 0;
    for (const PasskeyCell& cell : cells) {
        nlohmann::json entry = {{"length", cell.length},
                                {"depth", cell.depth},
                                {"trials", cell.trials},
                                {"correct", cell.correct},
                                {"accuracy", cell.trials > 0 ? nlohmann::json(cell.accuracy())
                                                             : nlohmann::json(nullptr)}};
        if (!cell.not_measured.empty()) entry["not_measured"] = cell.not_measured;
        cells_json.push_back(entry);
        trials += cell.trials;
        correct += cell.correct;
    }
    return {{"cells", cells_json},
            {"trials", trials},
            {"accuracy",
             trials > 0 ? nlohmann::json(static_cast<double>(correct) / static_cast<double>(trials))
                        : nlohmann::json(nullptr)}};
}

PasskeyResult passkey_test(const sdk::Tokenizer& tokenizer, const TokenView& filler,
                           const PasskeyOptions& options, const Completion& complete) {
    auto encode = [&](const std::string& text) {
        std::vector<std::int32_t> ids;
        tokenizer.encode(text, ids);
        return ids;
    };
    // The prompt starts a document, as in training: after the end-of-document id.
    std::vector<std::int32_t> instruction;
    if (tokenizer.special_tokens().eos >= 0) instruction.push_back(tokenizer.special_tokens().eos);
    const std::vector<std::int32_t> instruction_text = encode(
        "There is important information hidden inside a lot of irrelevant text. Find it and "
        "memorize it. I will quiz you about the important information there.\n");
    instruction.insert(instruction.end(), instruction_text.begin(), instruction_text.end());
    const std::vector<std::int32_t> question = encode("\nWhat is the pass key? The pass key is");
    // Filler without end-of-document ids (a prompt is one document).
    const std::int32_t end_id = tokenizer.special_tokens().eos;
    std::vector<std::int32_t> text;
    constexpr std::int64_t kMaxFiller = std::int64_t{1} << 22;
    for (std::int64_t i = 0;
         i < filler.size() && static_cast<std::int64_t>(text.size()) < kMaxFiller; ++i) {
        if (filler[i] != end_id) text.push_back(filler[i]);
    }

    PasskeyResult result;
    for (const std::int64_t length : options.lengths) {
        for (const double depth : options.depths) {
            if (!(depth >= 0 && depth <= 1)) {
                throw std::invalid_argument(
                    fmt::format("a passkey depth must be in [0, 1], got {}", depth));
            }
            std::vector<std::vector<std::int32_t>> prompts;
            std::vector<std::string> answers;
            std::string not_measured;
            std::int64_t longest_answer = 0;
            for (std::int64_t trial = 0; trial < options.trials; ++trial) {
                // One stream per (length, depth, trial): adding lengths keeps the others' keys.
                std::seed_seq seeds{options.seed, static_cast<std::uint64_t>(length),
                                    static_cast<std::uint64_t>(std::llround(depth * 1000)),
                                    static_cast<std::uint64_t>(trial)};
                std::mt19937_64 random(seeds);
                const std::string key = std::to_string(10000 + random() % 90000);
                const std::vector<std::int32_t> needle = encode(
                    " The pass key is " + key + ". Remember it. " + key + " is the pass key. ");
                const std::int64_t fixed =
                    static_cast<std::int64_t>(instruction.size() + needle.size() + question.size());
                const std::int64_t filler_tokens = length - fixed;
                if (filler_tokens < 0) {
                    not_measured = fmt::format(
                        "a prompt of {} tokens cannot hold the {} tokens of the instruction, "
                        "needle and question",
                        length, fixed);
                    break;
                }
                if (filler_tokens > static_cast<std::int64_t>(text.size())) {
                    throw std::invalid_argument(fmt::format(
                        "the filler text has {} tokens, a passkey prompt of {} tokens needs {}",
                        text.size(), length, filler_tokens));
                }
                const std::int64_t offset = static_cast<std::int64_t>(
                    random() % static_cast<std::uint64_t>(static_cast<std::int64_t>(text.size()) -
                                                          filler_tokens + 1));
                const auto at = static_cast<std::int64_t>(
                    std::llround(depth * static_cast<double>(filler_tokens)));
                std::vector<std::int32_t> prompt = instruction;
                prompt.insert(prompt.end(), text.begin() + offset, text.begin() + offset + at);
                prompt.insert(prompt.end(), needle.begin(), needle.end());
                prompt.insert(prompt.end(), text.begin() + offset + at,
                              text.begin() + offset + filler_tokens);
                prompt.insert(prompt.end(), question.begin(), question.end());
                prompts.push_back(std::move(prompt));
                answers.push_back(key);
                longest_answer = std::max<std::int64_t>(
                    longest_answer, static_cast<std::int64_t>(encode(" " + key).size()));
            }
            // A cell is measured whole or not at all: never a rate over the trials that fitted.
            if (!not_measured.empty()) prompts.clear();
            PasskeyCell cell{length, depth, static_cast<std::int64_t>(prompts.size()), 0,
                             not_measured};
            std::vector<std::vector<std::int32_t>> continuations;
            const auto chunk =
                static_cast<std::size_t>(std::max<std::int64_t>(1, options.batch_size));
            for (std::size_t first = 0; first < prompts.size(); first += chunk) {
                const std::vector<std::vector<std::int32_t>> part(
                    prompts.begin() + static_cast<std::ptrdiff_t>(first),
                    prompts.begin() +
                        static_cast<std::ptrdiff_t>(std::min(prompts.size(), first + chunk)));
                // Room for a tokenizer that spells the number differently than encode() does.
                for (auto& continuation : complete(part, longest_answer + 2)) {
                    continuations.push_back(std::move(continuation));
                }
            }
            {
                for (std::size_t i = 0; i < prompts.size(); ++i) {
                    const std::string said = tokenizer.decode(continuations.at(i));
                    const std::size_t first = said.find_first_not_of(' ');
                    const std::size_t after = first + answers[i].size();
                    // The number itself, not the start of a longer one.
                    if (first != std::string::npos &&
                        said.compare(first, answers[i].size(), answers[i]) == 0 &&
                        (after >= said.size() ||
                         std::isdigit(static_cast<unsigned char>(said[after])) == 0)) {
                        ++cell.correct;
                    }
                }
            }
            result.cells.push_back(cell);
        }
    }
    return result;
}

}  // namespace moelab::core
