#include "core/report/comparison_report.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/report/chart_export.h"
#include "core/system/atomic_file.h"
#include "core/system/read_file.h"

namespace moelab::core {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Spread {
    double mean = 0, sd = 0;
    std::size_t n = 0;
};

Spread spread(const std::vector<double>& values) {
    Spread s;
    s.n = values.size();
    if (values.empty()) return s;
    for (double v : values) s.mean += v;
    s.mean /= static_cast<double>(s.n);
    double var = 0;
    for (double v : values) var += (v - s.mean) * (v - s.mean);
    s.sd = s.n > 1 ? std::sqrt(var / static_cast<double>(s.n - 1)) : 0.0;
    return s;
}

// One point per run and strength: mean and spread over seeds, the error bar clamped above 0 for
// the log scale.
json points(const std::vector<const json*>& cells, const std::string& field) {
    std::map<std::pair<std::string, double>, std::vector<double>> groups;
    std::vector<std::string> order;
    for (const json* c : cells) {
        const std::string run = (*c)["run"].get<std::string>();
        if (std::find(order.begin(), order.end(), run) == order.end()) order.push_back(run);
        groups[{run, (*c)["strength"].get<double>()}].push_back((*c)[field].get<double>());
    }
    json out = json::array();
    for (const auto& [key, values] : groups) {
        const Spread s = spread(values);
        out.push_back({{"run", key.first},
                       {"strength", key.second},
                       {"mean", s.mean},
                       {"low", std::max(s.mean - s.sd, s.mean * 1e-3)},
                       {"high", s.mean + s.sd},
                       {"seeds", s.n}});
    }
    return out;
}

json strength_chart(const std::string& title, const std::string& x_title, json values,
                    const std::string& y_title) {
    const json x = {{"field", "strength"}, {"type", "quantitative"}, {"title", x_title}};
    const json color = {{"field", "run"}, {"type", "nominal"}, {"title", "run"}};
    return {
        {"title", title},
        {"width", 520},
        {"height", 280},
        {"data", {{"values", values}}},
        {"layer", json::array({{{"mark", {{"type", "line"}, {"point", true}}},
                                {"encoding",
                                 {{"x", x},
                                  {"y",
                                   {{"field", "mean"},
                                    {"type", "quantitative"},
                                    {"title", y_title},
                                    {"scale", {{"type", "log"}, {"nice", false}}}}},
                                  {"color", color},
                                  {"tooltip", json::array({{{"field", "run"}},
                                                           {{"field", "strength"}},
                                                           {{"field", "mean"}, {"format", ".3f"}},
                                                           {{"field", "seeds"}}})}}}},
                               {{"mark", {{"type", "errorbar"}, {"ticks", true}}},
                                {"encoding",
                                 {{"x", x},
                                  {"y",
                                   {{"field", "low"},
                                    {"type", "quantitative"},
                                    {"title", y_title},
                                    {"scale", {{"type", "log"}, {"nice", false}}}}},
                                  {"y2", {{"field", "high"}}},
                                  {"color", color}}}}})}};
}

json bar_chart(const std::string& title, json values, const std::string& y_title) {
    return {
        {"title", title},
        {"width", 520},
        {"height", 240},
        {"data", {{"values", values}}},
        {"layer",
         json::array({{{"mark", "bar"},
                       {"encoding",
                        {{"x",
                          {{"field", "run"},
                           {"type", "nominal"},
                           {"title", "run"},
                           {"sort", nullptr},
                           {"axis", {{"labelAngle", 0}}}}},
                         {"y", {{"field", "mean"}, {"type", "quantitative"}, {"title", y_title}}},
                         {"color", {{"field", "run"}, {"type", "nominal"}, {"legend", nullptr}}}}}},
                      {{"mark", {{"type", "errorbar"}, {"ticks", true}}},
                       {"encoding",
                        {{"x", {{"field", "run"}, {"type", "nominal"}, {"sort", nullptr}}},
                         {"y", {{"field", "low"}, {"type", "quantitative"}, {"title", y_title}}},
                         {"y2", {{"field", "high"}}}}}}})}};
}

std::string strength_name(const std::string& kind) {
    if (kind == "disable_top") return "experts disabled per token (n)";
    if (kind == "logit_noise") return "noise standard deviation (sigma, logits)";
    if (kind == "expert_dropout") return "probability an expert is unavailable (p)";
    if (kind == "random_routing") return "fraction of tokens routed at random (q)";
    return "strength";
}

}  // namespace

