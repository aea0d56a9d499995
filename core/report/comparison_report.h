#pragma once

// report.html of a comparison directory, from its results.json: for each perturbation, the
// perplexity against the perturbation's strength with one line per run (mean over seeds, bars
// for ± one standard deviation, log scale), the ratio to unperturbed perplexity, and the n/a
// cells with their reasons. `moelab compare` writes it with each chart as SVG and PNG.

#include <filesystem>
#include <string>
#include <vector>

#include "core/report/report_page.h"

namespace moelab::core {

ReportPage comparison_report_page(const std::filesystem::path& output_dir);

// Writes output_dir/report.html and, into output_dir/charts/, each chart as .vl.json, .svg and
// .png. Returns what could not be exported (see export_charts).
std::vector<std::string> write_comparison_report(const std::filesystem::path& output_dir);

}  // namespace moelab::core
