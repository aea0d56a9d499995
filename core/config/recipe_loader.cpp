#include "core/config/recipe_loader.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/config/options_schema.h"
#include "core/config/suggest.h"
#include "core/config/toml_guard.h"
#include "core/config/toml_params.h"
#include "core/system/read_file.h"

namespace moelab::core {

using detail::describe_node;
using detail::join_key;
using detail::location_of;

PluginTable::PluginTable() : impl_(std::make_shared<Impl>()) {}
PluginTable::PluginTable(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

SourceLocation Recipe::location_of(const std::string& key) const {
    std::string probe = key;
    while (!probe.empty()) {
        if (auto it = locations.find(probe); it != locations.end()) return it->second;
        const auto dot = probe.rfind('.');
        probe = dot == std::string::npos ? std::string() : probe.substr(0, dot);
    }
    return SourceLocation{file.string(), 0, 0};
}

namespace {

toml::table parse_file(const std::filesystem::path& file, const SourceLocation& referenced_at,
                       const std::string& referencing_key) {
    std::string text;
    try {
        text = read_file(file, kMaxRecipeBytes, "recipe file");
    } catch (const FileError& error) {
        // The top-level recipe is named by the location itself; a base recipe by its extends line.
        if (referencing_key.empty()) {
            throw ConfigError(
                ConfigIssue{referenced_at, "", error.reason() + " (expected a recipe file, TOML)"});
        }
        throw ConfigError(ConfigIssue{referenced_at, referencing_key,
                                      fmt::format("'{}' {} (expected a base recipe file, TOML)",
                                                  printable_path(file), error.reason())});
    }
    if (const auto hazard = find_toml_hazard(text)) {
        throw ConfigError(ConfigIssue{{file.string(), hazard->line, hazard->column},
                                      "",
                                      fmt::format("TOML syntax error: {}", hazard->message)});
    }
    try {
        return toml::parse(text, file.string());
    } catch (const toml::parse_error& error) {
        throw ConfigError(ConfigIssue{location_of(error.source()), "",
                                      fmt::format("TOML syntax error: {}", error.description())});
    }
}

bool is_plugin_section(std::string_view name) {
    const auto& names = plugin_section_names();
    return std::find(names.begin(), names.end(), name) != names.end();
}

// Moves `overlay` into `base`: tables merge key by key, everything else is replaced. A plugin
// section whose "plugin" differs from the base's replaces the base's table: the old plugin's
// options mean nothing to the new one.
void merge_into(toml::table& base, toml::table&& overlay, bool top_level) {
    for (auto&& [key, node] : overlay) {
        toml::node* existing = base.get(key.str());
        toml::table* overlay_table = node.as_table();
        if (existing != nullptr && existing->is_table() && overlay_table != nullptr) {
            toml::table& base_table = *existing->as_table();
            const bool switches_plugin = top_level && is_plugin_section(key.str()) &&
                                         overlay_table->contains("plugin") &&
                                         base_table.get("plugin") != nullptr &&
                                         base_table.get("plugin")->value<std::string>() !=
                                             overlay_table->get("plugin")->value<std::string>();
            if (!switches_plugin) {
                merge_into(base_table, std::move(*overlay_table), false);
                continue;
            }
        }
        base.insert_or_assign(toml::key(key), std::move(node));
    }
}

toml::table load_with_extends(const std::filesystem::path& file,
                              std::vector<std::filesystem::path>& chain,
                              const SourceLocation& referenced_at,
                              const std::string& referencing_key) {
    // Read first: a path that cannot be a recipe (a FIFO, /dev/zero, a name too long) is reported
    // as such before anything else looks at it.
    toml::table root = parse_file(file, referenced_at, referencing_key);
    std::error_code error;
    std::filesystem::path canonical = std::filesystem::weakly_canonical(file, error);
    if (error) canonical = file.lexically_normal();
    if (std::find(chain.begin(), chain.end(), canonical) != chain.end()) {
        std::string cycle;
        for (const auto& link : chain) cycle += link.string() + " -> ";
        throw ConfigError(
            ConfigIssue{referenced_at, "extends", "extends cycle: " + cycle + canonical.string()});
    }
    chain.push_back(canonical);
    toml::node* extends = root.get("extends");
    if (extends == nullptr) return root;

    const SourceLocation extends_at = location_of(extends->source());
    const auto* base_name = extends->as_string();
    if (base_name == nullptr) {
        throw ConfigError(
            ConfigIssue{extends_at, "extends",
                        fmt::format("expected a string (path of the base recipe), got {}",
                                    describe_node(*extends))});
    }
    const std::filesystem::path base_file = file.parent_path() / base_name->get();
    toml::table merged = load_with_extends(base_file, chain, extends_at, "extends");
    root.erase("extends");
    merge_into(merged, std::move(root), true);
    return merged;
}

// "train.steps=100" onto the merged table.
// `origin` names the override in messages: what the user typed ("--set train.steps=5"), which for
// params_from_assignments is not the section-qualified text applied here.
void apply_override(toml::table& root, const std::string& override_text, Diagnostics& diagnostics,
                    const std::string& origin) {
    const auto equals = override_text.find('=');
    const SourceLocation at{origin, 0, 0};
    if (equals == std::string::npos || equals == 0) {
        diagnostics.add(at, "", "expected section.key=value");
        return;
    }
    const std::string path = override_text.substr(0, equals);
    const std::string value_text = override_text.substr(equals + 1);

    std::vector<std::string> parts;
    for (std::size_t begin = 0;;) {
        const auto dot = path.find('.', begin);
        parts.push_back(path.substr(begin, dot - begin));
        if (dot == std::string::npos) break;
        begin = dot + 1;
    }
    if (std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) {
        diagnostics.add(at, path, "empty key component in the key path");
        return;
    }

    // The value in TOML syntax; a bare word (topk, cuda) is taken as a string.
    // Text toml++ 3.3.0 would crash on (toml_guard.h) is no TOML value: taken as a bare word.
    toml::table parsed;
    bool parsed_directly = false;
    const std::string direct = "value = " + value_text;
    if (!find_toml_hazard(direct)) {
        try {
            parsed = toml::parse(direct, origin);
            parsed_directly = true;
        } catch (const toml::parse_error&) {
        }
    }
    if (!parsed_directly) {
        std::string quoted = "\"";
        for (char c : value_text) {
            if (c == '"' || c == '\\') quoted += '\\';
            quoted += c;
        }
        const std::string as_string = "value = " + quoted + "\"";
        if (const auto hazard = find_toml_hazard(as_string)) {
            diagnostics.add(at, path, fmt::format("cannot parse value: {}", hazard->message));
            return;
        }
        try {
            parsed = toml::parse(as_string, origin);
        } catch (const toml::parse_error& error) {
            diagnostics.add(at, path, fmt::format("cannot parse value: {}", error.description()));
            return;
        }
    }

    toml::table* table = &root;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        toml::node* next = table->get(parts[i]);
        if (next == nullptr) {
            table->insert(toml::key(parts[i]), toml::table{});
            next = table->get(parts[i]);
        }
        if (!next->is_table()) {
            diagnostics.add(at, path,
                            fmt::format("'{}' is {}, not a table", parts[i], describe_node(*next)));
            return;
        }
        table = next->as_table();
    }
    // Switching a plugin section to another plugin drops the old plugin's options.
    if (parts.size() == 2 && parts[1] == "plugin" && is_plugin_section(parts[0])) {
        const toml::node* old_plugin = table->get("plugin");
        const toml::node* new_plugin = parsed.get("value");
        if (old_plugin != nullptr &&
            old_plugin->value<std::string>() != new_plugin->value<std::string>()) {
            table->clear();
        }
    }
    auto value_node = parsed.get("value");
    // The key carries the override's origin too, so "unknown key" names the --set that made it.
    table->insert_or_assign(toml::key(parts.back(), value_node->source()), std::move(*value_node));
}

toml::table* section_table(toml::table& root, const std::string& name, Diagnostics& diagnostics) {
    toml::node* node = root.get(name);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
        diagnostics.add(location_of(node->source()), name,
                        fmt::format("expected a table [{}], got {}", name, describe_node(*node)));
        return nullptr;
    }
    return node->as_table();
}

// `name` may be dotted ("eval.perturbation"): a table inside a host section. `subtables` are
// keys of this table that are tables of their own, read separately.
template <class Options>
void read_host_section(toml::table& root, const std::string& name,
                       const OptionsBinding<Options>& binding, Options& target, Recipe& recipe,
                       Diagnostics& diagnostics, const std::vector<std::string>& subtables = {}) {
    toml::table* parent = &root;
    std::string leaf = name;
    if (const auto dot = name.rfind('.'); dot != std::string::npos) {
        toml::node* outer = root.get(name.substr(0, dot));
        if (outer == nullptr || !outer->is_table()) return;
        parent = outer->as_table();
        leaf = name.substr(dot + 1);
    }
    toml::table* table = parent->get(leaf) == nullptr ? nullptr : [&]() -> toml::table* {
        toml::node* node = parent->get(leaf);
        if (!node->is_table()) {
            diagnostics.add(
                location_of(node->source()), name,
                fmt::format("expected a table [{}], got {}", name, describe_node(*node)));
            return nullptr;
        }
        return node->as_table();
    }();
    if (table == nullptr) return;
    // A table created by --set has no position of its own.
    if (table->source().path) recipe.locations[name] = location_of(table->source());
    const sdk::Params values = detail::read_params(*table, binding.schema(), name, subtables,
                                                   diagnostics, recipe.locations);
    binding.assign(values, target);
}

// Moves the plugin's options out of `root` (moves keep toml++'s source positions; copies drop
// them).
std::optional<PluginSelection> read_plugin_section(toml::table& root, const std::string& name,
                                                   Recipe& recipe, Diagnostics& diagnostics) {
    toml::table* table = section_table(root, name, diagnostics);
    if (table == nullptr) return std::nullopt;
    const SourceLocation table_at = location_of(table->source());
    recipe.locations[name] = table_at;
    PluginSelection selection;
    selection.section = name;
    const toml::node* plugin = table->get("plugin");
    if (plugin == nullptr) {
        diagnostics.add(table_at, name + ".plugin",
                        fmt::format("missing key 'plugin': the name of the {} component to use "
                                    "(`moelab plugins` lists them)",
                                    name));
        return std::nullopt;
    }
    recipe.locations[name + ".plugin"] = location_of(plugin->source());
    if (!plugin->is_string() || plugin->as_string()->get().empty()) {
        diagnostics.add(location_of(plugin->source()), name + ".plugin",
                        fmt::format("expected the name of a {} component as a non-empty string, "
                                    "got {}",
                                    name, describe_node(*plugin)));
        return std::nullopt;
    }
    selection.plugin = plugin->as_string()->get();
    auto impl = std::make_shared<PluginTable::Impl>();
    for (auto&& [key, node] : *table) {
        if (key.str() == "plugin") continue;
        impl->table.insert(toml::key(key), std::move(node));
    }
    selection.options = PluginTable(std::move(impl));
    return selection;
}

// An array of tables ([[data.source]], [[stage]]) at `key` of `parent` (null: absent), each table
// read against `binding` (`skip_keys` are the caller's to read). Keys are recorded as
// <path>[i].<option>, so location_of walks up to <path>[i], then to <path>'s section.
template <class Options>
std::vector<Options> read_table_array(toml::table* parent, const std::string& key,
                                      const std::string& path,
                                      const OptionsBinding<Options>& binding, Recipe& recipe,
                                      Diagnostics& diagnostics,
                                      const std::vector<std::string>& skip_keys = {}) {
    std::vector<Options> out;
    toml::node* node = parent == nullptr ? nullptr : parent->get(key);
    if (node == nullptr) return out;
    const toml::array* array = node->as_array();
    if (array == nullptr || !array->is_array_of_tables() || array->empty()) {
        diagnostics.add(location_of(node->source()), path,
                        fmt::format("expected [[{}]] tables (an array of tables), got {}", path,
                                    describe_node(*node)));
        return out;
    }
    recipe.locations[path] = location_of(node->source());
    for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::table& table = *array->get(i)->as_table();
        const std::string prefix = fmt::format("{}[{}]", path, i);
        recipe.locations[prefix] = location_of(table.source());
        const sdk::Params values = detail::read_params(table, binding.schema(), prefix, skip_keys,
                                                       diagnostics, recipe.locations);
        Options options;
        binding.assign(values, options);
        out.push_back(std::move(options));
    }
    return out;
}

