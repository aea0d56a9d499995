#include "core/train/progress.h"

#include <unistd.h>

#include <cmath>

#include <fmt/format.h>

namespace moelab::core {

std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const auto s = static_cast<long long>(std::llround(seconds));
    if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
    if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
    return fmt::format("{}s", s);
}

ProgressReporter::ProgressReporter(std::FILE* stream, std::int64_t total_steps)
    : stream_(stream), total_steps_(total_steps), terminal_(::isatty(::fileno(stream)) != 0) {}

ProgressReporter::~ProgressReporter() { end_line(); }

void ProgressReporter::end_line() {
    if (line_open_) {
        std::fputc('\n', stream_);
        line_open_ = false;
    }
}

void ProgressReporter::update(std::int64_t step, double loss, double lr, double tokens_per_second,
                              double eta_seconds, std::optional<double> mfu) {
    const std::string text = fmt::format(
        "step {:>{}}/{} | loss {:.4f} | lr {:.2e} | {:.1f}k tok/s{} | ETA {}", step,
        std::to_string(total_steps_).size(), total_steps_, loss, lr, tokens_per_second / 1000.0,
        mfu ? fmt::format(" | MFU {:.1f}%", 100.0 * *mfu) : std::string(),
        format_duration(eta_seconds));
    if (terminal_) {
        fmt::print(stream_, "\r\033[K{}", text);
        line_open_ = true;
    } else {
        fmt::print(stream_, "{}\n", text);
    }
    std::fflush(stream_);
}

void ProgressReporter::note(const std::string& line) {
    end_line();
    fmt::print(stream_, "{}\n", line);
    std::fflush(stream_);
}

}  // namespace moelab::core
