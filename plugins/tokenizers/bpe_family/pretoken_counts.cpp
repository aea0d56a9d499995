#include "pretoken_counts.h"

#include <algorithm>
#include <fstream>
#include <thread>
#include <unordered_map>

#include "moelab/sdk/error.h"
#include "moelab/sdk/parallel.h"

namespace moelab::plugins::bpe_family {

namespace {

using ViewCounts = std::unordered_map<std::string_view, std::int64_t>;

bool is_space_at(std::string_view text, std::size_t at) {
    return detail::char_at(text, at).cls == detail::CharClass::kSpace;
}

// Whether the character that ends right before `end` is whitespace (false at the start of `text`).
// Walks back over UTF-8 continuation bytes to the character's first byte.
bool space_before(std::string_view text, std::size_t end) {
    if (end == 0) return false;
    std::size_t start = end - 1;
    while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
        --start;
    }
    const detail::CharInfo info = detail::char_at(text, start);
    if (start + info.length != end) return false;  // not a whole character: "other"
    return info.cls == detail::CharClass::kSpace;
}

// The first position >= `from` right after a '\n' that a non-space character follows and a
// non-space character precedes, or npos. Every pre-tokenizer has a piece boundary on both sides of
// such a '\n', and neither side needs to see the other: the pieces left of it end with "\n" alone
// whether or not text follows (a whitespace run before the non-space would instead be split by
// what follows it: "  \n\n" + "w" is "  \n", "\n", "w", but "  \n\n" at the end is one piece).
// So cutting the text at such positions gives the same pieces as splitting it whole, and the
// counts do not depend on the number of threads or the block size. "Space" is the pre-tokenizer's
// class, so a no-break space counts.
std::size_t safe_cut(std::string_view text, std::size_t from) {
    for (std::size_t at = text.find('\n', from); at != std::string_view::npos;
         at = text.find('\n', at + 1)) {
        // A character cut off by the end of `text` cannot be classified: not a cut.
        const bool whole = at + 1 < text.size() &&
                           (static_cast<unsigned char>(text[at + 1]) < 0x80 || at + 4 < text.size());
        if (whole && !is_space_at(text, at + 1) && at > 0 && !space_before(text, at)) return at + 1;
    }
    return std::string_view::npos;
}

// For a block without a safe cut (one line longer than a block): counts the pieces of `text` that
// more text after it cannot change and returns where the rest begins (0: none yet). Where a piece
// ends is decided by at most the next three characters (a contraction "'re" starting the next
// piece, or the non-space after a whitespace run), so the pieces that start 16 bytes or more
// before the end (three characters of at most four bytes, complete) are final. They are counted
// from this pass over the whole block: cutting the text and splitting it again would lose the
// lookahead they were decided with.
std::size_t count_final_pieces(std::string_view text, const PretokenizerConfig& config,
                               std::unordered_map<std::string, std::int64_t>& total) {
    constexpr std::size_t kLookahead = 16;
    std::vector<std::string_view> pieces;
    std::size_t rest = 0;
    for_each_piece(text, config, [&](std::string_view piece) {
        const auto start = static_cast<std::size_t>(piece.data() - text.data());
        if (start + kLookahead > text.size()) return;
        pieces.push_back(piece);
        rest = start;
    });
    if (!pieces.empty()) pieces.pop_back();  // the piece at `rest` may still grow
    for (std::string_view piece : pieces) ++total[std::string(piece)];
    return rest;
}

// Counts the pieces of `block` on `threads` threads (each takes a range cut at a line end).
std::vector<ViewCounts> count_block(std::string_view block, const PretokenizerConfig& config,
                                    unsigned threads) {
    std::vector<std::size_t> cuts{0};
    for (unsigned t = 1; t < threads; ++t) {
        const std::size_t at = safe_cut(block, std::max(cuts.back(), block.size() * t / threads));
        cuts.push_back(at == std::string_view::npos ? block.size() : at);
    }
    cuts.push_back(block.size());
    std::vector<ViewCounts> counts(threads);
    sdk::run_workers(threads, [&](std::size_t t) {
        const std::string_view part = block.substr(cuts[t], cuts[t + 1] - cuts[t]);
        for_each_piece(part, config, [&](std::string_view piece) { ++counts[t][piece]; });
    });
    return counts;
}

}  // namespace

PretokenCounts count_pretokens(const std::vector<std::string>& files,
                               const PretokenizerConfig& config, unsigned threads,
                               std::size_t block_bytes) {
    if (block_bytes == 0) throw sdk::Error("count_pretokens: block_bytes must be positive");
    if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
    std::unordered_map<std::string, std::int64_t> total;
    PretokenCounts result;
    std::string block;
    for (const std::string& file : files) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw sdk::Error("cannot read the training file " + file);
        std::string carry;  // an unfinished last line, moved to the next block
        while (true) {
            block = std::move(carry);
            carry.clear();
            const std::size_t had = block.size();
            block.resize(had + block_bytes);
            in.read(block.data() + had, static_cast<std::streamsize>(block_bytes));
            block.resize(had + static_cast<std::size_t>(in.gcount()));
            const bool last = !in;
            if (!last) {
                // Keep everything after the last safe cut for the next block.
                auto last_cut = [&](std::size_t from) {
                    std::size_t cut = std::string::npos;
                    for (std::size_t at = safe_cut(block, from); at != std::string::npos;
                         at = safe_cut(block, at)) {
                        cut = at;
                    }
                    return cut;
                };
                const std::size_t tail = std::min(block.size() / 2, std::size_t{1} << 20);
                std::size_t cut = last_cut(block.size() - tail);
                if (cut == std::string::npos) cut = last_cut(0);
                if (cut == std::string::npos) {
                    const std::size_t rest = count_final_pieces(block, config, total);
                    result.bytes += static_cast<std::int64_t>(rest);
                    carry = block.substr(rest);
                    continue;
                }
                carry = block.substr(cut);
                block.resize(cut);
            }
            result.bytes += static_cast<std::int64_t>(block.size());
            for (const ViewCounts& part : count_block(block, config, threads)) {
                for (const auto& [piece, count] : part) {
                    auto it = total.find(std::string(piece));
                    if (it == total.end()) {
                        total.emplace(std::string(piece), count);
                    } else {
                        it->second += count;
                    }
                }
            }
            if (last) break;
        }
    }
    // A fixed order (by bytes) so that training does not depend on hash-table iteration.
    std::vector<std::pair<std::string, std::int64_t>> sorted(total.begin(), total.end());
    std::sort(sorted.begin(), sorted.end());
    result.pieces.reserve(sorted.size());
    result.counts.reserve(sorted.size());
    for (auto& [piece, count] : sorted) {
        result.pieces.push_back(std::move(piece));
        result.counts.push_back(count);
    }
    return result;
}

}  // namespace moelab::plugins::bpe_family
