#include "kernels/binding/pass_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moelab::kernels::binding {

namespace {

// Set while a thread runs a pass's body: a pass started from inside one runs inline (the pool is
// busy with the outer pass, and waiting for it would deadlock).
thread_local bool in_pass = false;

std::atomic<int> part_limit{0};  // 0: the pool's width

class PassPool {
  public:
    explicit PassPool(int threads) {
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
    }

    ~PassPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (std::thread& worker : workers_) worker.join();
    }

    int width() const { return static_cast<int>(workers_.size()) + 1; }

    // At most this many chunks per pass now: the width, or the tests' limit.
    int parts_now() const {
        const int limit = part_limit.load();
        return limit > 0 ? std::min(limit, width()) : width();
    }

    void run(std::int64_t n, std::int64_t grain,
             const std::function<void(std::int64_t, std::int64_t)>& body) {
        if (n <= 0) return;
        const std::int64_t threads = parts_now();
        const std::int64_t parts = std::min<std::int64_t>(
            threads, std::max<std::int64_t>(1, n / std::max<std::int64_t>(grain, 1)));
        if (parts == 1 || in_pass) {
            body(0, n);
            return;
        }
        std::lock_guard<std::mutex> serial(run_mutex_);
        const std::int64_t chunk = (n + parts - 1) / parts;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            body_ = &body;
            n_ = n;
            chunk_ = chunk;
            parts_ = parts;
            pending_ = static_cast<int>(parts - 1);
            failure_ = nullptr;
            ++generation_;
        }
        wake_.notify_all();
        // Part 0 on the calling thread. Whatever happens there, the workers' parts finish before
        // this returns: they use `body`, which the caller owns.
        std::exception_ptr own_failure;
        try {
            in_pass = true;
            body(0, std::min(chunk, n));
        } catch (...) {
            own_failure = std::current_exception();
        }
        in_pass = false;
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
        body_ = nullptr;
        if (own_failure) std::rethrow_exception(own_failure);
        if (failure_) std::rethrow_exception(failure_);
    }

  private:
    void work(int index) {
        std::uint64_t seen = 0;
        for (;;) {
            const std::function<void(std::int64_t, std::int64_t)>* body = nullptr;
            std::int64_t begin = 0, end = 0;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
                if (stopping_) return;
                seen = generation_;
                if (index >= parts_) continue;  // this pass has fewer parts than threads
                body = body_;
                begin = index * chunk_;
                end = std::min(n_, begin + chunk_);
            }
            std::exception_ptr failure;
            if (begin < end) {
                try {
                    in_pass = true;
                    (*body)(begin, end);
                } catch (...) {
                    failure = std::current_exception();
                }
                in_pass = false;
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (failure && !failure_) failure_ = failure;
                --pending_;
            }
            done_.notify_one();
        }
    }

    std::vector<std::thread> workers_;
    std::mutex run_mutex_;  // one pass at a time
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(std::int64_t, std::int64_t)>* body_ = nullptr;
    std::int64_t n_ = 0, chunk_ = 0, parts_ = 0;
    int pending_ = 0;
    std::exception_ptr failure_;
    std::uint64_t generation_ = 0;
    bool stopping_ = false;
};

PassPool& pool() {
    static PassPool instance(pass_threads());
    return instance;
}

}  // namespace

int pass_threads() {
    // The CPUs this process may run on (affinity, cgroup cpusets), not every CPU online.
    cpu_set_t allowed;
    int cpus = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) cpus = CPU_COUNT(&allowed);
    if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
    return std::clamp(cpus, 1, 8);
}

void limit_pass_parts(int parts) { part_limit.store(std::max(parts, 0)); }

int pass_parts() { return pool().parts_now(); }

void run_pass(std::int64_t n, std::int64_t grain,
              const std::function<void(std::int64_t, std::int64_t)>& body) {
    pool().run(n, grain, body);
}

void run_tasks(std::int64_t n, int threads, const std::function<void(std::int64_t)>& task) {
    std::atomic<std::int64_t> next{0};
    const std::int64_t parts = std::min<std::int64_t>({n, std::max(threads, 1), pass_parts()});
    // One chunk per thread, each taking tasks until none is left.
    run_pass(parts, 1, [&](std::int64_t, std::int64_t) {
        for (std::int64_t i = next++; i < n; i = next++) task(i);
    });
}

}  // namespace moelab::kernels::binding
