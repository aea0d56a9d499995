#include "core/report/report_page.h"

#include <cctype>

#include <fmt/format.h>

#include "core/report/report_assets.h"

namespace moelab::core {

namespace {

// A library inlined in <script> must not close the element early: "</script" becomes
// "<\/script", which means the same inside a JavaScript string or regular expression. Nothing
// else is touched (a blanket "</" -> "<\/" would break regular expressions such as /</g).
std::string script_safe(std::string text) {
    for (std::size_t at = 0; (at = text.find("</", at)) != std::string::npos; at += 2) {
        std::string tag = text.substr(at + 2, 6);
        for (char& c : tag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (tag == "script") text.replace(at, 2, "<\\/");
    }
    return text;
}

// JSON inlined in <script>: "</" only occurs inside strings, where "<\/" is the same string.
std::string json_safe(std::string text) {
    for (std::size_t at = 0; (at = text.find("</", at)) != std::string::npos; at += 3) {
        text.replace(at, 2, "<\\/");
    }
    return text;
}

constexpr const char* kStyle = R"(
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.chart { margin: 1em 0; } .chart-error { color: #b00; }
)";

constexpr const char* kRenderScript = R"(
(function () {
  const errors = [];
  const jobs = Object.entries(MOELAB_CHARTS).map(([id, spec]) =>
    vegaEmbed('#' + id, spec, {renderer: 'svg', actions: false}).catch((error) => {
      errors.push(id + ': ' + error);
      const element = document.getElementById(id);
      element.className = 'chart chart-error';
      element.textContent = 'chart ' + id + ' failed: ' + error;
    }));
  Promise.all(jobs).then(() => {
    document.body.dataset.chartCount = String(jobs.length);
    document.body.dataset.charts = errors.length ? 'failed' : 'rendered';
  });
})();
)";

}  // namespace

std::string escape_html(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

ReportPage::ReportPage(std::string title) : title_(std::move(title)) {}

void ReportPage::heading(const std::string& text) {
    body_ += fmt::format("<h2>{}</h2>\n", escape_html(text));
}

void ReportPage::paragraph(const std::string& text) {
    body_ += fmt::format("<p>{}</p>\n", escape_html(text));
}

void ReportPage::table(const std::vector<std::vector<std::string>>& rows) {
    body_ += "<table>\n";
    for (std::size_t r = 0; r < rows.size(); ++r) {
        body_ += "<tr>";
        for (const std::string& cell : rows[r]) {
            const char* tag = r == 0 ? "th" : "td";
            body_ += fmt::format("<{0}>{1}</{0}>", tag, escape_html(cell));
        }
        body_ += "</tr>\n";
    }
    body_ += "</table>\n";
}

void ReportPage::preformatted(const std::string& text) {
    body_ += fmt::format("<pre>{}</pre>\n", escape_html(text));
}

void ReportPage::chart(const std::string& id, nlohmann::json spec) {
    spec["$schema"] = "https://vega.github.io/schema/vega-lite/v5.json";
    body_ += fmt::format("<div class=\"chart\" id=\"{}\"></div>\n", escape_html(id));
    charts_.emplace_back(id, std::move(spec));
}

std::string ReportPage::html() const {
    const ChartLibraries libraries = load_chart_libraries();
    nlohmann::json specs = nlohmann::json::object();
    for (const auto& [id, spec] : charts_) specs[id] = spec;
    return fmt::format(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>{0}</title>\n<style>{1}</style>\n<script>{2}</script>\n<script>{3}</script>\n"
        "<script>{4}</script>\n</head>\n<body>\n<h1>{0}</h1>\n{5}"
        "<script>const MOELAB_CHARTS = {6};</script>\n<script>{7}</script>\n</body>\n</html>\n",
        escape_html(title_), kStyle, script_safe(libraries.vega), script_safe(libraries.vega_lite),
        script_safe(libraries.vega_embed), body_, json_safe(specs.dump()), kRenderScript);
}

}  // namespace moelab::core
