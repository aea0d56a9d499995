#pragma once

// A self-contained HTML report: headings, text, tables and Vega-Lite charts, with the chart
// libraries inlined so the page opens offline. When every chart has rendered the page sets
// <body data-charts="rendered">, or "failed" with the errors shown in place of the charts; the
// browser test reads that.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moelab::core {

class ReportPage {
  public:
    explicit ReportPage(std::string title);

    void heading(const std::string& text);
    void paragraph(const std::string& text);  // plain text, escaped
    // A table of plain-text cells, escaped; the first row is the header.
    void table(const std::vector<std::vector<std::string>>& rows);
    void preformatted(const std::string& text);
    // A Vega-Lite spec; `id` names the chart in the page and in exported files.
    void chart(const std::string& id, nlohmann::json spec);

    const std::vector<std::pair<std::string, nlohmann::json>>& charts() const { return charts_; }

    // The whole page; throws FileError when the chart libraries are missing.
    std::string html() const;

  private:
    std::string title_;
    std::string body_;
    std::vector<std::pair<std::string, nlohmann::json>> charts_;
};

std::string escape_html(const std::string& text);

}  // namespace moelab::core