void read_data_sources(toml::table& root, Recipe& recipe, Diagnostics& diagnostics) {
    recipe.data.sources = read_table_array(root["data"].as_table(), "source", "data.source",
                                           data_source_binding(), recipe, diagnostics);
}

// [[stage]]: keys a stage leaves out take [train]'s values; train.steps becomes the stages' sum
// (Note [Stages]).
// The plugin sections whose options a stage may set (Note [Stages]): the model's components. The
// tokenizer is not one of them: another tokenizer would be other data.
const std::vector<std::string>& stage_plugin_sections() {
    static const std::vector<std::string> sections{"attention", "router"};
    return sections;
}

void read_stages(toml::table& root, Recipe& recipe, Diagnostics& diagnostics) {
    recipe.stages = read_table_array(&root, "stage", "stage", stage_binding(), recipe, diagnostics,
                                     stage_plugin_sections());
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        const std::string prefix = fmt::format("stage[{}]", i);
        if (recipe.locations.count(prefix + ".steps") == 0) {
            diagnostics.add(recipe.locations[prefix], prefix + ".steps",
                            "missing: every stage says how many optimizer steps it takes");
        }
        // [stage.attention] and [stage.router]: options over the run's plugin, checked against
        // its schema when the recipe is resolved.
        const toml::table& table = *root["stage"].as_array()->get(i)->as_table();
        for (const std::string& section : stage_plugin_sections()) {
            const toml::node* node = table.get(section);
            if (node == nullptr) continue;
            const std::string key = prefix + "." + section;
            recipe.locations[key] = location_of(node->source());
            const toml::table* options = node->as_table();
            if (options == nullptr) {
                diagnostics.add(location_of(node->source()), key,
                                fmt::format("expected a table [stage.{}] of {} options, got {}",
                                            section, section, describe_node(*node)));
                continue;
            }
            if (const toml::node* plugin = options->get("plugin")) {
                diagnostics.add(location_of(plugin->source()), key + ".plugin",
                                fmt::format("a stage sets options of the run's {} plugin; it "
                                            "cannot choose another one (remove plugin here)",
                                            section));
                continue;
            }
            auto impl = std::make_shared<PluginTable::Impl>();
            impl->table = *options;
            recipe.stages[i].plugin_options.emplace(section, PluginTable(std::move(impl)));
        }
    }
}

