#include "kernels/binding/pass_pool.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace moelab::kernels::binding {

namespace {

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

    void run(std::int64_t n, std::int64_t grain,
             const std::function<void(std::int64_t, std::int64_t)>& body) {
        if (n <= 0) return;
        const std::int64_t parts = std::min<std::int64_t>(
            width(), std::max<std::int64_t>(1, n / std::max<std::int64_t>(grain, 1)));
        if (parts == 1) {
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
            ++generation_;
        }
        wake_.notify_all();
        body(0, std::min(chunk, n));  // part 0 on the calling thread
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
        body_ = nullptr;
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
            if (begin < end) (*body)(begin, end);
            {
                std::lock_guard<std::mutex> lock(mutex_);
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
    std::uint64_t generation_ = 0;
    bool stopping_ = false;
};

PassPool& pool() {
    static PassPool instance(pass_threads());
    return instance;
}

}  // namespace

int pass_threads() {
    const unsigned hardware = std::thread::hardware_concurrency();
    return static_cast<int>(std::clamp(hardware, 1u, 8u));
}

void run_pass(std::int64_t n, std::int64_t grain,
              const std::function<void(std::int64_t, std::int64_t)>& body) {
    pool().run(n, grain, body);
}

}  // namespace moelab::kernels::binding
