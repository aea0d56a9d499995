#pragma once

// The chart libraries report pages inline (Vega, Vega-Lite, vega-embed; npm packages installed by
// tools/setup.sh into tools/report/node_modules) and the script that renders the same specs to
// SVG. Found in $MOELAB_REPORT_ASSETS, else in the source tree moelab was built from.

#include <filesystem>
#include <string>

namespace moelab::core {

// The directory holding render_svg.mjs and node_modules/.
std::filesystem::path report_assets_dir();

struct ChartLibraries {
    std::string vega;
    std::string vega_lite;
    std::string vega_embed;
};

// Throws FileError naming the missing file and saying how to install it.
ChartLibraries load_chart_libraries();

}  // namespace moelab::core
