// Fuzzes the reader of a checkpoint's state.json (core/checkpoint/checkpoint_state.h). The input is
// the file's text. A state that parses must survive the trip a checkpoint makes: written with
// to_json() and dump(), read back with parse_checkpoint_state(), every field equal (the elapsed
// seconds bit for bit: resuming must not change them).

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_error.h"
#include "core/checkpoint/checkpoint_state.h"
#include "harness.h"

namespace {

using moelab::core::CheckpointState;

const std::string kFile = "state.json";

void check_equal(const CheckpointState& a, const CheckpointState& b) {
    MOELAB_FUZZ_CHECK(a.step == b.step);
    MOELAB_FUZZ_CHECK(a.optimizer_steps == b.optimizer_steps);
    MOELAB_FUZZ_CHECK(a.parameter_steps == b.parameter_steps);
    MOELAB_FUZZ_CHECK(a.tokens_seen == b.tokens_seen);
    MOELAB_FUZZ_CHECK(a.data_sequences == b.data_sequences);
    MOELAB_FUZZ_CHECK(a.data_sources.size() == b.data_sources.size());
    for (std::size_t s = 0; s < a.data_sources.size() && s < b.data_sources.size(); ++s) {
        MOELAB_FUZZ_CHECK(a.data_sources[s].name == b.data_sources[s].name);
        MOELAB_FUZZ_CHECK(a.data_sources[s].epoch == b.data_sources[s].epoch);
        MOELAB_FUZZ_CHECK(a.data_sources[s].cursor == b.data_sources[s].cursor);
    }
    MOELAB_FUZZ_CHECK(a.recipe_hash == b.recipe_hash);
    MOELAB_FUZZ_CHECK(std::bit_cast<std::uint64_t>(a.elapsed_seconds) ==
                      std::bit_cast<std::uint64_t>(b.elapsed_seconds));
    MOELAB_FUZZ_CHECK(a.extra == b.extra);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    CheckpointState state;
    try {
        state = moelab::core::parse_checkpoint_state(text, kFile);
    } catch (const moelab::core::CheckpointError& error) {
        // Every message names the file.
        MOELAB_FUZZ_CHECK(std::string_view(error.what()).starts_with(kFile + ": "));
        return 0;
    }
    MOELAB_FUZZ_CHECK(state.step >= 0 && state.optimizer_steps >= 0 && state.tokens_seen >= 0);
    MOELAB_FUZZ_CHECK(!state.data_sources.empty());  // at least the one of an older checkpoint
    for (const auto& source : state.data_sources) {
        MOELAB_FUZZ_CHECK(source.epoch >= 0 && source.cursor >= 0);
    }
    MOELAB_FUZZ_CHECK(state.elapsed_seconds >= 0);

    const std::string written = moelab::core::to_json(state).dump();
    CheckpointState reread;
    try {
        reread = moelab::core::parse_checkpoint_state(written, kFile);
    } catch (const moelab::core::CheckpointError& error) {
        std::fprintf(stderr, "re-reading %s: %s\n", written.c_str(), error.what());
        MOELAB_FUZZ_CHECK(!"state written by to_json() is rejected by parse_checkpoint_state()");
    }
    check_equal(state, reread);
    return 0;
}
