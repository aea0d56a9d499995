#pragma once

// Reading what `moelab run` leaves in a run directory, for end-to-end tests.

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moelab::tests {

// The records of `type` ("run", "train", "eval", ...) in run_dir/metrics.jsonl, in order.
inline std::vector<nlohmann::json> metrics_records(const std::filesystem::path& run_dir,
                                                   const std::string& type) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        nlohmann::json record = nlohmann::json::parse(line);
        if (record["type"] == type) out.push_back(std::move(record));
    }
    return out;
}

inline nlohmann::json read_json_file(const std::filesystem::path& file) {
    std::ifstream in(file);
    return nlohmann::json::parse(in);
}

}  // namespace moelab::tests
