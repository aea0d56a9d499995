#pragma once

// metrics.jsonl: one JSON object per line, flushed per record, so that a crashed or running job
// can be read at any time. Record types: "run" (versions, plugins, parameter counts), "train"
// (one per logged step), "eval" (one per evaluation), "stage" (a stage begins: what it trains),
// "error"; appended by later commands: "long_context" (moelab eval --context/--passkey) and
// "generate" (moelab generate --stats).

#include <cstdint>
#include <filesystem>
#include <fstream>

#include <nlohmann/json_fwd.hpp>

namespace moelab::core {

class MetricsLog {
  public:
    explicit MetricsLog(const std::filesystem::path& file);

    void write(const nlohmann::json& record);

    // Before resuming from a checkpoint at `step`: drops what training wrote after it ("train",
    // "eval", "error" records after `step`, and "stage" records from `step` on, which the resumed
    // run writes again). Records of other commands ("long_context", "generate") stay.
    static void truncate_after(const std::filesystem::path& file, std::int64_t step);

  private:
    std::ofstream out_;
};

}  // namespace moelab::core
