#include "core/system/step_profiler.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>

#include <ATen/SequenceNumber.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

namespace moelab::core {

namespace {

// The installed profiler; scopes and hooks on other threads, or with none installed, do nothing.
std::atomic<StepProfiler*> installed{nullptr};

// Backward nodes running inside another node (reentrant backward) belong to the outer one.
thread_local int node_depth = 0;

double seconds_between(std::chrono::steady_clock::time_point from,
                       std::chrono::steady_clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

}  // namespace

const char* op_family_name(OpFamily family) {
    switch (family) {
        case OpFamily::kEmbedding:
            return "embedding";
        case OpFamily::kAttention:
            return "attention";
        case OpFamily::kRouter:
            return "router";
        case OpFamily::kRoutingPlan:
            return "routing plan";
        case OpFamily::kExperts:
            return "experts";
        case OpFamily::kExpertExchange:
            return "expert exchange";
        case OpFamily::kMoeBlockOther:
            return "moe block, other";
        case OpFamily::kDenseFfn:
            return "dense ffn";
        case OpFamily::kNormsElementwise:
            return "norms and elementwise";
        case OpFamily::kLmHeadLoss:
            return "lm head and loss";
    }
    return "?";
}

const char* step_phase_name(StepPhase phase) {
    switch (phase) {
        case StepPhase::kData:
            return "data";
        case StepPhase::kForward:
            return "forward";
        case StepPhase::kBackward:
            return "backward";
        case StepPhase::kOptimizer:
            return "optimizer";
        case StepPhase::kOther:
            return "other";
    }
    return "?";
}

ProfileScope::ProfileScope(OpFamily family) {
    StepProfiler* profiler = installed.load(std::memory_order_acquire);
    if (profiler == nullptr || !profiler->counts_scopes()) return;
    profiler->open_scope(family);
    open_ = true;
}

ProfileScope::~ProfileScope() {
    if (!open_) return;
    // The step cannot end inside a scope: end_step runs in the trainer, outside the model.
    installed.load(std::memory_order_acquire)->close_scope();
}

// The RecordFunction callbacks on backward nodes.
struct ProfilerHooks {
    struct NodeTiming : at::ObserverContext {
        std::chrono::steady_clock::time_point start;
        int slot = 0;
        bool outermost = false;
    };

    static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& node) {
        StepProfiler* profiler = installed.load(std::memory_order_acquire);
        if (profiler == nullptr || !profiler->profiles_this_thread()) return nullptr;
        auto timing = std::make_unique<NodeTiming>();
        timing->outermost = node_depth++ == 0;
        const std::int64_t sequence_number = node.seqNr();
        timing->slot =
            sequence_number < 0
                ? StepProfiler::kGradientAccumulation
                : profiler->family_of_sequence_number(static_cast<std::uint64_t>(sequence_number));
        timing->start = std::chrono::steady_clock::now();
        return timing;
    }

