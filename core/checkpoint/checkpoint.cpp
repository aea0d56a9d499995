#include "core/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "core/system/atomic_file.h"
#include "core/system/file_writer.h"
#include "core/system/read_file.h"
#include "core/system/remove_tree.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

constexpr char kLatest[] = "latest";
constexpr char kStepPrefix[] = "step-";

std::optional<std::int64_t> step_of(const fs::path& dir) {
    const std::string name = dir.filename().string();
    if (name.rfind(kStepPrefix, 0) != 0) return std::nullopt;
    try {
        std::size_t used = 0;
        const std::int64_t step = std::stoll(name.substr(5), &used);
        if (used != name.size() - 5) return std::nullopt;
        return step;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// What every reader of a checkpoint needs (evaluation and init.from read no optimizer state). A
// save publishes all three files at once, so a step directory without optimizer.safetensors was
// damaged afterwards; resuming from it names the missing file.
bool is_complete(const fs::path& step_dir) {
    std::error_code error;
    for (const char* file : {"model.safetensors", "state.json"}) {
        if (!fs::is_regular_file(step_dir / file, error)) return false;
    }
    return true;
}

// Complete step directories, oldest first.
std::vector<std::pair<std::int64_t, fs::path>> complete_steps(const fs::path& checkpoints_dir) {
    std::vector<std::pair<std::int64_t, fs::path>> steps;
    std::error_code error;
    for (fs::directory_iterator it(checkpoints_dir, error), end; !error && it != end;
         it.increment(error)) {
        if (auto step = step_of(it->path()); step && is_complete(it->path())) {
            steps.emplace_back(*step, it->path());
        }
    }
    std::sort(steps.begin(), steps.end());
    return steps;
}

void prune(const fs::path& checkpoints_dir, int keep, const std::string& latest) {
    const auto steps = complete_steps(checkpoints_dir);
    const std::size_t kept = static_cast<std::size_t>(std::max(1, keep));
    const std::size_t excess = steps.size() > kept ? steps.size() - kept : 0;
    for (std::size_t i = 0; i < excess; ++i) {
        if (steps[i].second.filename() != latest) remove_tree(steps[i].second);
    }
}

std::string temporary_name(const std::string& name) {
    return fmt::format(".tmp-{}-{}", name, ::getpid());
}

// Writes the checkpoint files into `dir` and syncs them.
void write_files(const fs::path& dir, std::int64_t step, const CheckpointContents& contents) {
    CheckpointState state = contents.state;
    state.step = step;
    const std::map<std::string, std::string> metadata = {{"format", kCheckpointFormat},
                                                         {"step", std::to_string(step)}};
    write_safetensors(dir / "model.safetensors", contents.model, metadata);
    write_safetensors(dir / "optimizer.safetensors", contents.optimizer, metadata);
    const std::string text = to_json(state).dump(2) + "\n";
    FileWriter out(dir / "state.json");
    out.write(text.data(), text.size());
    out.close();
    for (const char* file : {"model.safetensors", "optimizer.safetensors", "state.json"}) {
        sync_path(dir / file);
    }
    sync_path(dir);
}

}  // namespace

std::optional<fs::path> newest_checkpoint(const fs::path& checkpoints_dir) {
    const auto steps = complete_steps(checkpoints_dir);
    if (steps.empty()) return std::nullopt;
    return steps.back().second;
}

int clean_interrupted_saves(const fs::path& checkpoints_dir) {
    int removed = 0;
    std::error_code error;
    std::vector<fs::path> leftovers;
    for (fs::directory_iterator it(checkpoints_dir, error), end; !error && it != end;
         it.increment(error)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(".tmp-", 0) == 0 ||
            name.rfind(std::string(".") + kLatest + ".tmp.", 0) == 0) {
            leftovers.push_back(it->path());
        }
    }
    for (const fs::path& leftover : leftovers) {
        remove_tree(leftover);
        ++removed;
    }
    return removed;
}

fs::path save_checkpoint(const fs::path& checkpoints_dir, std::int64_t step,
                         const CheckpointContents& contents, int keep, const SaveHooks& hooks) {
    const std::string name = kStepPrefix + std::to_string(step);
    const fs::path tmp = checkpoints_dir / temporary_name(name);
    try {
        fs::create_directories(checkpoints_dir);
        clean_interrupted_saves(checkpoints_dir);
        fs::create_directories(tmp);
        write_files(tmp, step, contents);
        if (hooks.before_publish) hooks.before_publish();
    } catch (const std::exception& error) {
        // Nothing was published: the previous checkpoint and `latest` are untouched.
        try {
            remove_tree(tmp);
        } catch (const std::exception&) {
        }
        if (const auto* file_error = dynamic_cast<const FileError*>(&error)) {
            throw CheckpointError(
                fmt::format("saving checkpoint {} failed: {}", name, file_error->what()));
        }
        if (const auto* fs_error = dynamic_cast<const fs::filesystem_error*>(&error)) {
            throw CheckpointError(fmt::format("saving checkpoint {} failed: {}: {}", name,
                                              printable_path(fs_error->path1()),
                                              fs_error->code().message()));
        }
        throw;
    }

    const fs::path final_dir = checkpoints_dir / name;
    if (fs::exists(final_dir)) {
        // Saving the same step again (after a resume): move the old one aside first, since a
        // directory cannot be renamed over a non-empty one.
        const fs::path old = checkpoints_dir / temporary_name("old-" + name);
        fs::rename(final_dir, old);
        fs::rename(tmp, final_dir);
        remove_tree(old);
    } else {
        fs::rename(tmp, final_dir);
    }
    sync_path(checkpoints_dir);
    write_file_atomically(checkpoints_dir / kLatest, name + "\n");
    prune(checkpoints_dir, keep, name);
    return final_dir;
}

fs::path resolve_checkpoint(const fs::path& path) {
    std::error_code error;
    if (fs::is_regular_file(path / "model.safetensors", error)) return path;
    for (const fs::path& dir : {path / "checkpoints", path}) {
        if (!fs::is_directory(dir, error)) continue;
        const auto steps = complete_steps(dir);
        if (!steps.empty()) return steps.back().second;
        if (fs::exists(dir / kLatest, error)) {
            throw CheckpointError(fmt::format(
                "{}: no complete checkpoint (a step-N directory with model.safetensors and "
                "state.json), although '{}' exists",
                printable_path(dir), kLatest));
        }
    }
    throw CheckpointError(fmt::format(
        "no checkpoint at {} (expected a run directory, its checkpoints directory, or a "
        "step-N directory)",
        printable_path(path)));
}

LoadedCheckpoint load_checkpoint(const fs::path& step_dir, CheckpointParts parts) {
    LoadedCheckpoint loaded;
    loaded.directory = step_dir;
    loaded.model = read_safetensors(step_dir / "model.safetensors").tensors;
    if (parts == CheckpointParts::kModelAndOptimizer) {
        loaded.optimizer = read_safetensors(step_dir / "optimizer.safetensors").tensors;
    }
    const fs::path state_file = step_dir / "state.json";
    try {
        loaded.state = parse_checkpoint_state(
            read_file(state_file, kMaxSmallFileBytes, "state file"), printable_path(state_file));
    } catch (const FileError& error) {
        throw CheckpointError(error.what());
    }
    return loaded;
}

}  // namespace moelab::core
