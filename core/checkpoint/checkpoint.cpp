#include "core/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/system/atomic_file.h"
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

void prune(const fs::path& checkpoints_dir, int keep, const std::string& latest) {
    std::vector<std::pair<std::int64_t, fs::path>> steps;
    for (const auto& entry : fs::directory_iterator(checkpoints_dir)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(".tmp-", 0) == 0) {
            remove_tree(entry.path());  // a save that never finished
        } else if (auto step = step_of(entry.path()); step && entry.is_directory()) {
            steps.emplace_back(*step, entry.path());
        }
    }
    std::sort(steps.begin(), steps.end());
    const std::size_t excess = steps.size() > static_cast<std::size_t>(std::max(1, keep))
                                   ? steps.size() - static_cast<std::size_t>(std::max(1, keep))
                                   : 0;
    for (std::size_t i = 0; i < excess; ++i) {
        if (steps[i].second.filename() != latest) remove_tree(steps[i].second);
    }
}

}  // namespace

fs::path save_checkpoint(const fs::path& checkpoints_dir, std::int64_t step,
                         const CheckpointContents& contents, int keep, const SaveHooks& hooks) {
    fs::create_directories(checkpoints_dir);
    const std::string name = kStepPrefix + std::to_string(step);
    const fs::path tmp = checkpoints_dir / fmt::format(".tmp-{}-{}", name, ::getpid());
    remove_tree(tmp);
    fs::create_directories(tmp);

    nlohmann::json state = contents.state;
    state["step"] = step;
    state["format"] = "moelab-checkpoint-1";
    write_safetensors(tmp / "model.safetensors", contents.model,
                      {{"format", "moelab-checkpoint-1"}, {"step", std::to_string(step)}});
    write_safetensors(tmp / "optimizer.safetensors", contents.optimizer,
                      {{"format", "moelab-checkpoint-1"}, {"step", std::to_string(step)}});
    {
        std::ofstream out(tmp / "state.json");
        out << state.dump(2) << '\n';
        if (!out) throw CheckpointError("cannot write " + (tmp / "state.json").string());
    }
    for (const char* file : {"model.safetensors", "optimizer.safetensors", "state.json"}) {
        sync_path(tmp / file);
    }
    sync_path(tmp);
    if (hooks.before_publish) hooks.before_publish();

    const fs::path final_dir = checkpoints_dir / name;
    if (fs::exists(final_dir)) {
        // Saving the same step again (after a resume): move the old one aside first, since a
        // directory cannot be renamed over a non-empty one.
        const fs::path old = checkpoints_dir / fmt::format(".tmp-old-{}-{}", name, ::getpid());
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
    if (fs::exists(path / "model.safetensors")) return path;
    for (const fs::path& dir : {path, path / "checkpoints"}) {
        const fs::path latest = dir / kLatest;
        if (!fs::exists(latest)) continue;
        std::string name = read_file(latest);
        name.erase(name.find_last_not_of(" \n\r\t") + 1);
        const fs::path step_dir = dir / name;
        if (!fs::exists(step_dir / "model.safetensors")) {
            throw CheckpointError(fmt::format("{} names '{}', which is not a complete checkpoint",
                                              latest.string(), name));
        }
        return step_dir;
    }
    throw CheckpointError(fmt::format(
        "no checkpoint at {} (expected a run directory, its checkpoints directory, or a "
        "step-N directory)",
        path.string()));
}

LoadedCheckpoint load_checkpoint(const fs::path& step_dir) {
    LoadedCheckpoint loaded;
    loaded.directory = step_dir;
    loaded.model = read_safetensors(step_dir / "model.safetensors").tensors;
    loaded.optimizer = read_safetensors(step_dir / "optimizer.safetensors").tensors;
    try {
        loaded.state = nlohmann::json::parse(read_file(step_dir / "state.json"));
    } catch (const nlohmann::json::exception& e) {
        throw CheckpointError(fmt::format("{}: {}", (step_dir / "state.json").string(), e.what()));
    }
    return loaded;
}

}  // namespace moelab::core
