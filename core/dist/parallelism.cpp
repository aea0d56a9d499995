#include "core/dist/parallelism.h"

#include <chrono>

namespace moelab::core {

namespace {

class TimedGroup final : public ProcessGroup {
  public:
    TimedGroup(std::shared_ptr<ProcessGroup> group, std::shared_ptr<ExchangeClock> clock)
        : group_(std::move(group)), clock_(std::move(clock)) {}

    int rank() const override { return group_->rank(); }
    int size() const override { return group_->size(); }
    void all_reduce_sum(at::Tensor& tensor) override {
        time([&] { group_->all_reduce_sum(tensor); });
    }
    at::Tensor all_gather(const at::Tensor& local) override {
        at::Tensor result;
        time([&] { result = group_->all_gather(local); });
        return result;
    }
    at::Tensor all_to_all(const at::Tensor& input, const std::vector<std::int64_t>& send_rows,
                          const std::vector<std::int64_t>& receive_rows) override {
        at::Tensor result;
        time([&] { result = group_->all_to_all(input, send_rows, receive_rows); });
        return result;
    }
    void broadcast(at::Tensor& tensor, int root) override {
        time([&] { group_->broadcast(tensor, root); });
    }
    void barrier() override {
        time([&] { group_->barrier(); });
    }

  private:
    template <class Call>
    void time(Call&& call) {
        const auto start = std::chrono::steady_clock::now();
        call();
        clock_->add(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::shared_ptr<ProcessGroup> group_;
    std::shared_ptr<ExchangeClock> clock_;
};

class GroupBatchReduction final : public sdk::BatchReduction {
  public:
    explicit GroupBatchReduction(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}
    at::Tensor sum(const at::Tensor& local) const override {
        at::Tensor total = local.detach().clone().contiguous();
        group_->all_reduce_sum(total);
        return total;
    }
    int parts() const override { return group_->size(); }

  private:
    std::shared_ptr<ProcessGroup> group_;
};

}  // namespace

std::shared_ptr<ProcessGroup> timed(std::shared_ptr<ProcessGroup> group,
                                    std::shared_ptr<ExchangeClock> clock) {
    return std::make_shared<TimedGroup>(std::move(group), std::move(clock));
}

std::shared_ptr<Parallelism> Parallelism::single() {
    std::shared_ptr<Parallelism> p(new Parallelism());
    const std::shared_ptr<ProcessGroup> alone = solo_group();
    p->world_ = p->experts_ = p->expert_replicas_ = alone;
    p->batch_ = std::make_shared<GroupBatchReduction>(alone);
    return p;
}

namespace {

std::shared_ptr<ProcessGroup> group_of(DistributedJob& job, const std::string& name,
                                       const std::vector<int>& members) {
    if (members.size() == 1) return solo_group();
    if (static_cast<int>(members.size()) == job.world_size()) return job.world();
    return job.subgroup(name, members);
}

}  // namespace

std::shared_ptr<Parallelism> Parallelism::join(std::shared_ptr<DistributedJob> shared_job,
                                               int expert_degree) {
    std::shared_ptr<Parallelism> p(new Parallelism());
    p->job_ = shared_job;
    DistributedJob& job = *shared_job;
    p->layout_ = ParallelLayout{job.world_size(), job.rank(), expert_degree, job.local_rank()};
    const ParallelLayout& layout = p->layout_;
    p->world_ = timed(job.world(), p->gradient_clock_);
    p->batch_ = std::make_shared<GroupBatchReduction>(p->world_);
    // Every process creates every subgroup it belongs to, in the same order.
    p->experts_ = timed(group_of(job, "experts-" + std::to_string(layout.expert_group()),
                                 layout.expert_group_members()),
                        p->expert_clock_);
    p->expert_replicas_ = timed(group_of(job, "replicas-" + std::to_string(layout.expert_rank()),
                                         layout.expert_replica_members()),
                                p->gradient_clock_);
    return p;
}

}  // namespace moelab::core
