#pragma once

// report.html of a run directory, from its files alone (metrics.jsonl, summary.json,
// recipe.resolved.toml): loss and learning-rate curves, validation perplexity, the per-layer
// expert-load heatmap over training, routing entropy, dead experts and dropped assignments,
// parameter counts and the resolved recipe; the latest long-context evaluation (perplexity by
// context length, passkey heatmap) and decoding figures (moelab generate --stats) when recorded.
// `moelab run` refreshes it at each evaluation; `moelab report` also writes each chart as SVG and
// PNG into report/.

#include <filesystem>
#include <string>
#include <vector>

#include "core/report/report_page.h"

namespace moelab::core {

ReportPage run_report_page(const std::filesystem::path& run_dir);

// Writes run_dir/report.html (atomically). Throws FileError when the chart libraries are missing.
void write_run_report(const std::filesystem::path& run_dir);

}  // namespace moelab::core
