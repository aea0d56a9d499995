#include "tokenizer_file.h"

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "byte_level.h"
#include "moelab/sdk/error.h"

namespace moelab::plugins::bpe_family {

namespace {

using nlohmann::json;

constexpr char kFormat[] = "moelab-bpe";
constexpr int kVersion = 1;

std::string policy_name(EncodingPolicy p) {
    return p == EncodingPolicy::kMergeRank ? "merge-rank" : "longest-first";
}

json encoding_json(const EncodingOptions& e) {
    json j{{"policy", policy_name(e.policy)}};
    if (e.policy == EncodingPolicy::kLongestFirst) {
        j["length_unit"] = e.length_unit == LengthUnit::kBytes ? "bytes" : "chars";
        j["tie_break"] = e.tie_break == TieBreak::kRank ? "rank" : "position";
    }
    return j;
}

[[noreturn]] void bad(const std::string& what) {
    throw sdk::Error("not a valid moelab BPE tokenizer file: " + what);
}

// A value for an error message: numbers and short strings as written, anything else by its type
// (dumping a deeply nested value could itself fail).
std::string described(const json& value) {
    if (value.is_number() || value.is_boolean() || value.is_null()) return value.dump();
    if (value.is_string() && value.get_ref<const std::string&>().size() <= 40) return value.dump();
    return std::string("a JSON ") + value.type_name();
}

const json& member(const json& object, const char* key) {
    auto it = object.find(key);
    if (it == object.end()) bad(std::string("missing key '") + key + "'");
    return *it;
}

std::string string_member(const json& object, const char* key) {
    const json& value = member(object, key);
    if (!value.is_string()) bad(std::string("'") + key + "' must be a string");
    return value.get<std::string>();
}

// An id in [0, limit); anything else (a float, a negative or huge number) is an error, never a
// truncated id.
std::int32_t id_value(const json& value, const char* where, std::int64_t limit) {
    const bool in_range = (value.is_number_unsigned() &&
                           value.get<std::uint64_t>() < static_cast<std::uint64_t>(limit)) ||
                          (value.is_number_integer() && !value.is_number_unsigned() &&
                           value.get<std::int64_t>() >= 0 && value.get<std::int64_t>() < limit);
    if (!in_range) {
        bad(std::string(where) + " must hold token ids in [0, " + std::to_string(limit) +
            "), got " + described(value));
    }
    return static_cast<std::int32_t>(value.get<std::int64_t>());
}

}  // namespace

std::string write_tokenizer_file(const TokenizerFile& file) {
    const Vocabulary& v = file.vocabulary;
    json tokens = json::array();
    for (std::int32_t id = 0; id < v.expanded_size(); ++id) {
        tokens.push_back(id == kEndOfDocument ? std::string(kEndOfDocumentText)
                                              : bytes_to_piece(v.tokens[id]));
    }
    json merges = json::array();
    for (const Merge& m : v.merges) merges.push_back(json::array({m.left, m.right}));

    // One top-level key per line; the long arrays stay on one line each.
    std::string text = "{";
    auto add = [&](const char* key, const json& value) {
        text += (text.size() > 1 ? ",\n " : "") + json(key).dump() + ": " + value.dump();
    };
    add("tokenizer", file.component);
    add("format", kFormat);
    add("version", kVersion);
    add("algorithm", file.algorithm);
    add("encoding", encoding_json(file.encoding));
    add("pretokenizer", json{{"kind", file.pretokenizer.kind_name()},
                             {"split_digits", file.pretokenizer.split_digits}});
    add("end_of_document", kEndOfDocument);
    add("tokens", tokens);
    add("merges", merges);
    if (v.scaffold_count() > 0) {
        json scaffold = json::array();
        json demolition = json::object();
        const auto sequences = demolition_sequences(v);
        for (std::int32_t id = 0; id < v.expanded_size(); ++id) {
            if (!v.is_scaffold(id)) continue;
            scaffold.push_back(id);
            demolition[std::to_string(id)] = sequences[id];
        }
        add("scaffold", scaffold);
        add("demolition", demolition);
    }
    return text + "}\n";
}

TokenizerFile read_tokenizer_file(std::string_view text) {
    json root;
    try {
        root = json::parse(text);
    } catch (const json::parse_error& error) {
        // Where, in the file's own terms; the library's text names its internals.
        std::size_t line = 1, column = 1;
        const std::size_t end =
            std::min<std::size_t>(error.byte == 0 ? 0 : error.byte - 1, text.size());
        for (std::size_t i = 0; i < end; ++i) {
            if (text[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
        bad("not valid JSON (syntax error at line " + std::to_string(line) + ", column " +
            std::to_string(column) + ")");
    } catch (const json::exception&) {
        // out_of_range: a number beyond a double (1e999).
        bad("not valid JSON (a number out of range)");
    }
    if (!root.is_object()) bad("expected a JSON object");
    if (string_member(root, "format") != kFormat)
        bad(std::string("'format' must be \"") + kFormat + "\"");
    if (member(root, "version") != kVersion) {
        bad("version " + described(member(root, "version")) + " (this moelab reads version " +
            std::to_string(kVersion) + ")");
    }
    TokenizerFile file;
    file.component = string_member(root, "tokenizer");
    file.algorithm = string_member(root, "algorithm");
    if (file.algorithm != "bpe" && file.algorithm != "scaffold-bpe") {
        bad("'algorithm' must be \"bpe\" or \"scaffold-bpe\", got \"" + file.algorithm + "\"");
    }
    const json& encoding = member(root, "encoding");
    if (!encoding.is_object()) bad("'encoding' must be an object");
    const std::string policy = string_member(encoding, "policy");
    if (policy == "merge-rank") {
        file.encoding.policy = EncodingPolicy::kMergeRank;
    } else if (policy == "longest-first") {
        file.encoding.policy = EncodingPolicy::kLongestFirst;
        const std::string unit = string_member(encoding, "length_unit");
        const std::string tie = string_member(encoding, "tie_break");
        if (unit != "bytes" && unit != "chars") bad("encoding.length_unit must be bytes or chars");
        if (tie != "rank" && tie != "position") bad("encoding.tie_break must be rank or position");
        file.encoding.length_unit = unit == "bytes" ? LengthUnit::kBytes : LengthUnit::kChars;
        file.encoding.tie_break = tie == "rank" ? TieBreak::kRank : TieBreak::kPosition;
    } else {
        bad("encoding.policy must be \"merge-rank\" or \"longest-first\", got \"" + policy + "\"");
    }
    const json& pre = member(root, "pretokenizer");
    if (!pre.is_object()) bad("'pretokenizer' must be an object");
    try {
        file.pretokenizer.kind = parse_pretokenizer_kind(string_member(pre, "kind"));
    } catch (const sdk::Error& error) {
        bad(error.what());
    }
    const json& split_digits = member(pre, "split_digits");
    if (!split_digits.is_boolean()) bad("pretokenizer.split_digits must be true or false");
    file.pretokenizer.split_digits = split_digits.get<bool>();
    if (member(root, "end_of_document") != kEndOfDocument) bad("end_of_document must be 256");

    Vocabulary& v = file.vocabulary;
    const json& tokens = member(root, "tokens");
    if (!tokens.is_array()) bad("'tokens' must be an array of strings");
    for (std::size_t id = 0; id < tokens.size(); ++id) {
        if (!tokens[id].is_string()) bad("token " + std::to_string(id) + " is not a string");
        if (id == static_cast<std::size_t>(kEndOfDocument)) {
            v.tokens.emplace_back();
            continue;
        }
        auto bytes = piece_to_bytes(tokens[id].get<std::string>());
        if (!bytes) bad("token " + std::to_string(id) + " is not in the byte-level alphabet");
        v.tokens.push_back(std::move(*bytes));
    }
    v.scaffold.assign(v.tokens.size(), 0);
    std::unordered_map<std::string, std::int32_t> id_of;
    for (std::size_t id = 0; id < v.tokens.size(); ++id) {
        if (id != static_cast<std::size_t>(kEndOfDocument))
            id_of.emplace(v.tokens[id], static_cast<std::int32_t>(id));
    }
    const json& merges = member(root, "merges");
    if (!merges.is_array()) bad("'merges' must be an array of [left, right] id pairs");
    // Merge rank of each pair: a pair listed twice has two ranks, and no trainer writes that.
    std::unordered_map<std::int64_t, std::size_t> rank_of_pair;
    for (std::size_t r = 0; r < merges.size(); ++r) {
        const json& m = merges[r];
        if (!m.is_array() || m.size() != 2)
            bad("merge " + std::to_string(r) + " is not a pair of ids");
        const auto size = static_cast<std::int64_t>(v.tokens.size());
        Merge merge{id_value(m[0], "merges", size), id_value(m[1], "merges", size), -1};
        const auto [first, inserted] =
            rank_of_pair.emplace(std::int64_t(merge.left) * size + merge.right, r);
        if (!inserted) {
            bad("merge " + std::to_string(r) + " repeats merge " + std::to_string(first->second) +
                " [" + std::to_string(merge.left) + ", " + std::to_string(merge.right) + "]");
        }
        auto it = id_of.find(v.tokens[merge.left] + v.tokens[merge.right]);
        if (it == id_of.end()) bad("merge " + std::to_string(r) + " produces no vocabulary token");
        merge.result = it->second;
        v.merges.push_back(merge);
    }
    if (auto it = root.find("scaffold"); it != root.end()) {
        if (!it->is_array()) bad("'scaffold' must be an array of ids");
        for (const json& id : *it) {
            v.scaffold[id_value(id, "scaffold", v.expanded_size())] = 1;
        }
    }
    try {
        v.validate();
    } catch (const sdk::Error& error) {
        bad(error.what());
    }
    // What no trainer writes: scaffold tokens in a plain BPE vocabulary, or LBPE's encoding over a
    // Scaffold-BPE one (methods.md §7 defines LBPE over BPE only).
    if (file.algorithm == "bpe" && v.scaffold_count() > 0) {
        bad("algorithm \"bpe\" with scaffold tokens (only \"scaffold-bpe\" has them)");
    }
    if (file.algorithm == "scaffold-bpe" && file.encoding.policy != EncodingPolicy::kMergeRank) {
        bad("a Scaffold-BPE vocabulary is encoded by merge rank, not \"longest-first\"");
    }
    if (v.scaffold_count() > 0) {
        const json& stored = member(root, "demolition");
        if (!stored.is_object()) bad("'demolition' must be an object of id -> id sequence");
        const auto sequences = demolition_sequences(v);
        for (std::int32_t id = 0; id < v.expanded_size(); ++id) {
            if (!v.is_scaffold(id)) continue;
            auto it = stored.find(std::to_string(id));
            if (it == stored.end() || *it != json(sequences[id])) {
                bad("the demolition sequence of scaffold token " + std::to_string(id) +
                    " is missing or not its shortest decomposition");
            }
        }
    }
    return file;
}

std::string export_hugging_face(const TokenizerFile& file) {
    if (file.vocabulary.scaffold_count() > 0) {
        throw sdk::Error(
            "a Scaffold-BPE vocabulary cannot be expressed in Hugging Face's "
            "tokenizer.json (no scaffold tokens or demolition there)");
    }
    if (file.encoding.policy != EncodingPolicy::kMergeRank) {
        throw sdk::Error(
            "LBPE's longest-first encoding cannot be expressed in Hugging Face's "
            "tokenizer.json; export the underlying BPE vocabulary with the bpe "
            "tokenizer (moelab tokenizer export --as bpe)");
    }
    const Vocabulary& v = file.vocabulary;
    json vocab = json::object();
    for (std::int32_t id = 0; id < v.expanded_size(); ++id) {
        if (id == kEndOfDocument) continue;
        const std::string piece = bytes_to_piece(v.tokens[id]);
        if (piece == kEndOfDocumentText) {
            throw sdk::Error("token " + std::to_string(id) + " spells the end-of-document text " +
                             kEndOfDocumentText + "; cannot export");
        }
        vocab[piece] = id;
    }
    json merges = json::array();
    for (const Merge& m : v.merges) {
        merges.push_back(bytes_to_piece(v.tokens[m.left]) + " " +
                         bytes_to_piece(v.tokens[m.right]));
    }
    const json byte_level{{"type", "ByteLevel"},
                          {"add_prefix_space", false},
                          {"trim_offsets", true},
                          {"use_regex", true}};
    json pre_tokenizer;
    if (file.pretokenizer.kind == PretokenizerKind::kGpt2) {
        pre_tokenizer = byte_level;
    } else {
        json bytes_only = byte_level;
        bytes_only["use_regex"] = false;
        pre_tokenizer = json{
            {"type", "Sequence"},
            {"pretokenizers", json::array({json{{"type", "Split"},
                                                {"pattern", {{"Regex", " ?\\S+|\\s+(?!\\S)|\\s+"}}},
                                                {"behavior", "Isolated"},
                                                {"invert", false}},
                                           bytes_only})}};
    }
    if (file.pretokenizer.split_digits) {
        pre_tokenizer = json{
            {"type", "Sequence"},
            {"pretokenizers",
             json::array({json{{"type", "Digits"}, {"individual_digits", true}}, pre_tokenizer})}};
    }
    return hugging_face_bpe_json(vocab, merges, pre_tokenizer);
}

std::string hugging_face_bpe_json(const json& vocab, const json& merges,
                                  const json& pre_tokenizer) {
    const json byte_level{{"type", "ByteLevel"},
                          {"add_prefix_space", false},
                          {"trim_offsets", true},
                          {"use_regex", true}};
    json root{
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", json::array({json{{"id", kEndOfDocument},
                                           {"content", kEndOfDocumentText},
                                           {"single_word", false},
                                           {"lstrip", false},
                                           {"rstrip", false},
                                           {"normalized", false},
                                           {"special", true}}})},
        {"normalizer", nullptr},
        {"pre_tokenizer", pre_tokenizer},
        {"post_processor", nullptr},
        {"decoder", byte_level},
        {"model", json{{"type", "BPE"},
                       {"dropout", nullptr},
                       {"unk_token", nullptr},
                       {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr},
                       {"fuse_unk", false},
                       {"byte_fallback", false},
                       {"vocab", vocab},
                       {"merges", merges}}},
    };
    return root.dump(2) + "\n";
}

}  // namespace moelab::plugins::bpe_family
