// Fuzzes the reader of BPE-family tokenizer files (plugins/tokenizers/bpe_family/tokenizer_file.h),
// which the bpe, lbpe and scaffold-bpe plugins load from a user's path. The input is the file's
// text. read_tokenizer_file() documents sdk::Error as its only exception; anything else escaping
// it is a finding.
//
// A file that reads must survive `moelab tokenizer` writing it again: write_tokenizer_file() then
// read_tokenizer_file() succeeds and gives the same tokenizer, and writing that gives the same
// text. The Hugging Face export, which reads the same structure, runs on it too.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "harness.h"
#include "moelab/sdk/error.h"
#include "tokenizer_file.h"

namespace {

using moelab::plugins::bpe_family::Merge;
using moelab::plugins::bpe_family::TokenizerFile;

void check_equal(const TokenizerFile& a, const TokenizerFile& b) {
    MOELAB_FUZZ_CHECK(a.component == b.component);
    MOELAB_FUZZ_CHECK(a.algorithm == b.algorithm);
    MOELAB_FUZZ_CHECK(a.encoding.policy == b.encoding.policy);
    MOELAB_FUZZ_CHECK(a.encoding.length_unit == b.encoding.length_unit);
    MOELAB_FUZZ_CHECK(a.encoding.tie_break == b.encoding.tie_break);
    MOELAB_FUZZ_CHECK(a.pretokenizer == b.pretokenizer);
    MOELAB_FUZZ_CHECK(a.vocabulary.tokens == b.vocabulary.tokens);
    MOELAB_FUZZ_CHECK(a.vocabulary.scaffold == b.vocabulary.scaffold);
    MOELAB_FUZZ_CHECK(a.vocabulary.merges.size() == b.vocabulary.merges.size());
    for (std::size_t r = 0; r < a.vocabulary.merges.size(); ++r) {
        const Merge& x = a.vocabulary.merges[r];
        const Merge& y = b.vocabulary.merges[r];
        MOELAB_FUZZ_CHECK(x.left == y.left && x.right == y.right && x.result == y.result);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace bpe = moelab::plugins::bpe_family;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    TokenizerFile file;
    try {
        file = bpe::read_tokenizer_file(text);
    } catch (const moelab::sdk::Error&) {
        return 0;
    }

    const std::string written = bpe::write_tokenizer_file(file);
    TokenizerFile reread;
    try {
        reread = bpe::read_tokenizer_file(written);
    } catch (const moelab::sdk::Error& error) {
        std::fprintf(stderr, "re-reading the written file: %s\n", error.what());
        MOELAB_FUZZ_CHECK(!"a file written by write_tokenizer_file() does not read back");
    }
    check_equal(file, reread);
    MOELAB_FUZZ_CHECK(bpe::write_tokenizer_file(reread) == written);

    try {
        MOELAB_FUZZ_CHECK(!bpe::export_hugging_face(file).empty());
    } catch (const moelab::sdk::Error&) {
        // Scaffold tokens and longest-first encoding have no Hugging Face form.
    }
    return 0;
}
