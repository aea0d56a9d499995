#include "core/conformance/tokenizer_conformance.h"

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/system/printable.h"
#include "core/system/remove_tree.h"
#include "moelab/sdk/parallel.h"

namespace moelab::core {

namespace {

namespace fs = std::filesystem;

// Text for training and for held-out checks: sentences of made-up words with digits,
// punctuation and some non-ASCII words, deterministic in `seed`.
std::string generated_text(std::size_t bytes, std::uint32_t seed) {
    static const char* const kSyllables[] = {"ka",  "lo",  "mi", "ne", "ru", "ta", "shi", "po",
                                             "ven", "dar", "el", "or", "qu", "is", "th",  "an"};
    static const char* const kForeign[] = {"café", "naïve", "東京", "Ελληνικά", "über", "🙂"};
    std::mt19937 random(seed);
    auto pick = [&](std::size_t n) { return static_cast<std::size_t>(random() % n); };
    std::string text;
    while (text.size() < bytes) {
        const std::size_t words = 4 + pick(10);
        for (std::size_t w = 0; w < words; ++w) {
            if (w > 0) text += ' ';
            const std::size_t kind = pick(20);
            if (kind == 0) {
                text += std::to_string(random() % 100000);
            } else if (kind == 1) {
                text += kForeign[pick(std::size(kForeign))];
            } else {
                const std::size_t syllables = 1 + pick(3);
                for (std::size_t s = 0; s < syllables; ++s) text += kSyllables[pick(16)];
            }
            if (pick(8) == 0) text += ",;:"[pick(3)];
        }
        text += ".!?"[pick(3)];
        text += pick(6) == 0 ? "\n\n" : "\n";
    }
    return text;
}

struct Sample {
    const char* name;
    std::string text;
};

// Valid UTF-8 that every tokenizer must round-trip (sdk::Tokenizer::encode's contract).
// The first `bytes` bytes of `text`, shortened to end on a UTF-8 character boundary.
std::string utf8_prefix(const std::string& text, std::size_t bytes) {
    std::size_t end = std::min(bytes, text.size());
    while (end > 0 && end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
        --end;
    }
    return text.substr(0, end);
}

std::vector<Sample> valid_samples(const std::string& training) {
    return {
        {"training text", utf8_prefix(training, 2000)},
        {"unseen text", generated_text(2000, 777)},
        {"unseen words", "Zyzzyva quokka xylophone 1234567890 !@#$%^&*() [brackets] {braces}"},
        {"multi-byte UTF-8",
         "naïve café — 東京 Ελληνικά 🙂👍🏽 👨‍👩‍👧 ﬁ Å"},
        {"whitespace", "  two  spaces\t\ttabs\n\n\nnewlines \r\n crlf   "},
        {"control characters", std::string("\x01\x02\x7f bell\a nul>") + '\0' + "<"},
        {"empty", ""},
        {"long repetition", std::string(5000, 'a')},
    };
}

// Bytes that are not UTF-8: only byte-level tokenizers promise to round-trip them.
const std::string kInvalidUtf8 = "\xff\xfe \xc3( \x80\x80 \xed\xa0\x80 \xf4\x90\x80\x80";

std::vector<std::int32_t> encode(const sdk::Tokenizer& tokenizer, const std::string& text) {
    std::vector<std::int32_t> ids;
    tokenizer.encode(text, ids);
    return ids;
}

// The first byte offset where `a` and `b` differ, described for a failure message.
std::string first_difference(const std::string& expected, const std::string& got) {
    std::size_t i = 0;
    while (i < expected.size() && i < got.size() && expected[i] == got[i]) ++i;
    return fmt::format("differs at byte {} of {} (decoded {} bytes): expected \"{}\", got \"{}\"",
                       i, expected.size(), got.size(), printable(expected.substr(i, 24), 40),
                       printable(got.substr(i, 24), 40));
}

// A private directory holding the training file; removed with the object.
class KitCorpus {
  public:
    explicit KitCorpus(const std::string& text) {
        std::string pattern = (fs::temp_directory_path() / "moelab-tokenizer-kit-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("cannot create a temporary directory for the training text");
        }
        dir_ = pattern;
        std::ofstream(dir_ / "train.txt", std::ios::binary) << text;
    }
    ~KitCorpus() {
        try {
            remove_tree(dir_);
        } catch (const std::exception&) {  // a leftover temporary directory is not a failure
        }
    }
    KitCorpus(const KitCorpus&) = delete;
    KitCorpus& operator=(const KitCorpus&) = delete;

