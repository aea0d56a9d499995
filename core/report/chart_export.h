#pragma once

// Writes each chart of a report as files next to the page: CHART.vl.json (the Vega-Lite spec),
// CHART.svg (rendered by Node with the page's own libraries, tools/report/render_svg.mjs) and
// CHART.png (rsvg-convert, Debian's librsvg2-bin). Returns what could not be done (a missing
// tool, a failed render), one line each, so that the caller can warn without failing.

#include <filesystem>
#include <string>
#include <vector>

#include "core/report/report_page.h"

namespace moelab::core {

std::vector<std::string> export_charts(const ReportPage& page, const std::filesystem::path& dir);

}  // namespace moelab::core
