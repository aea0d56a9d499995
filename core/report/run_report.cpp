#include "core/report/run_report.h"

#include <fstream>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/read_file.h"

namespace moelab::core {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// metrics.jsonl records; a line that does not parse (a write cut short) is skipped.
std::vector<json> read_records(const fs::path& file) {
    std::vector<json> records;
    const std::string text = read_file(file, kMaxCorpusFileBytes, "metrics log");
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        json record = json::parse(text.substr(start, end - start), nullptr, false);
        if (record.is_object()) records.push_back(std::move(record));
        start = end + 1;
    }
    return records;
}

json line_chart(const std::string& title, json values, const std::string& y,
                const std::string& y_title, const std::string& color = "", bool log_y = false) {
    json encoding = {
        {"x", {{"field", "step"}, {"type", "quantitative"}, {"title", "step"}}},
        {"y",
         {{"field", y},
          {"type", "quantitative"},
          {"title", y_title},
          {"scale", log_y ? json{{"type", "log"}, {"nice", false}} : json{{"zero", false}}}}}};
    if (!color.empty()) {
        encoding["color"] = {{"field", color}, {"type", "nominal"}, {"title", color}};
    }
    return {{"title", title},
            {"width", 640},
            {"height", 220},
            {"data", {{"values", values}}},
            {"mark", {{"type", "line"}, {"point", values.size() < 40}}},
            {"encoding", encoding}};
}

std::string number(double value, int digits = 4) { return fmt::format("{:.{}f}", value, digits); }

// Perplexity by context length and the passkey heatmap of the latest long-context evaluation.
void add_long_context(ReportPage& page, const json& record) {
    if (!record.is_object()) return;
    const bool curve = record.contains("perplexity") && record["perplexity"].is_array() &&
                       !record["perplexity"].empty();
    const bool passkey = record.contains("passkey") && record["passkey"].is_object() &&
                         record["passkey"].contains("cells");
    if (!curve && !passkey) return;
    page.heading("Long context");
    page.paragraph(fmt::format(
        "moelab eval on the {} split at step {} ({}).", record.value("split", std::string("?")),
        record.value("step", std::int64_t{0}), record.value("checkpoint", std::string("?"))));
    if (curve) {
        json values = json::array();
        for (const json& row : record["perplexity"]) {
            values.push_back({{"context", row.value("context", std::int64_t{0})},
                              {"ppl", row.value("ppl", 0.0)},
                              {"series", "perplexity"}});
        }
        page.chart(
            "context_ppl",
            {{"title", fmt::format("Perplexity by context length (sliding windows, stride "
                                   "{})",
                                   record["perplexity"][0].value("stride", std::int64_t{0}))},
             {"data", {{"values", values}}},
             {"mark", {{"type", "line"}, {"point", true}}},
             {"width", 480},
             {"height", 240},
             {"encoding",
              {{"x",
                {{"field", "context"},
                 {"type", "quantitative"},
                 {"title", "context length (tokens)"},
                 {"scale", {{"type", "log"}, {"base", 2}}}}},
               {"y",
                {{"field", "ppl"},
                 {"type", "quantitative"},
                 {"title", "perplexity"},
                 {"scale", {{"zero", false}}}}}}}});
    }
    if (passkey) {
        json values = json::array();
        for (const json& cell : record["passkey"]["cells"]) {
            // A cell without trials (n/a) is left blank, never drawn as 0.
            if (!cell.is_object() || !cell.contains("accuracy") || !cell["accuracy"].is_number()) {
                continue;
            }
            values.push_back({{"length", cell.value("length", std::int64_t{0})},
                              {"depth", cell.value("depth", 0.0)},
                              {"accuracy", cell.value("accuracy", 0.0)}});
        }
        page.chart("passkey",
                   {{"title", "Passkey retrieval accuracy by prompt length and depth of the key"},
                    {"data", {{"values", values}}},
                    {"mark", "rect"},
                    {"width", 360},
                    {"height", 200},
                    {"encoding",
                     {{"x", {{"field", "depth"}, {"type", "ordinal"}, {"title", "depth"}}},
                      {"y", {{"field", "length"}, {"type", "ordinal"}, {"title", "length"}}},
                      {"color",
                       {{"field", "accuracy"},
                        {"type", "quantitative"},
                        {"title", "accuracy"},
                        {"scale", {{"domain", {0, 1}}, {"scheme", "viridis"}}}}}}}});
    }
}

