#include "core/report/report_assets.h"

#include <cstdlib>

#include "core/system/file_error.h"
#include "core/system/read_file.h"

namespace moelab::core {

namespace fs = std::filesystem;

fs::path report_assets_dir() {
    if (const char* dir = std::getenv("MOELAB_REPORT_ASSETS"); dir != nullptr && *dir != '\0') {
        return dir;
    }
    return MOELAB_REPORT_ASSETS_DIR;
}

ChartLibraries load_chart_libraries() {
    const fs::path modules = report_assets_dir() / "node_modules";
    auto load = [&](const char* relative) {
        const fs::path file = modules / relative;
        try {
            return read_file(file, kMaxSmallFileBytes, "chart library");
        } catch (const FileError& error) {
            throw FileError(file, error.reason() +
                                      "; the report's chart libraries are installed by "
                                      "tools/setup.sh (npm packages vega, vega-lite, vega-embed "
                                      "in tools/report), or set MOELAB_REPORT_ASSETS");
        }
    };
    return {load("vega/build/vega.min.js"), load("vega-lite/build/vega-lite.min.js"),
            load("vega-embed/build/vega-embed.min.js")};
}

}  // namespace moelab::core
