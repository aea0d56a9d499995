#pragma once

// Runs one function per worker on its own thread, for the coarse data parallelism of tokenizers
// and data preparation (not for tensor work: LibTorch has its own pools). Every started thread is
// joined before this returns, also when starting a later one fails or a worker throws, so no
// std::thread is ever destroyed joinable (which would terminate the process); the first exception
// is then rethrown to the caller.

#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moelab::sdk {

// Calls work(w) for w in [0, workers) on `workers` threads (inline when workers <= 1).
template <class Work>
void run_workers(std::size_t workers, Work&& work) {
    if (workers <= 1) {
        if (workers == 1) work(std::size_t{0});
        return;
    }
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto record = [&](std::exception_ptr error) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::move(error);
    };
    std::vector<std::thread> threads;
    threads.reserve(workers);
    try {
        for (std::size_t w = 0; w < workers; ++w) {
            threads.emplace_back([&, w] {
                try {
                    work(w);
                } catch (...) {
                    record(std::current_exception());
                }
            });
        }
    } catch (...) {  // std::system_error: no more threads; the started ones still finish
        record(std::current_exception());
    }
    for (std::thread& thread : threads) thread.join();
    if (failure) std::rethrow_exception(failure);
}

}  // namespace moelab::sdk