void settle_stages(Recipe& recipe, Diagnostics& diagnostics) {
    if (recipe.stages.empty()) return;
    std::int64_t total = 0;
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        StageOptions& stage = recipe.stages[i];
        const std::string prefix = fmt::format("stage[{}]", i);
        auto unset = [&](const char* key) {
            return recipe.locations.count(prefix + "." + key) == 0;
        };
        if (unset("lr_peak")) stage.lr_peak = recipe.train.lr_peak;
        // A stage's own smaller peak caps the inherited minimum: the decay never rises.
        if (unset("lr_min")) stage.lr_min = std::min(recipe.train.lr_min, stage.lr_peak);
        if (stage.lr_min > stage.lr_peak) {
            diagnostics.add(
                recipe.location_of(prefix + ".lr_min"), prefix + ".lr_min",
                fmt::format("is {}, above the stage's lr_peak of {}", stage.lr_min, stage.lr_peak));
        }
        if (unset("warmup_steps")) {
            stage.warmup_steps = std::min(recipe.train.warmup_steps, stage.steps);
        }
        if (stage.warmup_steps > stage.steps) {
            diagnostics.add(recipe.location_of(prefix + ".warmup_steps"), prefix + ".warmup_steps",
                            fmt::format("is {}, longer than the stage's {} steps",
                                        stage.warmup_steps, stage.steps));
        }
        if (unset("seq_len")) stage.seq_len = recipe.data.seq_len;
        if (unset("batch_size")) stage.batch_size = recipe.train.batch_size;
        if (stage.name.empty()) stage.name = fmt::format("stage{}", i + 1);
        if (stage.trainable.empty()) {
            diagnostics.add(recipe.location_of(prefix + ".trainable"), prefix + ".trainable",
                            "an empty list trains nothing: name the parameters the stage trains "
                            "(\"*\" for all)");
        }
        total += stage.steps;
    }
    if (recipe.locations.count("train.steps") != 0 && recipe.train.steps != total) {
        diagnostics.add(recipe.location_of("train.steps"), "train.steps",
                        fmt::format("is {} but the [[stage]] tables add up to {} steps; with "
                                    "stages the run's length is their sum: remove train.steps "
                                    "or set it to {}",
                                    recipe.train.steps, total, total));
    }
    recipe.train.steps = total;
}

