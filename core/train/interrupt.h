#pragma once

// SIGINT/SIGTERM during training: finish the current step, write a checkpoint, stop cleanly.

namespace moelab::core {

class InterruptGuard {
public:
    InterruptGuard();   // installs the handlers
    ~InterruptGuard();  // restores the previous ones
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;

    static bool requested();
};

}  // namespace moelab::core