// Where a profiled run's steps went (`moelab run --profile`, profile.json): one bar per row of
// the breakdown, split into its forward, backward and other-phase time.
void add_step_profile(ReportPage& page, const fs::path& run_dir) {
    if (!fs::exists(run_dir / "profile.json")) return;
    const json profile = json::parse(
        read_file(run_dir / "profile.json", kMaxSmallFileBytes, "profile"), nullptr, false);
    if (!profile.is_object() || !profile.contains("breakdown") ||
        !profile["breakdown"].is_array()) {
        return;
    }
    json values = json::array();
    for (const json& row : profile["breakdown"]) {
        if (!row.is_object()) continue;
        int order = 0;  // stacked left to right: forward, backward, other phases
        for (const auto& [part, key] :
             {std::pair<const char*, const char*>{"forward", "forward_seconds"},
              {"backward", "backward_seconds"},
              {"other phases", "other_seconds"}}) {
            const double seconds =
                row.contains(key) && row[key].is_number() ? row[key].get<double>() : 0.0;
            ++order;
            if (seconds <= 0) continue;
            values.push_back({{"row", row.value("name", std::string("?"))},
                              {"part", part},
                              {"order", order},
                              {"ms", 1e3 * seconds}});
        }
    }
    if (values.empty()) return;
    page.heading("Step profile");
    page.paragraph(fmt::format(
        "{} steps profiled after {} warm-up steps: {:.1f} ms per step, {:.0f} tokens/s with the "
        "profiler's hooks (moelab run --profile; the rows are explained in docs/profiling.md).",
        profile.value("steps", std::int64_t{0}), profile.value("warmup_steps", std::int64_t{0}),
        1e3 * profile.value("step_seconds", 0.0), profile.value("tokens_per_second", 0.0)));
    page.chart(
        "step_profile",
        {{"title", "Where a training step's time goes (ms per step)"},
         {"data", {{"values", values}}},
         {"mark", "bar"},
         {"width", 480},
         {"height", 320},
         {"encoding",
          {{"y", {{"field", "row"}, {"type", "nominal"}, {"title", nullptr}, {"sort", "-x"}}},
           {"x", {{"field", "ms"}, {"type", "quantitative"}, {"title", "ms per step"}}},
           {"color",
            {{"field", "part"},
             {"type", "nominal"},
             {"title", "phase"},
             {"sort", {"forward", "backward", "other phases"}}}},
           {"order", {{"field", "order"}, {"type", "quantitative"}}}}}});
}

// Decoding speed and costs of the latest `moelab generate --stats`.
void add_generation(ReportPage& page, const json& record) {
    if (!record.is_object()) return;
    page.heading("Decoding");
    auto value = [&](const char* key, int digits) {
        const auto it = record.find(key);
        if (it == record.end() || !it->is_number()) return std::string("n/a");
        return number(it->get<double>(), digits);
    };
    page.table({{"quantity", "value"},
                {"context (tokens)", value("context", 0)},
                {"prefill tokens/s", value("prefill_tokens_per_second", 0)},
                {"decode tokens/s, with the cache", value("decode_tokens_per_second", 1)},
                {"decode tokens/s, recomputing the prefix",
                 value("recompute_decode_tokens_per_second", 1)},
                {"speed-up of the cache", value("cache_speedup", 2)},
                {"attention FLOPs per token", value("attention_flops_per_token", 0)},
                {"KV-cache bytes per token", value("kv_cache_bytes_per_token", 0)}});
}

}  // namespace

