#pragma once

// Where a training step's time goes: per phase and per operator family (`moelab run --profile`,
// written to the run directory as profile.json).
//
// Note [Step profile]
// - Phases are wall time between the trainer's marks: data (drawing and moving the batches),
//   forward (model and loss), backward, optimizer (clipping, AdamW, zeroing gradients), other
//   (reducing the losses, averaging gradients across processes).
// - Forward families: the host opens a ProfileScope (profile_scope.h) around each family's calls;
//   the innermost open scope owns the time. Forward time outside every scope is "host code
//   between operators".
// - Backward families: the autograd engine runs nodes, not our code. Every node keeps the sequence
//   number its forward operation took; while scopes open and close, the profiler notes which
//   family owned each range of sequence numbers, and a RecordFunction callback on backward nodes
//   times each node and charges it to the family its forward ran in. Nodes without a sequence
//   number are the engine's gradient accumulation into parameters; a node created outside every
//   scope is "unscoped". Backward time between nodes is the engine's own.
// - Only the thread that took the profile is profiled (the CPU backward runs on it). On CUDA the
//   phases synchronise the device at each mark; the forward families are host (launch) times
//   there, and the backward's nodes run on the engine's device threads, so every backward row
//   but "unscoped" stays 0: on CUDA the backward is one number.
// - The hooks cost a little: a profiled run reports its own, slightly lower, tokens/s.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/system/profile_scope.h"

namespace moelab::core {

enum class StepPhase : int { kData, kForward, kBackward, kOptimizer, kOther };
inline constexpr int kStepPhases = static_cast<int>(StepPhase::kOther) + 1;

const char* step_phase_name(StepPhase phase);

class StepProfiler {
  public:
    // Installs the profiler for this thread; one at a time per process. `synchronize` (may be
    // empty) is called at each phase mark: the device's synchronisation on CUDA.
    explicit StepProfiler(std::function<void()> synchronize = {});
    ~StepProfiler();
    StepProfiler(const StepProfiler&) = delete;
    StepProfiler& operator=(const StepProfiler&) = delete;

    // A step: begin_step, then a mark at the start of each phase, then end_step.
    void begin_step();
    void mark(StepPhase phase);
    void end_step(std::int64_t tokens);

    std::int64_t steps() const { return steps_; }

    // Seconds per step of each row of the breakdown; the rows sum to the step time.
    struct Row {
        std::string name;
        double forward = 0;   // in the forward phase
        double backward = 0;  // in the backward phase
        double rest = 0;      // in the other phases (optimizer, data, other)
        double total() const { return forward + backward + rest; }
    };
    std::vector<Row> breakdown() const;
    double step_seconds() const;
    double phase_seconds(StepPhase phase) const;  // per step

    nlohmann::json to_json() const;
    std::string table() const;  // for the terminal

  private:
    using Clock = std::chrono::steady_clock;
    friend class ProfileScope;
    friend struct ProfilerHooks;

    // The thread first: only the profiling thread reads the step state.
    bool profiles_this_thread() const { return std::this_thread::get_id() == thread_ && in_step_; }
    // Scopes count in the forward phase only (the rows would not add up otherwise).
    bool counts_scopes() const {
        return profiles_this_thread() && phase_ == static_cast<int>(StepPhase::kForward);
    }
    void open_scope(OpFamily family);
    void close_scope();
    int family_of_sequence_number(std::uint64_t sequence_number) const;
    void add_backward(int slot, double seconds);

    // Accumulator slots: the families, then these.
    static constexpr int kUnscoped = kOpFamilies;
    static constexpr int kGradientAccumulation = kOpFamilies + 1;
    static constexpr int kSlots = kOpFamilies + 2;

    struct OpenScope {
        int family;
        Clock::time_point start;
        double nested = 0;  // seconds of scopes opened inside
    };

    std::function<void()> synchronize_;
    std::thread::id thread_;
    bool in_step_ = false;
    std::int64_t steps_ = 0;
    std::int64_t tokens_ = 0;

    std::array<double, kStepPhases> phases_{};
    int phase_ = -1;
    Clock::time_point phase_start_;

    std::array<double, kSlots> forward_{};
    std::array<double, kSlots> backward_{};
    std::vector<OpenScope> open_;
    // (first sequence number, family slot) in the order scopes opened and closed this step.
    std::vector<std::pair<std::uint64_t, int>> owners_;
    std::uint64_t callback_ = 0;
};

}  // namespace moelab::core
