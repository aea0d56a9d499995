#pragma once

// Note [Deferred checks]
// ~~~~~~~~~~~~~~~~~~~~~~
// Plugin outputs are checked at the boundary, and some checks need values: an expert index out of
// range, a NaN in the combine weights. Reading one from a GPU makes the host wait for the device,
// and at every layer that is several waits per step. Inside a forward pass of the model
// (DeferredChecks, opened by LanguageModel::forward) a check of a CUDA tensor therefore leaves a
// count of its violations on the device, and the host reads every count of the pass at once at
// its end, raising the first failure with the message it would have had at once: the same words,
// through the same context (ErrorContext). On the CPU, and outside a forward pass, checks run at
// once. What a check guards must stay safe until the read: out-of-range expert indices are
// replaced by empty slots (-1) where they are checked, so nothing indexes with them meanwhile.
// If the pass fails for another reason, its pending checks are read first: a router's NaN in one
// layer is a better explanation than what it caused three layers later.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/ATen.h>

#include "moelab/sdk/error.h"

namespace moelab::core {

// `violations` is a () integer tensor; when it is non-zero, `fail(count)` throws the check's
// sdk::Error (or returns, when on reflection there is nothing to report). Now, or at the end of
// the forward pass open on this thread when `violations` is on CUDA.
void expect_no_violations(const at::Tensor& violations, std::function<void(std::int64_t)> fail);

// Whether checks of `t` are deferred now (so that what they guard must be made safe meanwhile).
bool checks_deferred_for(const at::Tensor& t);

// While alive, a failure raised by a deferred check passes through `translate`, which throws the
// error a caller's `catch (const sdk::Error&)` would have thrown in its place; innermost first.
// Errors raised at once are not touched: the caller's own catch translates them.
class ErrorContext {
  public:
    explicit ErrorContext(std::function<void(const sdk::Error&)> translate);
    ~ErrorContext();
    ErrorContext(const ErrorContext&) = delete;
    ErrorContext& operator=(const ErrorContext&) = delete;
};

// The checks of one forward pass, on this thread. Passes nest (a reference model inside a
// calibration step): each reads its own.
class DeferredChecks {
  public:
    DeferredChecks();
    ~DeferredChecks();  // drops what was not read (after a failure that was read first)
    DeferredChecks(const DeferredChecks&) = delete;
    DeferredChecks& operator=(const DeferredChecks&) = delete;

    // Reads every pending count at once and raises the first failure.
    void read();
    // The same on the way out of a pass that failed otherwise: raises a check's failure, but when
    // the counts cannot be read (a CUDA error is sticky) it returns, so that the caller rethrows
    // its own error.
    void read_after_failure();

    struct Pending;

  private:
    std::vector<Pending>* outer_;
    std::size_t outer_contexts_;  // contexts opened before the pass: not this pass's to apply
    std::unique_ptr<std::vector<Pending>> pending_;
};

// For tests: defer checks of CPU tensors too (this thread).
void defer_cpu_checks_for_tests(bool defer);

}  // namespace moelab::core