    static void on_end(const at::RecordFunction&, at::ObserverContext* context) {
        auto* timing = static_cast<NodeTiming*>(context);
        if (timing == nullptr) return;
        --node_depth;
        StepProfiler* profiler = installed.load(std::memory_order_acquire);
        if (profiler == nullptr || !timing->outermost) return;
        profiler->add_backward(timing->slot,
                               seconds_between(timing->start, std::chrono::steady_clock::now()));
    }
};

StepProfiler::StepProfiler(std::function<void()> synchronize)
    : synchronize_(std::move(synchronize)), thread_(std::this_thread::get_id()) {
    StepProfiler* expected = nullptr;
    if (!installed.compare_exchange_strong(expected, this)) {
        throw std::logic_error("a step profiler is installed already");
    }
    try {
        callback_ = at::addGlobalCallback(
            at::RecordFunctionCallback(&ProfilerHooks::on_start, &ProfilerHooks::on_end)
                .scopes({at::RecordScope::BACKWARD_FUNCTION}));
    } catch (...) {
        installed.store(nullptr, std::memory_order_release);
        throw;
    }
}

StepProfiler::~StepProfiler() {
    at::removeCallback(callback_);
    installed.store(nullptr, std::memory_order_release);
}

void StepProfiler::begin_step() {
    in_step_ = true;
    phase_ = -1;
    open_.clear();
    owners_.clear();
    owners_.emplace_back(at::sequence_number::peek(), kUnscoped);
}

void StepProfiler::mark(StepPhase phase) {
    if (synchronize_) synchronize_();
    const Clock::time_point now = Clock::now();
    if (phase_ >= 0) phases_[phase_] += seconds_between(phase_start_, now);
    phase_ = static_cast<int>(phase);
    phase_start_ = now;
}

void StepProfiler::end_step(std::int64_t tokens) {
    if (synchronize_) synchronize_();
    if (phase_ >= 0) phases_[phase_] += seconds_between(phase_start_, Clock::now());
    phase_ = -1;
    in_step_ = false;
    ++steps_;
    tokens_ += tokens;
}

void StepProfiler::open_scope(OpFamily family) {
    const int slot = static_cast<int>(family);
    open_.push_back({slot, Clock::now()});
    owners_.emplace_back(at::sequence_number::peek(), slot);
}

void StepProfiler::close_scope() {
    const OpenScope scope = open_.back();
    open_.pop_back();
    const double elapsed = seconds_between(scope.start, Clock::now());
    forward_[scope.family] += elapsed - scope.nested;
    if (!open_.empty()) open_.back().nested += elapsed;
    owners_.emplace_back(at::sequence_number::peek(),
                         open_.empty() ? kUnscoped : open_.back().family);
}

int StepProfiler::family_of_sequence_number(std::uint64_t sequence_number) const {
    // The last change at or before the number (several changes may share one number: the last
    // is the one in force when the next node was made).
    auto after =
        std::upper_bound(owners_.begin(), owners_.end(), sequence_number,
                         [](std::uint64_t number, const std::pair<std::uint64_t, int>& change) {
                             return number < change.first;
                         });
    return after == owners_.begin() ? kUnscoped : std::prev(after)->second;
}

void StepProfiler::add_backward(int slot, double seconds) { backward_[slot] += seconds; }

double StepProfiler::phase_seconds(StepPhase phase) const {
    return steps_ == 0 ? 0 : phases_[static_cast<int>(phase)] / static_cast<double>(steps_);
}

double StepProfiler::step_seconds() const {
    double total = 0;
    for (int p = 0; p < kStepPhases; ++p) total += phase_seconds(static_cast<StepPhase>(p));
    return total;
}

std::vector<StepProfiler::Row> StepProfiler::breakdown() const {
    const double per_step = steps_ == 0 ? 0 : 1.0 / static_cast<double>(steps_);
    std::vector<Row> rows;
    double forward_scoped = 0;
    double backward_nodes = 0;
    for (int f = 0; f < kOpFamilies; ++f) {
        rows.push_back({op_family_name(static_cast<OpFamily>(f)), forward_[f] * per_step,
                        backward_[f] * per_step});
        forward_scoped += forward_[f] * per_step;
        backward_nodes += backward_[f] * per_step;
    }
    backward_nodes += (backward_[kUnscoped] + backward_[kGradientAccumulation]) * per_step;
    rows.push_back({"gradient accumulation", 0, backward_[kGradientAccumulation] * per_step});
    // What no scope or node owns: host code between operators in the forward, operators made
    // outside every scope, and the autograd engine's own work between nodes.
    rows.push_back(
        {"unscoped (host code, engine)", phase_seconds(StepPhase::kForward) - forward_scoped,
         backward_[kUnscoped] * per_step + (phase_seconds(StepPhase::kBackward) - backward_nodes)});
    for (StepPhase phase : {StepPhase::kOptimizer, StepPhase::kData, StepPhase::kOther}) {
        Row row{step_phase_name(phase)};
        row.rest = phase_seconds(phase);
        rows.push_back(row);
    }
    return rows;
}

nlohmann::json StepProfiler::to_json() const {
    const double step = step_seconds();
    nlohmann::json phases = nlohmann::json::object();
    for (int p = 0; p < kStepPhases; ++p) {
        phases[step_phase_name(static_cast<StepPhase>(p))] =
            phase_seconds(static_cast<StepPhase>(p));
    }
    nlohmann::json rows = nlohmann::json::array();
    for (const Row& row : breakdown()) {
        rows.push_back({{"name", row.name},
                        {"forward_seconds", row.forward},
                        {"backward_seconds", row.backward},
                        {"other_seconds", row.rest},
                        {"seconds", row.total()},
                        {"share", step > 0 ? row.total() / step : 0.0}});
    }
    const double tokens_per_step =
        steps_ == 0 ? 0 : static_cast<double>(tokens_) / static_cast<double>(steps_);
    return {{"steps", steps_},
            {"step_seconds", step},
            {"tokens_per_step", tokens_per_step},
            {"tokens_per_second", step > 0 ? tokens_per_step / step : 0.0},
            {"phases_seconds", phases},
            {"breakdown", rows}};
}

std::string StepProfiler::table() const {
    const double step = step_seconds();
    const auto ms = [](double seconds) {
        return seconds == 0 ? std::string("-") : fmt::format("{:.2f}", seconds * 1e3);
    };
    std::string out = fmt::format("{:<30} {:>9} {:>9} {:>9} {:>9} {:>6}\n", "per step (ms)",
                                  "forward", "backward", "other", "total", "share");
    for (const Row& row : breakdown()) {
        out += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>9} {:>5.1f}%\n", row.name, ms(row.forward),
                           ms(row.backward), ms(row.rest), ms(row.total()),
                           step > 0 ? 100 * row.total() / step : 0.0);
    }
    out += fmt::format("{:<30} {:>9} {:>9} {:>9} {:>9} {:>5.1f}%\n", "step", "", "", "", ms(step),
                       100.0);
    return out;
}

}  // namespace moelab::core