// Plugin directories resolve like `extends`: relative to the file that names them (the working
// directory for --set), and a directory that does not exist is an error at that line rather than
// a silently shorter search path.
void resolve_search_paths(Recipe& recipe, Diagnostics& diagnostics) {
    const std::string key = "plugins.search_path";
    const SourceLocation at = recipe.location_of(key);
    const bool from_file = at.file.rfind("--set", 0) != 0 && at.file != "command line";
    const std::filesystem::path base =
        from_file ? std::filesystem::path(at.file).parent_path() : std::filesystem::path();
    for (std::string& entry : recipe.plugins.search_path) {
        std::filesystem::path dir(entry);
        if (dir.is_relative() && !base.empty()) dir = base / dir;
        dir = dir.lexically_normal();
        std::error_code error;
        if (!std::filesystem::is_directory(dir, error)) {
            diagnostics.add(
                at, key,
                fmt::format("'{}' is not a directory{} (relative paths resolve "
                            "against the recipe file that sets them)",
                            printable_path(dir),
                            std::filesystem::exists(dir, error) ? "" : ": it does not exist"));
            continue;
        }
        entry = dir.string();
    }
}

// Keys that moved: a recipe that still writes the old one keeps working, with a deprecation
// warning naming the new place. Writing both is an error.
struct MovedKey {
    const char* from_section;
    const char* from_key;
    const char* to_section;
    const char* to_key;
    const char* why;
};
constexpr MovedKey kMovedKeys[] = {
    {"router", "shared_gate", "moe", "shared_gate",
     "since SDK 4 the host mixes shared experts for every router in gate form"},
};