ReportPage run_report_page(const fs::path& run_dir) {
    const std::vector<json> records = read_records(run_dir / "metrics.jsonl");
    json summary;
    if (fs::exists(run_dir / "summary.json")) {
        summary = json::parse(read_file(run_dir / "summary.json", kMaxSmallFileBytes, "summary"),
                              nullptr, false);
    }
    std::string recipe_name = run_dir.filename().string();
    json run_record, long_context, generation;
    for (const json& r : records) {
        const std::string type = r.value("type", "");
        if (type == "run") run_record = r;
        // The latest of each (moelab eval --context/--passkey, moelab generate --stats).
        if (type == "long_context") long_context = r;
        if (type == "generate") generation = r;
    }
    if (run_record.is_object()) recipe_name = run_record.value("recipe", recipe_name);

    ReportPage page(fmt::format("moelab run {} ({})", recipe_name, run_dir.filename().string()));
    json losses = json::array(), rates = json::array(), validation = json::array();
    bool by_source = false;
    json load = json::array(), entropy = json::array(), health = json::array();
    std::int64_t last_step = 0;
    for (const json& r : records) {
        const std::string type = r.value("type", "");
        const std::int64_t step = r.value("step", std::int64_t{0});
        if (type == "train") {
            last_step = step;
            losses.push_back(
                {{"step", step}, {"series", "loss (with aux)"}, {"value", r.value("loss", 0.0)}});
            losses.push_back({{"step", step},
                              {"series", "language-model loss"},
                              {"value", r.value("lm_loss", 0.0)}});
            rates.push_back({{"step", step}, {"lr", r.value("lr", 0.0)}});
            if (!r.contains("moe")) continue;
            for (const auto& [layer, stats] : r["moe"].items()) {
                if (stats.contains("banks")) {
                    for (const auto& [bank, b] : stats["banks"].items()) {
                        const std::string where = layer + " " + bank;
                        const json& counts = b["tokens_per_expert"];
                        double total = 0;
                        for (const json& c : counts) total += c.get<double>();
                        for (std::size_t e = 0; e < counts.size(); ++e) {
                            load.push_back(
                                {{"step", step},
                                 {"bank", where},
                                 {"expert", e},
                                 {"share", total > 0 ? counts[e].get<double>() / total : 0.0}});
                        }
                        health.push_back({{"step", step},
                                          {"series", where + " dead"},
                                          {"value", b.value("dead_fraction", 0.0)}});
                        health.push_back({{"step", step},
                                          {"series", where + " dropped"},
                                          {"value", b.value("dropped_fraction", 0.0)}});
                    }
                }
                if (stats.contains("routers")) {
                    for (std::size_t i = 0; i < stats["routers"].size(); ++i) {
                        const json& router = stats["routers"][i];
                        if (!router.contains("entropy")) continue;
                        entropy.push_back({{"step", step},
                                           {"router", fmt::format("{} router {}", layer, i)},
                                           {"entropy", router["entropy"].get<double>()}});
                    }
                }
            }
        } else if (type == "eval" && r.value("split", "") == "validation") {
            // A mixture writes one record per source besides the overall one (docs/data.md).
            const bool per_source = r.contains("source") && r["source"].is_string();
            by_source = by_source || per_source;
            validation.push_back({{"step", step},
                                  {"ppl", r.value("ppl", 0.0)},
                                  {"series", per_source ? "source " + r["source"].get<std::string>()
                                                        : std::string("overall")}});
        }
    }

    page.heading("Summary");
    std::vector<std::vector<std::string>> rows = {{"quantity", "value"}};
    rows.push_back({"training steps logged", std::to_string(last_step)});
    if (summary.is_object()) {
        for (const char* split : {"validation", "test"}) {
            if (!summary.contains(split)) continue;
            rows.push_back(
                {fmt::format("{} perplexity", split), number(summary[split].value("ppl", 0.0))});
            rows.push_back({fmt::format("{} unigram perplexity", split),
                            number(summary[split].value("unigram_ppl", 0.0))});
            if (summary[split].contains("sources") && summary[split]["sources"].is_object()) {
                for (const auto& [name, source] : summary[split]["sources"].items()) {
                    if (!source.is_object()) continue;
                    rows.push_back(
                        {fmt::format("{} perplexity, source {}{}", split, name,
                                     source.value("weight", 0.0) > 0 ? "" : " (evaluation only)"),
                         number(source.value("ppl", 0.0))});
                }
            }
        }
        rows.push_back({"wall time (s)", number(summary.value("wall_seconds", 0.0), 1)});
        rows.push_back({"training tokens/s", number(summary.value("tokens_per_second", 0.0), 0)});
        if (summary.contains("parameters")) {
            const json& p = summary["parameters"];
            rows.push_back(
                {"parameters, total", std::to_string(p.value("total", std::int64_t{0}))});
            rows.push_back(
                {"parameters, in experts", std::to_string(p.value("expert", std::int64_t{0}))});
            rows.push_back({"parameters, active per token", number(p.value("active", 0.0), 0)});
        }
    } else if (run_record.is_object() && run_record.contains("parameters")) {
        rows.push_back({"parameters, total",
                        std::to_string(run_record["parameters"].value("total", std::int64_t{0}))});
        rows.push_back({"parameters, in experts",
                        std::to_string(run_record["parameters"].value("expert", std::int64_t{0}))});
        page.paragraph("The run has not finished: final perplexities appear when it does.");
    }
    page.table(rows);

    page.heading("Training");
    page.chart("loss", line_chart("Training loss (mean over each logging window)", losses, "value",
                                  "loss (nats per token)", "series"));
    page.chart("learning_rate", line_chart("Learning rate", rates, "lr", "learning rate"));
    if (!validation.empty()) {
        page.chart("validation_ppl",
                   line_chart(by_source ? "Validation perplexity, overall and by source"
                                        : "Validation perplexity",
                              validation, "ppl", "perplexity (log scale)",
                              by_source ? "series" : "", true));
    }
    add_step_profile(page, run_dir);
    if (!load.empty()) {
        page.heading("Routing");
        page.chart(
            "expert_load",
            {{"title", "Expert load over training: share of each bank's assignments"},
             {"data", {{"values", load}}},
             {"mark", "rect"},
             {"width", 640},
             {"height", 90},
             {"encoding",
              {{"x",
                {{"field", "step"},
                 {"type", "ordinal"},
                 {"title", "step"},
                 {"axis", {{"labelOverlap", true}}}}},
               {"y", {{"field", "expert"}, {"type", "ordinal"}, {"title", "expert"}}},
               {"color",
                {{"field", "share"},
                 {"type", "quantitative"},
                 {"title", "share of assignments"},
                 {"scale", {{"scheme", "viridis"}}}}},
               {"row", {{"field", "bank"}, {"type", "nominal"}, {"title", "layer and bank"}}}}}});
    }
    if (!entropy.empty()) {
        page.chart("routing_entropy", line_chart("Routing entropy (nats, mean over tokens)",
                                                 entropy, "entropy", "entropy (nats)", "router"));
    }
    if (!health.empty()) {
        page.chart("dead_and_dropped",
                   line_chart("Dead experts (fraction of the bank) and dropped assignments "
                              "(fraction of assignments)",
                              health, "value", "fraction", "series"));
    }
    add_long_context(page, long_context);
    add_generation(page, generation);
    if (fs::exists(run_dir / "recipe.resolved.toml")) {
        page.heading("Resolved recipe");
        page.preformatted(read_file(run_dir / "recipe.resolved.toml", kMaxRecipeBytes, "recipe"));
    }
    return page;
}

void write_run_report(const fs::path& run_dir) {
    write_file_atomically(run_dir / "report.html", run_report_page(run_dir).html());
}

}  // namespace moelab::core
