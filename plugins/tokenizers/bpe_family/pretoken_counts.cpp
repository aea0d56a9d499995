#include "pretoken_counts.h"

#include <algorithm>
#include <fstream>
#include <thread>
#include <unordered_map>

#include "moelab/sdk/error.h"

namespace moelab::plugins::bpe_family {

namespace {

constexpr std::size_t kBlockBytes = std::size_t{64} << 20;

using ViewCounts = std::unordered_map<std::string_view, std::int64_t>;

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// The first position >= `from` right after a '\n' that a non-space character follows, or npos.
// Every pre-tokenizer has a piece boundary there, so cutting the text at such positions gives the
// same pieces as splitting it whole (and the counts do not depend on the number of threads).
std::size_t safe_cut(std::string_view text, std::size_t from) {
    for (std::size_t at = text.find('\n', from); at != std::string_view::npos;
         at = text.find('\n', at + 1)) {
        if (at + 1 < text.size() && !is_ascii_space(text[at + 1])) return at + 1;
    }
    return std::string_view::npos;
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
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            const std::string_view part = block.substr(cuts[t], cuts[t + 1] - cuts[t]);
            for_each_piece(part, config, [&](std::string_view piece) { ++counts[t][piece]; });
        });
    }
    for (auto& w : workers) w.join();
    return counts;
}

}  // namespace

PretokenCounts count_pretokens(const std::vector<std::string>& files,
                               const PretokenizerConfig& config, unsigned threads) {
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
            block.resize(had + kBlockBytes);
            in.read(block.data() + had, static_cast<std::streamsize>(kBlockBytes));
            block.resize(had + static_cast<std::size_t>(in.gcount()));
            const bool last = !in;
            if (!last) {
                // Keep everything after the last safe cut for the next block (a block without one
                // -- a single huge line -- is split where it ends).
                auto last_cut = [&](std::size_t from) {
                    std::size_t cut = std::string::npos;
                    for (std::size_t at = safe_cut(block, from); at != std::string::npos;
                         at = safe_cut(block, at)) {
                        cut = at;
                    }
                    return cut;
                };
                const std::size_t tail = std::size_t{1} << 20;
                std::size_t cut = last_cut(block.size() > tail ? block.size() - tail : 0);
                if (cut == std::string::npos) cut = last_cut(0);
                if (cut != std::string::npos) {
                    carry = block.substr(cut);
                    block.resize(cut);
                }
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
