#pragma once

// state.json of a checkpoint: where training stood when it was written. Torch-free and validated
// field by field, so that a damaged file is reported as "<file>: field: expected ..., got ..."
// rather than as a JSON library's type error.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moelab::core {

inline constexpr char kCheckpointFormat[] = "moelab-checkpoint-1";

// One data source's position in a mixture (core/data/mixture_batcher.h).
struct SourcePosition {
    std::string name;
    std::int64_t epoch = 0;
    std::int64_t cursor = 0;
};

struct CheckpointState {
    std::int64_t step = 0;             // optimizer steps taken when it was saved
    std::int64_t optimizer_steps = 0;  // optimizer steps taken (AdamW::steps())
    // Each parameter's own count of AdamW updates (AdamW::parameter_steps()); parameters absent
    // have no optimizer state. Missing in checkpoints from before stages: every parameter then
    // has optimizer_steps updates.
    std::optional<std::map<std::string, std::int64_t>> parameter_steps;
    std::int64_t tokens_seen = 0;
    std::int64_t data_sequences = 0;  // training sequences drawn from the mixture
    // Every source's position. A checkpoint from before sources holds one (epoch, cursor): it
    // reads as a single source without a name.
    std::vector<SourcePosition> data_sources;
    std::string recipe_hash;
    double elapsed_seconds = 0;  // wall time of the run so far
    nlohmann::json extra;        // everything else (versions, plugin records), kept as is
};

nlohmann::json to_json(const CheckpointState& state);

// A JSON value for an error message without serialising it (a value nested 100,000 deep would
// overflow the stack): scalars as written and shortened, containers by their kind.
std::string describe_json(const nlohmann::json& value);

// Parses state.json text. CheckpointError("<file>: ...") when it is not JSON, not an object, or a
// field is missing, of the wrong type or out of range. `file` names the file in messages only.
CheckpointState parse_checkpoint_state(std::string_view text, const std::string& file);

}  // namespace moelab::core
