#include "vocabulary.h"

#include <algorithm>
#include <unordered_map>

#include "moelab/sdk/error.h"

namespace moelab::plugins::bpe_family {

Vocabulary Vocabulary::bytes_only() {
    Vocabulary v;
    v.tokens.reserve(kFirstLearnedId);
    for (int b = 0; b < kByteCount; ++b) v.tokens.emplace_back(1, static_cast<char>(b));
    v.tokens.emplace_back();  // end of document
    v.scaffold.assign(kFirstLearnedId, 0);
    return v;
}

std::int64_t Vocabulary::scaffold_count() const {
    return std::count(scaffold.begin(), scaffold.end(), std::uint8_t{1});
}

void Vocabulary::validate() const {
    auto fail = [](const std::string& what) { throw sdk::Error("invalid vocabulary: " + what); };
    if (tokens.size() < static_cast<std::size_t>(kFirstLearnedId)) {
        fail("fewer than the 256 bytes and the end-of-document token");
    }
    if (scaffold.size() != tokens.size()) fail("scaffold flags do not cover every token");
    for (int b = 0; b < kByteCount; ++b) {
        if (tokens[b] != std::string(1, static_cast<char>(b))) {
            fail("id " + std::to_string(b) + " must be byte " + std::to_string(b));
        }
    }
    if (!tokens[kEndOfDocument].empty()) fail("id 256 must be the end-of-document token");
    for (std::int32_t id = 0; id < kFirstLearnedId; ++id) {
        if (scaffold[id] != 0) fail("byte or end-of-document id " + std::to_string(id) + " is scaffold");
    }
    std::unordered_map<std::string, std::int32_t> id_of;
    for (std::size_t id = 0; id < tokens.size(); ++id) {
        if (id == static_cast<std::size_t>(kEndOfDocument)) continue;
        if (id >= static_cast<std::size_t>(kFirstLearnedId) && tokens[id].size() < 2) {
            fail("learned token " + std::to_string(id) + " is shorter than two bytes");
        }
        if (!id_of.emplace(tokens[id], static_cast<std::int32_t>(id)).second) {
            fail("tokens " + std::to_string(id_of[tokens[id]]) + " and " + std::to_string(id) +
                 " are the same bytes");
        }
    }
    // Tokens appear in order of creation: merge r may only use tokens created before it.
    std::int32_t created = kFirstLearnedId;
    const std::int32_t size = expanded_size();
    for (std::size_t r = 0; r < merges.size(); ++r) {
        const Merge& m = merges[r];
        auto usable = [&](std::int32_t id) {
            return id >= 0 && id < created && id < size && id != kEndOfDocument;
        };
        if (!usable(m.left) || !usable(m.right)) {
            fail("merge " + std::to_string(r) + " uses a token that does not exist yet");
        }
        if (m.result < 0 || m.result >= size || m.result > created ||
            tokens[m.result] != tokens[m.left] + tokens[m.right]) {
            fail("merge " + std::to_string(r) + " does not produce the token its parts spell");
        }
        if (m.result == created) ++created;
    }
    if (created != size) fail(std::to_string(size - created) + " tokens come from no merge");
}

std::vector<std::int32_t> model_ids(const Vocabulary& vocabulary) {
    std::vector<std::int32_t> ids(vocabulary.tokens.size(), -1);
    std::int32_t next = 0;
    for (std::size_t id = 0; id < ids.size(); ++id) {
        if (!vocabulary.scaffold[id]) ids[id] = next++;
    }
    return ids;
}

std::vector<std::vector<std::int32_t>> demolition_sequences(const Vocabulary& vocabulary) {
    const std::size_t size = vocabulary.tokens.size();
    std::vector<std::vector<std::int32_t>> best(size);
    for (std::size_t id = 0; id < size; ++id) {
        if (!vocabulary.scaffold[id]) best[id] = {static_cast<std::int32_t>(id)};
    }
    // Relax over all merges until nothing improves. Each pass processes merges in rank order, so
    // a merge's parts were created before it; several passes are only needed when a token has more
    // than one recorded merge and a later one improves a token an earlier merge depends on.
    auto better = [](const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
        if (b.empty()) return true;
        if (a.size() != b.size()) return a.size() < b.size();
        return a < b;
    };
    for (bool changed = true; changed;) {
        changed = false;
        for (const Merge& m : vocabulary.merges) {
            if (!vocabulary.scaffold[m.result]) continue;
            const auto& left = best[m.left];
            const auto& right = best[m.right];
            if (left.empty() || right.empty()) continue;
            std::vector<std::int32_t> candidate = left;
            candidate.insert(candidate.end(), right.begin(), right.end());
            if (better(candidate, best[m.result])) {
                best[m.result] = std::move(candidate);
                changed = true;
            }
        }
    }
    for (std::size_t id = 0; id < size; ++id) {
        if (best[id].empty() && id != static_cast<std::size_t>(kEndOfDocument)) {
            throw sdk::Error("scaffold token " + std::to_string(id) + " has no decomposition");
        }
    }
    return best;
}

}  // namespace moelab::plugins::bpe_family