ReportPage comparison_report_page(const fs::path& output_dir) {
    const json results = json::parse(
        read_file(output_dir / "results.json", kMaxSmallFileBytes, "comparison results"));
    const json& cells = results.at("cells");
    ReportPage page(fmt::format("moelab comparison {}", results.value("comparison", "")));
    page.paragraph(fmt::format(
        "Perplexity on the {} split of every run, unperturbed and under each routing "
        "perturbation (docs/robustness.md). Points are means over seeds; bars span ± one sample "
        "standard deviation. Cells a router cannot be evaluated on are n/a and listed below; no "
        "number is drawn for them.",
        results.value("split", "validation")));

    std::vector<std::string> kinds;
    std::vector<const json*> clean;
    for (const json& c : cells) {
        const std::string kind = c["perturbation"].get<std::string>();
        if (kind == "none") {
            if (c["measured"].get<bool>()) clean.push_back(&c);
        } else if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
            kinds.push_back(kind);
        }
    }
    page.heading("Unperturbed");
    page.chart("unperturbed",
               bar_chart("Unperturbed perplexity", points(clean, "ppl"), "perplexity"));

    for (const std::string& kind : kinds) {
        std::vector<const json*> measured;
        std::vector<double> strengths;
        for (const json& c : cells) {
            if (c["perturbation"] != kind || !c["measured"].get<bool>()) continue;
            measured.push_back(&c);
            const double s = c["strength"].get<double>();
            if (std::find(strengths.begin(), strengths.end(), s) == strengths.end()) {
                strengths.push_back(s);
            }
        }
        page.heading(kind);
        if (measured.empty()) {
            page.paragraph("No run could be evaluated under this perturbation (see n/a below).");
            continue;
        }
        if (strengths.size() == 1) {
            page.chart(kind + "_ratio",
                       bar_chart(fmt::format("{}: perplexity / unperturbed perplexity", kind),
                                 points(measured, "ratio"), "ratio to unperturbed"));
            continue;
        }
        // Strength 0 is the unperturbed run itself.
        std::vector<const json*> with_clean = measured;
        std::vector<json> zero;
        zero.reserve(clean.size());
        for (const json* c : clean) {
            const bool has_run = std::any_of(measured.begin(), measured.end(), [&](const json* m) {
                return (*m)["run"] == (*c)["run"];
            });
            if (!has_run) continue;
            json copy = *c;
            copy["strength"] = 0.0;
            copy["ratio"] = 1.0;
            zero.push_back(std::move(copy));
        }
        for (const json& z : zero) with_clean.push_back(&z);
        page.chart(kind + "_ppl",
                   strength_chart(fmt::format("{}: perplexity", kind), strength_name(kind),
                                  points(with_clean, "ppl"), "perplexity (log scale)"));
        page.chart(
            kind + "_ratio",
            strength_chart(fmt::format("{}: ratio to unperturbed perplexity", kind),
                           strength_name(kind), points(with_clean, "ratio"), "ratio (log scale)"));
    }

    std::vector<std::vector<std::string>> na = {{"run", "seed", "perturbation", "reason"}};
    for (const json& c : cells) {
        if (c["measured"].get<bool>()) continue;
        na.push_back({c["run"].get<std::string>(), std::to_string(c["seed"].get<std::int64_t>()),
                      c["description"].get<std::string>(), c["reason"].get<std::string>()});
    }
    if (na.size() > 1) {
        page.heading("n/a");
        page.table(na);
    }
    page.heading("All measurements");
    std::vector<std::vector<std::string>> table = {
        {"run", "seed", "perturbation", "perplexity", "ratio", "tokens"}};
    for (const json& c : cells) {
        if (!c["measured"].get<bool>()) continue;
        table.push_back({c["run"].get<std::string>(), std::to_string(c["seed"].get<std::int64_t>()),
                         c["description"].get<std::string>(),
                         fmt::format("{:.4f}", c["ppl"].get<double>()),
                         fmt::format("{:.4f}", c["ratio"].get<double>()),
                         std::to_string(c["tokens"].get<std::int64_t>())});
    }
    page.table(table);
    return page;
}

std::vector<std::string> write_comparison_report(const fs::path& output_dir) {
    const ReportPage page = comparison_report_page(output_dir);
    write_file_atomically(output_dir / "report.html", page.html());
    return export_charts(page, output_dir / "charts");
}

}  // namespace moelab::core
