#include "core/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "core/checkpoint/checkpoint_index.h"
#include "core/system/atomic_file.h"
#include "core/system/file_writer.h"
#include "core/system/printable.h"
#include "core/system/read_file.h"
#include "core/system/remove_tree.h"
#include "core/system/tensor_text.h"

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

constexpr char kModel[] = "model";
constexpr char kOptimizer[] = "optimizer";

std::string whole_file(const char* kind) { return fmt::format("{}.safetensors", kind); }
std::string index_file(const char* kind) { return fmt::format("{}.safetensors.index.json", kind); }
std::string shard_file(const char* kind, int index, int files) {
    return fmt::format("{}-{:05d}-of-{:05d}.safetensors", kind, index, files);
}

// Model weights in one file or in expert shards with their index.
bool has_model(const fs::path& step_dir) {
    std::error_code error;
    return fs::is_regular_file(step_dir / whole_file(kModel), error) ||
           fs::is_regular_file(step_dir / index_file(kModel), error);
}

// What every reader of a checkpoint needs (evaluation and init.from read no optimizer state). A
// save publishes all files at once, so a step directory without optimizer state was damaged
// afterwards; resuming from it names the missing file.
bool is_complete(const fs::path& step_dir) {
    std::error_code error;
    return has_model(step_dir) && fs::is_regular_file(step_dir / "state.json", error);
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

void write_text(const fs::path& file, const std::string& text) {
    FileWriter out(file);
    out.write(text.data(), text.size());
    out.close();
    sync_path(file);
}

// The index of one kind of a checkpoint in expert shards: file 1's tensors, and every expert of
// every stack in the file of the expert rank that holds it.
CheckpointIndex shard_index(const char* kind, const std::vector<NamedTensor>& first_file,
                            const std::map<std::string, std::int64_t>& stacks, int files) {
    CheckpointIndex index;
    for (const NamedTensor& tensor : first_file) {
        index.weight_map[tensor.name] = shard_file(kind, 1, files);
    }
    for (const auto& [name, experts] : stacks) {
        const std::int64_t per_file = experts / files;
        for (std::int64_t e = 0; e < experts; ++e) {
            index.weight_map[fmt::format("{}.{}", name, e)] =
                shard_file(kind, static_cast<int>(e / per_file) + 1, files);
        }
    }
    index.stacks = stacks;
    return index;
}

std::map<std::string, std::string> file_metadata(std::int64_t step) {
    return {{"format", kCheckpointFormat}, {"step", std::to_string(step)}};
}

// Writes the checkpoint files into `dir` and syncs them.
void write_files(const fs::path& dir, std::int64_t step, const CheckpointContents& contents) {
    CheckpointState state = contents.state;
    state.step = step;
    const std::map<std::string, std::string> metadata = file_metadata(step);
    std::map<std::string, std::string> model_metadata = contents.model_metadata;
    model_metadata.insert(metadata.begin(), metadata.end());
    const ExpertShardLayout& shards = contents.shards;
    if (shards.files <= 1) {
        write_safetensors(dir / whole_file(kModel), contents.model, model_metadata);
        write_safetensors(dir / whole_file(kOptimizer), contents.optimizer, metadata);
        sync_path(dir / whole_file(kModel));
        sync_path(dir / whole_file(kOptimizer));
    } else {
        write_checkpoint_shard(dir, 1, shards.files, contents.model, contents.optimizer);
        write_text(dir / index_file(kModel),
                   format_checkpoint_index(
                       shard_index(kModel, contents.model, shards.model_stacks, shards.files),
                       model_metadata));
        write_text(dir / index_file(kOptimizer),
                   format_checkpoint_index(shard_index(kOptimizer, contents.optimizer,
                                                       shards.optimizer_stacks, shards.files),
                                           metadata));
    }
    write_text(dir / "state.json", to_json(state).dump(2) + "\n");
    sync_path(dir);
}

// Puts every stack back together: the tensors "<name>.<e>", e in [0, experts), become row e of
// "<name>". Throws CheckpointError naming `where` and the part that is missing or does not match.
void restack_experts(std::map<std::string, at::Tensor>& tensors,
                     const std::map<std::string, std::int64_t>& stacks, const std::string& where) {
    for (const auto& [name, experts] : stacks) {
        if (tensors.count(name) != 0) {
            throw CheckpointError(fmt::format("{}: '{}' is stored both whole and per expert", where,
                                              printable(name)));
        }
        std::vector<at::Tensor> parts;
        for (std::int64_t e = 0; e < experts; ++e) {
            const std::string part = fmt::format("{}.{}", name, e);
            auto it = tensors.find(part);
            if (it == tensors.end()) {
                throw CheckpointError(
                    fmt::format("{}: '{}' has {} experts, but expert {} ('{}') is "
                                "in none of its files",
                                where, printable(name), experts, e, printable(part)));
            }
            if (!parts.empty() && (it->second.sizes() != parts.front().sizes() ||
                                   it->second.scalar_type() != parts.front().scalar_type())) {
                throw CheckpointError(fmt::format("{}: '{}' is {}, but expert 0 of the stack is {}",
                                                  where, printable(part), tensor_text(it->second),
                                                  tensor_text(parts.front())));
            }
            parts.push_back(it->second);
            tensors.erase(it);
        }
        tensors[name] = at::stack(parts);
    }
}

// One kind of tensors of a step directory: its one file, or the files its index names, with the
// stacks put back together.
std::map<std::string, at::Tensor> read_tensors(const fs::path& step_dir, const char* kind) {
    std::error_code error;
    if (fs::is_regular_file(step_dir / whole_file(kind), error) ||
        !fs::is_regular_file(step_dir / index_file(kind), error)) {
        return read_safetensors(step_dir / whole_file(kind)).tensors;  // names a missing file
    }
    const fs::path index_path = step_dir / index_file(kind);
    CheckpointIndex index;
    try {
        index =
            parse_checkpoint_index(read_file(index_path, kMaxSmallFileBytes, "checkpoint index"),
                                   printable_path(index_path));
    } catch (const FileError& file_error) {
        throw CheckpointError(file_error.what());
    }
    std::map<std::string, std::vector<std::string>> by_file;
    for (const auto& [tensor, file] : index.weight_map) by_file[file].push_back(tensor);
    std::map<std::string, at::Tensor> tensors;
    for (const auto& [file, names] : by_file) {
        std::map<std::string, at::Tensor> held = read_safetensors(step_dir / file).tensors;
        for (const std::string& name : names) {
            auto it = held.find(name);
            if (it == held.end()) {
                throw CheckpointError(
                    fmt::format("{}: the index puts '{}' in {}, which does not "
                                "hold it",
                                printable_path(index_path), printable(name), file));
            }
            tensors[name] = it->second;
        }
    }
    restack_experts(tensors, index.stacks, printable_path(index_path));
    return tensors;
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
        if (hooks.before_publish) hooks.before_publish(tmp);
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

void write_checkpoint_shard(const fs::path& directory, int index, int files,
                            const std::vector<NamedTensor>& model,
                            const std::vector<NamedTensor>& optimizer) {
    // The step is in state.json; shard files carry the format only, so any process can write one.
    const std::map<std::string, std::string> metadata = {{"format", kCheckpointFormat}};
    for (const auto& [kind, tensors] :
         {std::pair{kModel, &model}, std::pair{kOptimizer, &optimizer}}) {
        const fs::path file = directory / shard_file(kind, index, files);
        write_safetensors(file, *tensors, metadata);
        sync_path(file);
    }
}

fs::path resolve_checkpoint(const fs::path& path) {
    std::error_code error;
    if (has_model(path)) return path;
    for (const fs::path& dir : {path / "checkpoints", path}) {
        if (!fs::is_directory(dir, error)) continue;
        const auto steps = complete_steps(dir);
        if (!steps.empty()) return steps.back().second;
        if (fs::exists(dir / kLatest, error)) {
            throw CheckpointError(fmt::format(
                "{}: no complete checkpoint (a step-N directory with model.safetensors, or "
                "model.safetensors.index.json and its files, and state.json), although '{}' "
                "exists",
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
    loaded.model = read_tensors(step_dir, kModel);
    if (parts == CheckpointParts::kModelAndOptimizer) {
        loaded.optimizer = read_tensors(step_dir, kOptimizer);
    }
    loaded.state = load_checkpoint_state(step_dir);
    return loaded;
}

CheckpointState load_checkpoint_state(const fs::path& step_dir) {
    const fs::path state_file = step_dir / "state.json";
    try {
        return parse_checkpoint_state(read_file(state_file, kMaxSmallFileBytes, "state file"),
                                      printable_path(state_file));
    } catch (const FileError& error) {
        throw CheckpointError(error.what());
    }
}

}  // namespace moelab::core
