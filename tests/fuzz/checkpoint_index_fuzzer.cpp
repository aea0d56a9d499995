// Fuzzes the reader of a checkpoint's shard index, model.safetensors.index.json
// (core/checkpoint/checkpoint_index.h). The input is the file's text. An index that parses names
// only plain .safetensors files of its own directory and positive expert counts, and survives the
// trip save_checkpoint() makes: format_checkpoint_index(), then parse again, equal maps.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/checkpoint/checkpoint_error.h"
#include "core/checkpoint/checkpoint_index.h"
#include "harness.h"

namespace {

const std::string kFile = "model.safetensors.index.json";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    moelab::core::CheckpointIndex index;
    try {
        index = moelab::core::parse_checkpoint_index(text, kFile);
    } catch (const moelab::core::CheckpointError& error) {
        MOELAB_FUZZ_CHECK(std::string_view(error.what()).starts_with(kFile + ": "));
        return 0;
    }
    for (const auto& [tensor, file] : index.weight_map) {
        MOELAB_FUZZ_CHECK(file.find('/') == std::string::npos);
        MOELAB_FUZZ_CHECK(file.front() != '.');
        MOELAB_FUZZ_CHECK(file.ends_with(".safetensors"));
    }
    for (const auto& [tensor, experts] : index.stacks) MOELAB_FUZZ_CHECK(experts >= 1);

    const std::string written = moelab::core::format_checkpoint_index(index, {{"step", "1"}});
    moelab::core::CheckpointIndex reread;
    try {
        reread = moelab::core::parse_checkpoint_index(written, kFile);
    } catch (const moelab::core::CheckpointError& error) {
        std::fprintf(stderr, "re-reading %s: %s\n", written.c_str(), error.what());
        MOELAB_FUZZ_CHECK(!"an index written by format_checkpoint_index() is rejected");
    }
    MOELAB_FUZZ_CHECK(reread.weight_map == index.weight_map);
    MOELAB_FUZZ_CHECK(reread.stacks == index.stacks);
    return 0;
}
