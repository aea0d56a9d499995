#pragma once

// Sums over the whole batch when the host splits a batch across processes (data parallelism, also
// under expert parallelism). A router's auxiliary losses and statistics that depend on batch-level
// counts, such as the fraction of assignments each expert received, must be computed from the
// whole batch, or their value and gradient change with the number of processes (the known
// pitfall of balance losses under parallelism). Per-token quantities averaged over tokens need
// nothing: the host averages every process's loss.

#include <ATen/core/Tensor.h>

namespace moelab::sdk {

class BatchReduction {
  public:
    // The sum of `local` over every process's part of the batch: `local` itself in one process.
    // The result is detached (counts and fractions carry no gradient). A collective: every process
    // calls it the same number of times, in the same order, with the same shape and dtype.
    virtual at::Tensor sum(const at::Tensor& local) const = 0;
    // How many processes share the batch (1 without data parallelism).
    virtual int parts() const = 0;

  protected:
    ~BatchReduction() = default;
};

// A batch held whole by one process: what the host passes without data parallelism, and what
// tools and tests that call a router themselves can pass.
class WholeBatch final : public BatchReduction {
  public:
    at::Tensor sum(const at::Tensor& local) const override { return local.detach(); }
    int parts() const override { return 1; }
};

}  // namespace moelab::sdk