void move_deprecated_keys(toml::table& root, Recipe& recipe, Diagnostics& diagnostics) {
    for (const MovedKey& moved : kMovedKeys) {
        toml::table* from = root[moved.from_section].as_table();
        toml::node* node = from == nullptr ? nullptr : from->get(moved.from_key);
        if (node == nullptr) continue;
        const std::string old_key = fmt::format("{}.{}", moved.from_section, moved.from_key);
        const std::string new_key = fmt::format("{}.{}", moved.to_section, moved.to_key);
        const SourceLocation at = location_of(node->source());
        toml::node* target_node = root.get(moved.to_section);
        if (target_node != nullptr && !target_node->is_table()) continue;  // reported when read
        if (target_node == nullptr) {
            root.insert(moved.to_section, toml::table{});
            target_node = root.get(moved.to_section);
        }
        toml::table& target = *target_node->as_table();
        if (target.contains(moved.to_key)) {
            diagnostics.add(at, old_key,
                            fmt::format("is the deprecated spelling of {}, which is also set; "
                                        "keep only {}",
                                        new_key, new_key));
            continue;
        }
        // Moving the node keeps its source position for later messages.
        target.insert(std::string(moved.to_key), std::move(*node));
        from->erase(moved.from_key);
        recipe.deprecations.push_back(
            {at, old_key, fmt::format("deprecated: write {} instead ({})", new_key, moved.why)});
    }
}

// data.corpus and [[data.source]] both name the corpus. Like any key, the nearer setting wins:
// --set data.corpus over everything, then the recipe itself over its base, the base over the
// base's base (`chain` lists the files from the recipe down). Both in one file is an error.
void settle_corpus_and_sources(Recipe& recipe, const std::vector<std::filesystem::path>& chain,
                               Diagnostics& diagnostics) {
    if (recipe.data.sources.empty() || recipe.locations.count("data.corpus") == 0) return;
    auto depth = [&](const SourceLocation& at) -> std::ptrdiff_t {
        if (at.file.rfind("--set", 0) == 0) return -1;
        std::error_code error;
        std::filesystem::path file = std::filesystem::weakly_canonical(at.file, error);
        if (error) file = std::filesystem::path(at.file).lexically_normal();
        const auto it = std::find(chain.begin(), chain.end(), file);
        return it - chain.begin();  // chain.size() when not found: treated as deepest
    };
    const SourceLocation corpus_at = recipe.locations["data.corpus"];
    const std::ptrdiff_t corpus_depth = depth(corpus_at);
    const std::ptrdiff_t sources_depth = depth(recipe.locations["data.source"]);
    if (sources_depth < corpus_depth) {
        recipe.data.corpus = DataOptions{}.corpus;
        recipe.locations.erase("data.corpus");
    } else if (corpus_depth < sources_depth) {
        recipe.data.sources.clear();
        for (auto it = recipe.locations.begin(); it != recipe.locations.end();) {
            it =
                it->first.rfind("data.source", 0) == 0 ? recipe.locations.erase(it) : std::next(it);
        }
    } else {
        diagnostics.add(corpus_at, "data.corpus",
                        "data.corpus and [[data.source]] both name the corpus; with sources, "
                        "write the directory as dir = \"...\" in a [[data.source]] table");
    }
}