    sdk::TokenizerTrainingData data() const { return {{(dir_ / "train.txt").string()}}; }

  private:
    fs::path dir_;
};

}  // namespace

ConformanceReport test_tokenizer_component(const RegisteredTokenizer& tokenizer) {
    ConformanceReport report;
    const sdk::TokenizerComponent& component = tokenizer.component;
    report.component = describe_component("tokenizer", component.name, *tokenizer.plugin);
    const sdk::Params params = default_params(component.params);
    const std::string training = generated_text(200'000, 1);
    const KitCorpus corpus(training);
    const std::vector<Sample> samples = valid_samples(training);

    std::shared_ptr<sdk::Tokenizer> trained;
    report.checks.push_back(run_check("trains with default options", [&] {
        const auto start = std::chrono::steady_clock::now();
        trained = train_tokenizer(tokenizer, corpus.data(), params);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return pass(fmt::format("vocabulary of {} from {} kB in {:.2f} s", trained->vocab_size(),
                                training.size() / 1000, seconds));
    }));
    if (!trained) return report;  // nothing else can be checked
    const sdk::Tokenizer& t = *trained;

    report.checks.push_back(run_check("ids and special tokens in range", [&] {
        const std::int64_t vocab = t.vocab_size();
        if (vocab <= 0) return fail(fmt::format("vocab_size() is {}", vocab));
        const sdk::SpecialTokens special = t.special_tokens();
        for (const auto& [name, id] : {std::pair{"eos", special.eos}, std::pair{"bos", special.bos},
                                       std::pair{"pad", special.pad}}) {
            if (id < -1 || id >= vocab) {
                return fail(
                    fmt::format("special token {} = {} is outside [-1, {})", name, id, vocab));
            }
        }
        std::size_t ids = 0;
        for (const Sample& sample : samples) {
            for (std::int32_t id : encode(t, sample.text)) {
                if (id < 0 || id >= vocab) {
                    return fail(fmt::format("encoding the {} gave id {}, outside [0, {})",
                                            sample.name, id, vocab));
                }
                ++ids;
            }
        }
        return pass(
            fmt::format("{} ids from {} texts, all in [0, {})", ids, samples.size(), vocab));
    }));

    report.checks.push_back(run_check("lossless round trip", [&] {
        for (const Sample& sample : samples) {
            const std::string decoded = t.decode(encode(t, sample.text));
            if (decoded != sample.text) {
                return fail(fmt::format("decode(encode({})) {}", sample.name,
                                        first_difference(sample.text, decoded)));
            }
        }
        return pass(
            fmt::format("{} texts: training, unseen, multi-byte UTF-8, whitespace, "
                        "control characters, empty, repetition",
                        samples.size()));
    }));

    report.checks.push_back(run_check("bytes that are not UTF-8", [&] {
        std::string decoded;
        try {
            decoded = t.decode(encode(t, kInvalidUtf8));
        } catch (const std::exception& error) {
            decoded = std::string("(threw: ") + error.what() + ")";
        }
        if (decoded == kInvalidUtf8) return pass("round-trip: byte-level");
        // The contract asks this of byte-level tokenizers only.
        return ConformanceCheck{"", CheckOutcome::kInfo,
                                "not byte-level: invalid UTF-8 does not round-trip (allowed)"};
    }));

    report.checks.push_back(run_check("encode appends", [&] {
        const std::vector<std::int32_t> prefix{0, 0, 0};
        std::vector<std::int32_t> out = prefix;
        t.encode(samples[1].text, out);
        const std::vector<std::int32_t> alone = encode(t, samples[1].text);
        if (out.size() != prefix.size() + alone.size() ||
            !std::equal(prefix.begin(), prefix.end(), out.begin()) ||
            !std::equal(alone.begin(), alone.end(), out.begin() + prefix.size())) {
            return fail("encode(text, out) must append to out and leave what was there");
        }
        return pass("earlier ids kept");
    }));

    report.checks.push_back(run_check("serialize -> load round trip", [&] {
        const std::string serialized = t.serialize();
        const auto loaded = load_tokenizer(tokenizer, serialized, params);
        if (loaded->vocab_size() != t.vocab_size()) {
            return fail(fmt::format("the loaded tokenizer has vocab_size {}, the trained one {}",
                                    loaded->vocab_size(), t.vocab_size()));
        }
        const sdk::SpecialTokens a = t.special_tokens(), b = loaded->special_tokens();
        if (a.eos != b.eos || a.bos != b.bos || a.pad != b.pad) {
            return fail("the loaded tokenizer has other special tokens");
        }
        for (const Sample& sample : samples) {
            if (encode(*loaded, sample.text) != encode(t, sample.text)) {
                return fail(
                    fmt::format("the loaded tokenizer encodes the {} differently", sample.name));
            }
        }
        if (loaded->serialize() != serialized) {
            return fail(
                "serialize() of the loaded tokenizer differs from the one it was loaded "
                "from (the host keys its token cache by it)");
        }
        return pass(
            fmt::format("{} bytes serialized; same ids, same serialized text", serialized.size()));
    }));

    report.checks.push_back(run_check("deterministic training", [&] {
        const auto again = train_tokenizer(tokenizer, corpus.data(), params);
        if (again->serialize() != t.serialize()) {
            return fail(
                "training twice on the same text with the same options gives different "
                "tokenizers");
        }
        return pass("same text, same options, same tokenizer");
    }));

    report.checks.push_back(run_check("concurrent const calls", [&] {
        std::vector<std::vector<std::int32_t>> serial;
        for (const Sample& sample : samples) serial.push_back(encode(t, sample.text));
        constexpr std::size_t kThreads = 4;
        std::vector<int> mismatches(kThreads, 0);
        sdk::run_workers(kThreads, [&](std::size_t w) {
            for (int round = 0; round < 3; ++round) {
                for (std::size_t i = 0; i < samples.size(); ++i) {
                    const auto ids = encode(t, samples[i].text);
                    mismatches[w] += ids != serial[i] || t.decode(ids) != samples[i].text;
                }
            }
        });
        int total = 0;
        for (int m : mismatches) total += m;
        if (total > 0) {
            return fail(
                fmt::format("{} of {} concurrent encode/decode calls disagreed with "
                            "serial ones",
                            total, kThreads * 3 * samples.size()));
        }
        return pass(fmt::format("{} threads x {} calls agree", kThreads, 3 * samples.size()));
    }));

    report.checks.push_back(run_check("compression and throughput", [&] {
        const std::string held_out = generated_text(400'000, 99);
        encode(t, held_out.substr(0, 10'000));  // warm-up
        const auto start = std::chrono::steady_clock::now();
        const std::size_t ids = encode(t, held_out).size();
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return ConformanceCheck{
            "", CheckOutcome::kInfo,
            fmt::format("{:.2f} bytes per token on unseen text; encodes {:.1f} MB/s (one thread)",
                        static_cast<double>(held_out.size()) / std::max<std::size_t>(ids, 1),
                        held_out.size() / 1e6 / std::max(seconds, 1e-9))};
    }));
    return report;
}

}  // namespace moelab::core
