#include "core/checkpoint/checkpoint_state.h"

#include <cmath>

#include <fmt/format.h>

#include "core/checkpoint/checkpoint_error.h"
#include "core/system/printable.h"

namespace moelab::core {

namespace {

using nlohmann::json;

class StateReader {
  public:
    explicit StateReader(const std::string& file) : file_(file) {}

    [[noreturn]] void fail(const std::string& field, const std::string& message) const {
        throw CheckpointError(fmt::format("{}: {}: {}", file_, field, message));
    }

    const json& member(const json& object, const std::string& field,
                       const std::string& name) const {
        auto it = object.find(name);
        if (it == object.end()) fail(field, "missing");
        return *it;
    }

    std::int64_t count(const json& object, const std::string& field,
                       const std::string& name) const {
        const json& value = member(object, field, name);
        if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
            (value.is_number_unsigned() && value.get<std::uint64_t>() > std::uint64_t(INT64_MAX))) {
            fail(field, "expected a non-negative integer, got " + describe_json(value));
        }
        return value.get<std::int64_t>();
    }

    const std::string& file_;
};

}  // namespace

std::string describe_json(const json& value) {
    if (value.is_array()) return value.empty() ? "[]" : "an array";
    if (value.is_object()) return value.empty() ? "{}" : "an object";
    return printable(value.dump(), 60);
}

json to_json(const CheckpointState& state) {
    json out = state.extra.is_object() ? state.extra : json::object();
    out["format"] = kCheckpointFormat;
    out["step"] = state.step;
    out["optimizer_steps"] = state.optimizer_steps;
    if (state.parameter_steps) out["parameter_steps"] = *state.parameter_steps;
    out["tokens_seen"] = state.tokens_seen;
    json sources = json::array();
    for (const SourcePosition& source : state.data_sources) {
        sources.push_back(
            {{"name", source.name}, {"epoch", source.epoch}, {"cursor", source.cursor}});
    }
    // epoch and cursor repeat the first source's, the form older checkpoints have.
    const SourcePosition first =
        state.data_sources.empty() ? SourcePosition{} : state.data_sources.front();
    out["data"] = {{"epoch", first.epoch},
                   {"cursor", first.cursor},
                   {"sequences", state.data_sequences},
                   {"sources", sources}};
    out["recipe_hash"] = state.recipe_hash;
    out["elapsed_seconds"] = state.elapsed_seconds;
    return out;
}

CheckpointState parse_checkpoint_state(std::string_view text, const std::string& file) {
    json root;
    try {
        root = json::parse(text);
    } catch (const json::exception&) {
        throw CheckpointError(fmt::format("{}: not valid JSON", file));
    }
    if (!root.is_object()) throw CheckpointError(fmt::format("{}: expected a JSON object", file));
    const StateReader read(file);
    const json& format = read.member(root, "format", "format");
    if (!format.is_string() || format.get<std::string>() != kCheckpointFormat) {
        read.fail("format",
                  fmt::format("expected \"{}\", got {}", kCheckpointFormat, describe_json(format)));
    }
    CheckpointState state;
    state.step = read.count(root, "step", "step");
    state.optimizer_steps = read.count(root, "optimizer_steps", "optimizer_steps");
    if (auto it = root.find("parameter_steps"); it != root.end()) {
        if (!it->is_object()) {
            read.fail("parameter_steps",
                      "expected an object {parameter: steps}, got " + describe_json(*it));
        }
        std::map<std::string, std::int64_t> steps;
        for (const auto& [name, value] : it->items()) {
            steps[name] = read.count(*it, "parameter_steps." + printable(name, 60), name);
        }
        state.parameter_steps = std::move(steps);
    }
    state.tokens_seen = read.count(root, "tokens_seen", "tokens_seen");
    const json& data = read.member(root, "data", "data");
    if (!data.is_object()) read.fail("data", "expected an object {epoch, cursor}");
    const std::int64_t epoch = read.count(data, "data.epoch", "epoch");
    const std::int64_t cursor = read.count(data, "data.cursor", "cursor");
    // Checkpoints written before mixtures have neither sequences nor sources: one source at
    // (epoch, cursor).
    if (data.contains("sequences")) {
        state.data_sequences = read.count(data, "data.sequences", "sequences");
    }
    if (auto it = data.find("sources"); it != data.end()) {
        if (!it->is_array())
            read.fail("data.sources", "expected an array, got " + describe_json(*it));
        for (std::size_t i = 0; i < it->size(); ++i) {
            const json& entry = (*it)[i];
            const std::string field = fmt::format("data.sources[{}]", i);
            if (!entry.is_object()) {
                read.fail(field,
                          "expected an object {name, epoch, cursor}, got " + describe_json(entry));
            }
            const json& name = read.member(entry, field + ".name", "name");
            if (!name.is_string()) read.fail(field + ".name", "expected a string");
            state.data_sources.push_back({name.get<std::string>(),
                                          read.count(entry, field + ".epoch", "epoch"),
                                          read.count(entry, field + ".cursor", "cursor")});
        }
    }
    if (state.data_sources.empty()) state.data_sources.push_back({"", epoch, cursor});
    const json& hash = read.member(root, "recipe_hash", "recipe_hash");
    if (!hash.is_string()) read.fail("recipe_hash", "expected a string");
    state.recipe_hash = hash.get<std::string>();
    if (auto it = root.find("elapsed_seconds"); it != root.end()) {
        if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0) {
            read.fail("elapsed_seconds", "expected a non-negative number of seconds");
        }
        state.elapsed_seconds = it->get<double>();
    }
    state.extra = std::move(root);
    for (const char* known : {"format", "step", "optimizer_steps", "parameter_steps", "tokens_seen",
                              "data", "recipe_hash", "elapsed_seconds"}) {
        state.extra.erase(known);
    }
    return state;
}

}  // namespace moelab::core
