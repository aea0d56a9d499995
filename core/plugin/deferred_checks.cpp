#include "core/plugin/deferred_checks.h"

#include <exception>
#include <utility>

namespace moelab::core {

using Translate = std::function<void(const sdk::Error&)>;

struct DeferredChecks::Pending {
    at::Tensor violations;
    std::function<void(std::int64_t)> fail;
    std::vector<std::shared_ptr<const Translate>> contexts;  // outermost first
};

namespace {

thread_local std::vector<DeferredChecks::Pending>* open_pass = nullptr;
thread_local std::size_t open_pass_contexts = 0;  // contexts opened before the open pass
thread_local std::vector<std::shared_ptr<const Translate>> contexts;
thread_local bool defer_cpu = false;

// Runs `fail` and passes what it throws through the contexts it was checked in.
void raise(const DeferredChecks::Pending& check, std::int64_t count) {
    std::exception_ptr error;
    try {
        check.fail(count);
    } catch (...) {
        error = std::current_exception();
    }
    if (!error) return;
    for (auto context = check.contexts.rbegin(); context != check.contexts.rend(); ++context) {
        try {
            std::rethrow_exception(error);
        } catch (const sdk::Error& inner) {
            try {
                (**context)(inner);
            } catch (...) {
                error = std::current_exception();
            }
        } catch (...) {
            // Not an sdk::Error: no caller's catch would have translated it either.
        }
    }
    std::rethrow_exception(error);
}

}  // namespace

bool checks_deferred_for(const at::Tensor& t) {
    return open_pass != nullptr && (t.is_cuda() || defer_cpu);
}

void expect_no_violations(const at::Tensor& violations, std::function<void(std::int64_t)> fail) {
    if (!checks_deferred_for(violations)) {
        const std::int64_t count = violations.item<std::int64_t>();
        if (count != 0) fail(count);
        return;
    }
    // The contexts opened inside the pass: those outside it see the error when it leaves the
    // pass, as they would have seen it at once.
    open_pass->push_back(
        {violations.detach().to(at::kLong), std::move(fail),
         std::vector<std::shared_ptr<const Translate>>(
             contexts.begin() + static_cast<std::ptrdiff_t>(open_pass_contexts), contexts.end())});
}

ErrorContext::ErrorContext(Translate translate) {
    contexts.push_back(std::make_shared<const Translate>(std::move(translate)));
}

ErrorContext::~ErrorContext() { contexts.pop_back(); }

DeferredChecks::DeferredChecks()
    : outer_(open_pass),
      outer_contexts_(open_pass_contexts),
      pending_(std::make_unique<std::vector<Pending>>()) {
    open_pass = pending_.get();
    open_pass_contexts = contexts.size();
}

DeferredChecks::~DeferredChecks() {
    open_pass = outer_;
    open_pass_contexts = outer_contexts_;
}

namespace {

// Every count of `pending` on the host: the one wait of the pass. (Counts on another device than
// the first's, which no model makes today, are copied over first.)
std::vector<std::int64_t> read_counts(const std::vector<DeferredChecks::Pending>& pending) {
    const at::Device device = pending.front().violations.device();
    std::vector<at::Tensor> counts;
    counts.reserve(pending.size());
    for (const DeferredChecks::Pending& check : pending) {
        counts.push_back(check.violations.reshape({}).to(device));
    }
    const at::Tensor read = at::stack(counts).to(at::kCPU).contiguous();
    const std::int64_t* values = read.data_ptr<std::int64_t>();
    return std::vector<std::int64_t>(values, values + read.numel());
}

}  // namespace

void DeferredChecks::read() {
    std::vector<Pending> pending;
    pending.swap(*pending_);
    if (pending.empty()) return;
    const std::vector<std::int64_t> counts = read_counts(pending);
    for (std::size_t i = 0; i < pending.size(); ++i) {
        if (counts[i] != 0) raise(pending[i], counts[i]);
    }
}

void DeferredChecks::read_after_failure() {
    std::vector<Pending> pending;
    pending.swap(*pending_);
    if (pending.empty()) return;
    std::vector<std::int64_t> counts;
    try {
        counts = read_counts(pending);
    } catch (...) {
        return;  // the device is in no state to answer; the caller's error stands
    }
    for (std::size_t i = 0; i < pending.size(); ++i) {
        if (counts[i] != 0) raise(pending[i], counts[i]);
    }
}

void defer_cpu_checks_for_tests(bool defer) { defer_cpu = defer; }

}  // namespace moelab::core
