#include <filesystem>

#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/report/chart_export.h"
#include "core/report/comparison_report.h"
#include "core/report/run_report.h"
#include "core/system/atomic_file.h"
#include "core/system/file_error.h"

namespace moelab::cli {

namespace fs = std::filesystem;

int write_report(const ReportArgs& args) {
    const fs::path dir(args.directory);
    std::vector<std::string> problems;
    if (fs::exists(dir / "metrics.jsonl")) {
        const core::ReportPage page = core::run_report_page(dir);
        core::write_file_atomically(dir / "report.html", page.html());
        problems = core::export_charts(page, dir / "report");
        fmt::print("{}\n", (dir / "report.html").string());
    } else if (fs::exists(dir / "results.json")) {
        problems = core::write_comparison_report(dir);
        fmt::print("{}\n", (dir / "report.html").string());
    } else {
        throw UsageError(
            fmt::format("{}: expected a run directory (with metrics.jsonl) or a "
                        "comparison directory (with results.json)",
                        core::printable_path(dir)));
    }
    for (const std::string& problem : problems) fmt::print(stderr, "warning: {}\n", problem);
    return kExitOk;
}

}  // namespace moelab::cli
