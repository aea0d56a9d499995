#pragma once

// The conformance kit for tokenizer components, `moelab plugins test`: trains the component (with
// its default options) on a small generated corpus and checks the contract of sdk::Tokenizer:
// ids in [0, vocab_size), special tokens in range, encode appends, lossless round trips of
// training text, unseen text, multi-byte UTF-8, whitespace and control characters, a serialize ->
// load round trip that encodes identically, deterministic training, and concurrent const calls;
// plus compression and encoding throughput.

#include "core/conformance/conformance_report.h"
#include "core/plugin/registry.h"

namespace moelab::core {

ConformanceReport test_tokenizer_component(const RegisteredTokenizer& tokenizer);

}  // namespace moelab::core
