#pragma once

// Progress of a long run: on a terminal one line rewritten in place (step/total, loss, lr,
// tokens/s, MFU, ETA); otherwise plain lines at every logged step, suitable for log files.

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace moelab::core {

class ProgressReporter {
  public:
    ProgressReporter(std::FILE* stream, std::int64_t total_steps);
    ~ProgressReporter();

    // `mfu`: model FLOPs utilisation (0..1), shown when known.
    void update(std::int64_t step, double loss, double lr, double tokens_per_second,
                double eta_seconds, std::optional<double> mfu = std::nullopt);
    // A line that must stay visible (evaluations, checkpoints, warnings).
    void note(const std::string& line);

  private:
    void end_line();

    std::FILE* stream_;
    std::int64_t total_steps_;
    bool terminal_;
    bool line_open_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "4m12s", "37s"

}  // namespace moelab::core