void validate_data_sources(const Recipe& recipe, Diagnostics& diagnostics) {
    const auto& sources = recipe.data.sources;
    if (sources.empty()) return;
    auto at = [&](const std::string& key) { return recipe.location_of(key); };
    for (std::size_t i = 0; i < sources.size(); ++i) {
        const DataSourceOptions& source = sources[i];
        const std::string prefix = fmt::format("data.source[{}]", i);
        const bool name_ok =
            !source.name.empty() && source.name.find_first_not_of(
                                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_.") == std::string::npos;
        if (!name_ok) {
            diagnostics.add(at(prefix + ".name"), prefix + ".name",
                            fmt::format("expected a name of letters, digits, '-', '_' or '.' "
                                        "(it labels the source's losses), got \"{}\"",
                                        source.name));
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (name_ok && sources[j].name == source.name) {
                diagnostics.add(at(prefix + ".name"), prefix + ".name",
                                fmt::format("\"{}\" names two sources (the other is "
                                            "data.source[{}]); names must be unique",
                                            source.name, j));
            }
        }
        if (source.dir.empty() && source.validation.empty() && source.test.empty() &&
            source.train.empty()) {
            diagnostics.add(at(prefix), prefix,
                            "names no files: give dir = \"...\" (a directory with train, "
                            "validation and test files) or the files themselves");
        }
        const bool weight_set = recipe.locations.count(prefix + ".weight") != 0;
        if (weight_set && !(source.weight > 0 && std::isfinite(source.weight))) {
            diagnostics.add(at(prefix + ".weight"), prefix + ".weight",
                            fmt::format("must be a finite number > 0, got {} (a source that "
                                        "should not be trained on is evaluated only: set "
                                        "eval_only = true and remove the weight)",
                                        source.weight));
        }
        if (weight_set && source.eval_only) {
            diagnostics.add(at(prefix + ".weight"), prefix + ".weight",
                            "an evaluation-only source (eval_only = true) takes no weight");
        }
        if (!source.train.empty() && source.eval_only) {
            diagnostics.add(at(prefix + ".train"), prefix + ".train",
                            "an evaluation-only source (eval_only = true) takes no train file");
        }
        if ((source.format == "text" || source.format == "pairs") &&
            recipe.locations.count(prefix + ".text_field") != 0) {
            diagnostics.add(
                at(prefix + ".text_field"), prefix + ".text_field",
                fmt::format("applies to JSONL documents only, but format = \"{}\"{}", source.format,
                            source.format == "pairs"
                                ? " (pairs read prompt_field and response_field)"
                                : ""));
        }
        for (const char* field : {"prompt_field", "response_field"}) {
            const std::string key = prefix + "." + field;
            if (source.format != "pairs" && recipe.locations.count(key) != 0) {
                diagnostics.add(at(key), key,
                                fmt::format("applies to format = \"pairs\" only, but format = "
                                            "\"{}\"",
                                            source.format));
            }
        }
        if (source.format == "pairs" && source.prompt_field == source.response_field) {
            diagnostics.add(at(prefix + ".response_field"), prefix + ".response_field",
                            fmt::format("is the same field as prompt_field (\"{}\"); a pair needs "
                                        "two fields",
                                        source.prompt_field));
        }
    }
}

void validate_recipe(const Recipe& recipe, Diagnostics& diagnostics) {
    auto at = [&](const std::string& key) { return recipe.location_of(key); };
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        const std::string key = fmt::format("stage[{}].router", i);
        if (recipe.stages[i].plugin_options.count("router") != 0 && !recipe.router) {
            diagnostics.add(at(key), key,
                            "this model has no router to set options of (model.ffn is dense)");
        }
    }
    const ModelOptions& model = recipe.model;
    if (model.d_model % model.heads != 0) {
        diagnostics.add(
            at("model.heads"), "model.heads",
            fmt::format("must divide model.d_model = {}, got {}", model.d_model, model.heads));
    }
    if (model.kv_heads != 0 && model.heads % model.kv_heads != 0) {
        diagnostics.add(at("model.kv_heads"), "model.kv_heads",
                        fmt::format("must divide model.heads = {} (or be 0), got {}", model.heads,
                                    model.kv_heads));
    }
    if (model.ffn == FfnKind::kMoe && !recipe.router) {
        diagnostics.add(at("model.ffn"), "router",
                        "model.ffn = \"moe\" needs a [router] table with plugin = \"...\"");
    }
    if (model.ffn == FfnKind::kDense && recipe.router) {
        diagnostics.add(at("router"), "router",
                        "a [router] is given but model.ffn = \"dense\"; set model.ffn = \"moe\" "
                        "or remove [router]");
    }
    if (model.ffn == FfnKind::kMoe && recipe.moe.shared_gate && recipe.moe.shared_experts == 0) {
        diagnostics.add(at("moe.shared_gate"), "moe.shared_gate",
                        "a shared gate mixes routed and shared experts: set moe.shared_experts "
                        ">= 1, or shared_gate = false (routers in block form build their own "
                        "FFN and take no shared gate)");
    }
    if (model.ffn == FfnKind::kMoe && recipe.moe.first_layer >= model.layers) {
        diagnostics.add(at("moe.first_layer"), "moe.first_layer",
                        fmt::format("must be below model.layers = {} (no layer would be MoE), got "
                                    "{}",
                                    model.layers, recipe.moe.first_layer));
    }
    for (const auto& [key, message] : check_perturbation(recipe.eval.perturbation)) {
        const std::string full = "eval.perturbation." + key;
        diagnostics.add(at(full), full, message);
    }
    const TrainOptions& train = recipe.train;
    if (train.lr_min > train.lr_peak) {
        diagnostics.add(
            at("train.lr_min"), "train.lr_min",
            fmt::format("must not exceed train.lr_peak = {}, got {}", train.lr_peak, train.lr_min));
    }
    if (train.warmup_steps > train.steps) {
        diagnostics.add(at("train.warmup_steps"), "train.warmup_steps",
                        fmt::format("must not exceed train.steps = {}, got {}", train.steps,
                                    train.warmup_steps));
    }
    if (model.dtype == ComputeDtype::kBfloat16 && train.device == DeviceChoice::kCpu) {
        diagnostics.add(at("model.dtype"), "model.dtype",
                        "bfloat16 autocast is supported on CUDA only; use float32 with "
                        "train.device = \"cpu\"");
    }
    validate_data_sources(recipe, diagnostics);
    const InitOptions& init = recipe.init;
    if (init.calibration_samples > 0 && init.from.empty()) {
        diagnostics.add(at("init.calibration_samples"), "init.calibration_samples",
                        "needs init.from = \"<run directory or checkpoint>\": calibration fits "
                        "layers to that model's activations");
    }
    if (init.partition_ffn > 0 && init.from.empty()) {
        diagnostics.add(at("init.partition_ffn"), "init.partition_ffn",
                        "needs init.from = \"<run directory or checkpoint>\" holding the dense "
                        "model to partition");
    }
    if (init.partition_ffn > 0 &&
        (model.ffn != FfnKind::kMoe || init.partition_ffn != recipe.moe.experts)) {
        diagnostics.add(at("init.partition_ffn"), "init.partition_ffn",
                        fmt::format("must equal [moe] experts = {} of an MoE model (model.ffn = "
                                    "\"moe\"), got {}",
                                    recipe.moe.experts, init.partition_ffn));
    }
    const std::int64_t degree = recipe.parallel.expert;
    if (degree > 1 && model.ffn != FfnKind::kMoe) {
        diagnostics.add(at("parallel.expert"), "parallel.expert",
                        fmt::format("shards experts, but this model has none (model.ffn = "
                                    "\"dense\"); remove it or set it to 1, got {}",
                                    degree));
    } else if (degree > 1 && recipe.moe.experts % degree != 0) {
        diagnostics.add(at("parallel.expert"), "parallel.expert",
                        fmt::format("must divide [moe] experts = {} (each process holds the same "
                                    "number of experts), got {}",
                                    recipe.moe.experts, degree));
    }
    if (degree > 1 && train.batch_size % degree != 0) {
        diagnostics.add(at("train.batch_size"), "train.batch_size",
                        fmt::format("is split over the processes, at least parallel.expert = {} "
                                    "of them: it must be a multiple of {}, got {}",
                                    degree, degree, train.batch_size));
    }
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        const std::int64_t batch = recipe.stages[i].batch_size;
        if (degree <= 1 || batch % degree == 0) continue;
        const std::string key = fmt::format("stage[{}].batch_size", i);
        diagnostics.add(at(key), key,
                        fmt::format("is split over the processes, at least parallel.expert = {} "
                                    "of them: it must be a multiple of {}, got {}",
                                    degree, degree, batch));
    }
    if (recipe.name.find_first_of("/\\") != std::string::npos) {
        diagnostics.add(at("name"), "name",
                        fmt::format("must not contain path separators (it names the run "
                                    "directory), got \"{}\"",
                                    recipe.name));
    }
}

}  // namespace

