#include "core/train/interrupt.h"

#include <csignal>

namespace moelab::core {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
struct sigaction g_previous_int;
struct sigaction g_previous_term;

void on_signal(int) { g_interrupted = 1; }

}  // namespace

InterruptGuard::InterruptGuard() {
    g_interrupted = 0;
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &g_previous_int);
    sigaction(SIGTERM, &action, &g_previous_term);
}

InterruptGuard::~InterruptGuard() {
    sigaction(SIGINT, &g_previous_int, nullptr);
    sigaction(SIGTERM, &g_previous_term, nullptr);
}

bool InterruptGuard::requested() { return g_interrupted != 0; }

}  // namespace moelab::core
