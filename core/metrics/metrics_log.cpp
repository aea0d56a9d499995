#include "core/metrics/metrics_log.h"

#include <sstream>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/system/atomic_file.h"

namespace moelab::core {

MetricsLog::MetricsLog(const std::filesystem::path& file) : out_(file, std::ios::app) {
    if (!out_) throw std::runtime_error("cannot open " + file.string() + " for writing");
}

void MetricsLog::write(const nlohmann::json& record) {
    out_ << record.dump() << '\n';
    out_.flush();
}

void MetricsLog::truncate_after(const std::filesystem::path& file, std::int64_t step) {
    std::ifstream in(file);
    if (!in) return;
    std::string kept;
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        try {
            const nlohmann::json record = nlohmann::json::parse(line);
            const std::string type = record.value("type", "");
            const std::int64_t at = record.contains("step") && record["step"].is_number_integer()
                                        ? record["step"].get<std::int64_t>()
                                        : -1;
            const bool training = type == "train" || type == "eval" || type == "error";
            if ((training && at > step) || (type == "stage" && at >= step)) continue;
        } catch (const nlohmann::json::exception&) {
            continue;  // a line cut short by a crash
        }
        kept += line + '\n';
    }
    write_file_atomically(file, kept);
}

}  // namespace moelab::core
