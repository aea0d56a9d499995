#pragma once

// The process groups of one run (Note [Parallel layout]) and the services built on them: the
// batch reduction routers see, and the time spent exchanging, for the metrics. A single process
// has the same object with groups of one, so training code has one path.

#include <memory>

#include "core/dist/distributed_job.h"
#include "core/dist/parallel_layout.h"
#include "core/dist/process_group.h"
#include "moelab/sdk/batch_reduction.h"

namespace moelab::core {

// Seconds spent in one group's collectives since the last take(), forward and backward, except
// while paused (evaluations and checkpoints are not the training window's).
class ExchangeClock {
  public:
    void add(double seconds) {
        if (!paused_) seconds_ += seconds;
    }
    void set_paused(bool paused) { paused_ = paused; }
    double take() {
        const double s = seconds_;
        seconds_ = 0;
        return s;
    }

  private:
    double seconds_ = 0;
    bool paused_ = false;
};

class Parallelism {
  public:
    // One process: every group is this process alone.
    static std::shared_ptr<Parallelism> single();
    // The groups of `job` for expert degree `expert_degree` (it divides the world size; checked
    // by the caller). Every process of the job calls it.
    static std::shared_ptr<Parallelism> join(std::shared_ptr<DistributedJob> job,
                                             int expert_degree);

    const ParallelLayout& layout() const { return layout_; }
    bool distributed() const { return layout_.world > 1; }
    bool experts_sharded() const { return layout_.expert_degree > 1; }

    ProcessGroup& world() { return *world_; }
    ProcessGroup& experts() { return *experts_; }  // this process's expert-parallel group
    ProcessGroup& expert_replicas() { return *expert_replicas_; }
    // Shared handles, for objects that outlive a call (expert banks).
    std::shared_ptr<ProcessGroup> experts_handle() const { return experts_; }
    const sdk::BatchReduction& batch() const { return *batch_; }

    ExchangeClock& expert_exchange() { return *expert_clock_; }      // all-to-all of the experts
    ExchangeClock& gradient_exchange() { return *gradient_clock_; }  // all-reduces of the step

  private:
    Parallelism() = default;
    ParallelLayout layout_;
    std::shared_ptr<DistributedJob> job_;  // keeps the store (and its server) alive
    std::shared_ptr<ProcessGroup> world_, experts_, expert_replicas_;
    std::shared_ptr<sdk::BatchReduction> batch_;
    std::shared_ptr<ExchangeClock> expert_clock_ = std::make_shared<ExchangeClock>();
    std::shared_ptr<ExchangeClock> gradient_clock_ = std::make_shared<ExchangeClock>();
};

// `group` with the time of each collective added to `clock`.
std::shared_ptr<ProcessGroup> timed(std::shared_ptr<ProcessGroup> group,
                                    std::shared_ptr<ExchangeClock> clock);

}  // namespace moelab::core