Recipe load_recipe(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
    if (file.empty()) {
        throw ConfigError(ConfigIssue{
            {"command line", 0, 0}, "", "the recipe path is empty (expected a recipe file, TOML)"});
    }
    std::vector<std::filesystem::path> chain;
    toml::table root = load_with_extends(file, chain, SourceLocation{file.string(), 0, 0}, "");

    Diagnostics diagnostics;
    // Plugin switches first, so that "--set router.plugin=x --set router.k=2" and the reverse
    // order mean the same.
    std::vector<std::string> ordered = overrides;
    std::stable_partition(ordered.begin(), ordered.end(), [](const std::string& o) {
        const auto eq = o.find('=');
        const std::string key = o.substr(0, eq);
        return key.size() > 7 && key.substr(key.size() - 7) == ".plugin";
    });
    for (const std::string& override_text : ordered) {
        apply_override(root, override_text, diagnostics, "--set " + override_text);
    }
    diagnostics.throw_if_any();

    Recipe recipe;
    recipe.file = file;
    move_deprecated_keys(root, recipe, diagnostics);
    std::vector<std::string> sections = host_section_names();
    sections.insert(sections.end(), plugin_section_names().begin(), plugin_section_names().end());
    sections.emplace_back("stage");
    const sdk::Params top = detail::read_params(root, recipe_top_binding().schema(), "", sections,
                                                diagnostics, recipe.locations);
    recipe_top_binding().assign(top, recipe);
    if (recipe.name.empty()) recipe.name = file.stem().string();

    read_host_section(root, "plugins", plugins_binding(), recipe.plugins, recipe, diagnostics);
    read_host_section(root, "data", data_binding(), recipe.data, recipe, diagnostics, {"source"});
    read_data_sources(root, recipe, diagnostics);
    settle_corpus_and_sources(recipe, chain, diagnostics);
    read_host_section(root, "model", model_binding(), recipe.model, recipe, diagnostics);
    read_host_section(root, "moe", moe_binding(), recipe.moe, recipe, diagnostics);
    read_host_section(root, "init", init_binding(), recipe.init, recipe, diagnostics);
    read_host_section(root, "train", train_binding(), recipe.train, recipe, diagnostics);
    read_stages(root, recipe, diagnostics);
    settle_stages(recipe, diagnostics);
    read_host_section(root, "eval", eval_binding(), recipe.eval, recipe, diagnostics,
                      {"perturbation"});
    read_host_section(root, "eval.perturbation", perturbation_binding(), recipe.eval.perturbation,
                      recipe, diagnostics);
    read_host_section(root, "parallel", parallel_binding(), recipe.parallel, recipe, diagnostics);

    const SourceLocation file_at{file.string(), 0, 0};
    if (auto tokenizer = read_plugin_section(root, "tokenizer", recipe, diagnostics)) {
        recipe.tokenizer = std::move(*tokenizer);
    } else if (root.get("tokenizer") == nullptr) {
        diagnostics.add(file_at, "tokenizer",
                        "missing table [tokenizer] with plugin = \"...\" (e.g. \"bytes\")");
    }
    if (auto attention = read_plugin_section(root, "attention", recipe, diagnostics)) {
        recipe.attention = std::move(*attention);
    } else if (root.get("attention") == nullptr) {
        diagnostics.add(file_at, "attention",
                        "missing table [attention] with plugin = \"...\" (e.g. \"rope\")");
    }
    recipe.router = read_plugin_section(root, "router", recipe, diagnostics);
    // Consistency checks need every section read correctly: a broken [router] table must not
    // also be reported as a missing one.
    diagnostics.throw_if_any();
    resolve_search_paths(recipe, diagnostics);
    validate_recipe(recipe, diagnostics);
    diagnostics.throw_if_any();
    return recipe;
}

