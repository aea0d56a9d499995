// Fuzzes the recipe loader (core/config/recipe_loader.h): TOML parsing, `extends` chains, --set
// overrides and every check of the options schema, down to the messages of ConfigError.
//
// Input: the text of recipe.toml, optionally followed by the marker line "#--base--" and the text
// of base.toml, optionally followed by the marker line "#--set--" and one override per line
// ("section.key=value", as given to --set):
//
//     extends = "base.toml"
//     [model]
//     ffn = "dense"
//     #--base--
//     [tokenizer]
//     ...
//     #--set--
//     train.steps=5
//
// Both files are written into a directory of this process's own (created once, rewritten for every
// input; base.toml is removed when the input has none, so that no input depends on the one before)
// and recipe.toml is loaded from there. `extends` is resolved relative to the including file, so a
// relative name stays inside that directory; inputs whose recipe text could name a file anywhere
// else ('/', or a \u, \U or \x escape that could spell one) are rejected: a fuzzer reading
// arbitrary paths (/dev/zero, FIFOs, the user's files) would be neither reproducible nor harmless,
// and what happens with such paths is read_file.h's concern, tested there.

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/config/diagnostics.h"
#include "core/config/recipe_loader.h"
#include "core/system/file_error.h"
#include "harness.h"

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kBaseMarker = "\n#--base--\n";
constexpr std::string_view kSetMarker = "\n#--set--\n";

// The per-process directory holding recipe.toml and base.toml; removed at normal exit (a crashing
// run leaves it behind, next to the input that crashed it).
class ScratchDirectory {
  public:
    ScratchDirectory() {
        std::string pattern = (fs::temp_directory_path() / "moelab-recipe-fuzz-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) {
            std::perror("recipe_fuzzer: cannot create a temporary directory");
            std::abort();
        }
        path_ = pattern;
    }
    ~ScratchDirectory() {
        // Flat: only the files this harness writes (and core::remove_tree would need torch-side
        // libraries in the fuzz build).
        std::error_code ignored;
        for (const auto& entry : fs::directory_iterator(path_, ignored)) fs::remove(entry, ignored);
        fs::remove(path_, ignored);
    }
    ScratchDirectory(const ScratchDirectory&) = delete;
    ScratchDirectory& operator=(const ScratchDirectory&) = delete;

    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

const fs::path& scratch_directory() {
    static const ScratchDirectory directory;
    return directory.path();
}

// A failure to write the scratch files is the machine's problem, not a finding in the loader:
// stop loudly instead of fuzzing the wrong input.
void write_file(const fs::path& file, std::string_view text) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
        std::fprintf(stderr, "recipe_fuzzer: cannot write %s\n", file.c_str());
        std::abort();
    }
}

// Whether `text` could make `extends` name a path outside the scratch directory: only through a
// '/' written out or spelled by an escape sequence of a basic string.
bool could_leave_directory(std::string_view text) {
    if (text.find('/') != std::string_view::npos) return true;
    for (std::size_t at = text.find('\\'); at != std::string_view::npos;
         at = text.find('\\', at + 1)) {
        if (at + 1 < text.size() &&
            (text[at + 1] == 'u' || text[at + 1] == 'U' || text[at + 1] == 'x')) {
            return true;
        }
    }
    return false;
}

// Known bugs of toml++ 3.3.0 that end the process are refused by core/config/toml_guard.h before
// the text reaches toml++, in the loader itself: the fuzzer runs into that guard, not into the
// bugs (tests/fuzz/regressions/recipe/toml-* hold an input of each).

// Splits `text` at the first `marker`: what comes before it, and what comes after it (nothing,
// and `found` false, without a marker).
std::string_view split_at(std::string_view& text, std::string_view marker, bool& found) {
    const std::size_t at = text.find(marker);
    found = at != std::string_view::npos;
    if (!found) return {};
    const std::string_view rest = text.substr(at + marker.size());
    text = text.substr(0, at);
    return rest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view recipe_text(reinterpret_cast<const char*>(data), size);
    bool has_overrides = false;
    const std::string_view override_text = split_at(recipe_text, kSetMarker, has_overrides);
    bool has_base = false;
    const std::string_view base_text = split_at(recipe_text, kBaseMarker, has_base);
    if (could_leave_directory(recipe_text) || could_leave_directory(base_text)) return -1;

    std::vector<std::string> overrides;
    for (std::string_view rest = override_text; has_overrides && !rest.empty();) {
        const std::size_t end = rest.find('\n');
        const std::string_view line = rest.substr(0, end);
        // Empty lines are not overrides; the CLI never passes an empty --set either.
        if (!line.empty()) overrides.emplace_back(line);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    }

    const fs::path& directory = scratch_directory();
    const fs::path recipe_file = directory / "recipe.toml";
    const fs::path base_file = directory / "base.toml";
    write_file(recipe_file, recipe_text);
    if (has_base) {
        write_file(base_file, base_text);
    } else {
        std::error_code ignored;
        fs::remove(base_file, ignored);
    }

    try {
        const moelab::core::Recipe recipe = moelab::core::load_recipe(recipe_file, overrides);
        MOELAB_FUZZ_CHECK(!recipe.name.empty());
    } catch (const moelab::core::ConfigError& error) {
        // A config error always says what is wrong, and where.
        MOELAB_FUZZ_CHECK(!error.issues().empty());
        for (const moelab::core::ConfigIssue& issue : error.issues()) {
            MOELAB_FUZZ_CHECK(!moelab::core::format_issue(issue).empty());
        }
    } catch (const moelab::core::FileError&) {
        // read_file.h's error for a file that cannot be read. The loader reports those as
        // ConfigError at the extends line today; FileError is what it may pass on instead.
    }
    return 0;
}
