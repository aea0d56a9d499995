#pragma once

// metrics.jsonl: one JSON object per line, flushed per record, so that a crashed or running job
// can be read at any time. Record types: "run" (versions, plugins, parameter counts), "train"
// (one per logged step), "eval" (one per evaluation), "error".

#include <cstdint>
#include <filesystem>
#include <fstream>

#include <nlohmann/json_fwd.hpp>

namespace moelab::core {

class MetricsLog {
public:
    explicit MetricsLog(const std::filesystem::path& file);

    void write(const nlohmann::json& record);

    // Drops "train" and "eval" records after `step` (before resuming from a checkpoint at `step`).
    static void truncate_after(const std::filesystem::path& file, std::int64_t step);

private:
    std::ofstream out_;
};

}  // namespace moelab::core
