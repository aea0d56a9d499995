#pragma once

// The job this process belongs to: it meets the other processes through the launcher's store
// (TCP, or a file for tests), and forms the world group and any subgroup over it. Gloo carries
// CPU tensors; NCCL carries CUDA tensors where LibTorch has it.

#include <memory>
#include <string>
#include <vector>

#include "core/dist/launch_environment.h"
#include "core/dist/process_group.h"

namespace moelab::core {

enum class Transport { kGloo, kNccl };

class DistributedJob {
  public:
    // Meets the other processes of `env` (blocks until all of them have arrived, at most the
    // store's timeout). Throws std::runtime_error with the address and the reason when it cannot.
    static std::unique_ptr<DistributedJob> connect(const LaunchEnvironment& env,
                                                   Transport transport);
    virtual ~DistributedJob() = default;

    virtual int rank() const = 0;
    virtual int world_size() const = 0;
    virtual int local_rank() const = 0;
    virtual std::shared_ptr<ProcessGroup> world() = 0;
    // The group of `members` (global ranks, ascending, this process among them). Every member
    // calls it with the same name and members, and the name is unique within the job.
    virtual std::shared_ptr<ProcessGroup> subgroup(const std::string& name,
                                                   const std::vector<int>& members) = 0;
};

}  // namespace moelab::core