sdk::Params resolve_plugin_params(const PluginSelection& selection,
                                  const sdk::ParamSchema& schema) {
    Diagnostics diagnostics;
    std::map<std::string, SourceLocation> locations;
    sdk::Params params = detail::read_params(selection.options.impl().table, schema,
                                             selection.section, {}, diagnostics, locations);
    diagnostics.throw_if_any();
    return params;
}

sdk::Params resolve_stage_plugin_params(const PluginSelection& run, const StageOptions& stage,
                                        std::size_t stage_index, const sdk::ParamSchema& schema) {
    PluginSelection merged = run;
    merged.section = fmt::format("stage[{}].{}", stage_index, run.section);
    auto impl = std::make_shared<PluginTable::Impl>(run.options.impl());
    if (auto it = stage.plugin_options.find(run.section); it != stage.plugin_options.end()) {
        for (auto&& [key, node] : it->second.impl().table) {
            impl->table.insert_or_assign(toml::key(key), node);
        }
    }
    merged.options = PluginTable(std::move(impl));
    return resolve_plugin_params(merged, schema);
}

std::vector<std::string> stage_plugin_keys(const StageOptions& stage, const std::string& section) {
    std::vector<std::string> keys;
    if (auto it = stage.plugin_options.find(section); it != stage.plugin_options.end()) {
        for (auto&& [key, node] : it->second.impl().table) keys.emplace_back(key.str());
    }
    return keys;
}

std::vector<std::string> command_line_keys(const PluginSelection& selection) {
    std::vector<std::string> keys;
    for (auto&& [key, node] : selection.options.impl().table) {
        const auto& path = node.source().path;
        if (path && path->rfind("--set", 0) == 0) keys.emplace_back(key.str());
    }
    return keys;
}

sdk::Params params_from_assignments(const std::vector<std::string>& assignments,
                                    const sdk::ParamSchema& schema, const std::string& section) {
    Diagnostics diagnostics;
    toml::table root;
    root.insert(section, toml::table{});
    for (const std::string& assignment : assignments) {
        apply_override(root, section + "." + assignment, diagnostics, "--set " + assignment);
    }
    diagnostics.throw_if_any();
    std::map<std::string, SourceLocation> locations;
    const toml::table* table = root.get_as<toml::table>(section);
    if (table == nullptr) {
        throw ConfigError(
            ConfigIssue{{"command line", 0, 0}, section, "expected key=value assignments"});
    }
    sdk::Params params = detail::read_params(*table, schema, section, {}, diagnostics, locations);
    diagnostics.throw_if_any();
    return params;
}

}  // namespace moelab::core
