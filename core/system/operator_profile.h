#pragma once

// Self time per LibTorch operator (`moelab run --profile-operators`, operators.json in the run
// directory): what the step profile's families are made of, down to `aten::bmm` and `aten::fill_`.
//
// Note [Operator profile]
// A RecordFunction callback on operators (RecordScope::FUNCTION) times every operator the
// profiling thread runs, forward and backward (on the CPU the backward runs on that thread), and
// keeps per name the calls, the total time and the self time: the total less the operators called
// inside it, so that the self times add up to the time spent in operators. One profile at a time.
// The hooks cost about a microsecond per operator, which the profiled step's own times include.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <ATen/record_function.h>
#include <nlohmann/json.hpp>

namespace moelab::core {

class OperatorProfile {
  public:
    struct Row {
        std::string name;
        std::int64_t calls = 0;
        double self_seconds = 0;
        double total_seconds = 0;
    };

    // Profiles this thread, from now on or (`recording` false) between begin() and end(); throws
    // std::logic_error if a profile is installed already.
    explicit OperatorProfile(bool recording = true);
    ~OperatorProfile();
    OperatorProfile(const OperatorProfile&) = delete;
    OperatorProfile& operator=(const OperatorProfile&) = delete;

    // Records the operators between the two (a training step): the trainer profiles its steps and
    // not the evaluations and checkpoints between them.
    void begin();
    void end();

    // By self time, largest first.
    std::vector<Row> rows() const;
    // Wall time recorded: since the start, or between begin() and end().
    double seconds() const;

    // {"seconds", "operators": [{"name", "calls", "self_seconds", "total_seconds"}...]}
    nlohmann::json to_json() const;
    // The `top` largest by self time, with their share of the wall time.
    std::string table(std::size_t top) const;

    // For the callbacks.
    bool profiles_this_thread() const {
        return recording_ && std::this_thread::get_id() == thread_;
    }
    void add(const char* name, double total, double self);

  private:
    std::thread::id thread_;
    bool recording_;
    std::chrono::steady_clock::time_point start_;
    double recorded_seconds_ = 0;  // of the begin()-end() spans that ended
    std::map<std::string, Row> rows_;
    at::CallbackHandle callback_ = 0;
};

}  // namespace moelab::core
