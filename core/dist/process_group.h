#pragma once

// A group of processes that exchange tensors: the few collectives moelab's parallelism needs, over
// LibTorch's c10d (Gloo for CPU tensors, NCCL for CUDA ones; distributed_job.h). Every member calls
// the same collectives in the same order with matching shapes; each call returns when its result is
// in place. A group of one (solo_group) makes every collective the identity, so single-process
// code takes the same path.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace moelab::core {

class ProcessGroup {
  public:
    virtual ~ProcessGroup() = default;

    virtual int rank() const = 0;  // this process's place in the group, 0-based
    virtual int size() const = 0;

    // In place: `tensor` becomes the element-wise sum over the group.
    virtual void all_reduce_sum(at::Tensor& tensor) = 0;
    // Every member's `local` (the same shape everywhere) stacked in rank order: (size, ...).
    virtual at::Tensor all_gather(const at::Tensor& local) = 0;
    // Rows of `input` go to the members in rank order, send_rows[m] of them to member m; the
    // result holds receive_rows[m] rows from each member m, in rank order. Rows are slices along
    // dimension 0 of a contiguous tensor; the row shape and dtype agree everywhere.
    virtual at::Tensor all_to_all(const at::Tensor& input,
                                  const std::vector<std::int64_t>& send_rows,
                                  const std::vector<std::int64_t>& receive_rows) = 0;
    // In place: `tensor` becomes member `root`'s.
    virtual void broadcast(at::Tensor& tensor, int root) = 0;
    virtual void barrier() = 0;
};

// The group of this process alone.
std::shared_ptr<ProcessGroup> solo_group();

// Member `root`'s `text` on every member (control messages: a run directory's path). The bytes
// travel in a tensor on `device` (NCCL groups move CUDA tensors only).
std::string broadcast_text(ProcessGroup& group, const std::string& text, int root,
                           const at::Device& device);

// Whether any member says yes (a stop request that must end every process at the same step).
bool any_member(ProcessGroup& group, bool yes, const at::Device& device);

}  // namespace moelab::core
