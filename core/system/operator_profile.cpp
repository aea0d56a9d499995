#include "core/system/operator_profile.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

namespace moelab::core {

namespace {

std::atomic<OperatorProfile*> installed{nullptr};

using Clock = std::chrono::steady_clock;

// The operators open on this thread, innermost last: each collects the time of those inside it.
struct OpenOperator : at::ObserverContext {
    Clock::time_point start;
    double inside = 0;
};
thread_local std::vector<OpenOperator*> open_operators;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction&) {
    OperatorProfile* profile = installed.load(std::memory_order_acquire);
    if (profile == nullptr || !profile->profiles_this_thread()) return nullptr;
    auto open = std::make_unique<OpenOperator>();
    open_operators.push_back(open.get());
    open->start = Clock::now();
    return open;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
    auto* open = static_cast<OpenOperator*>(context);
    if (open == nullptr) return;
    const double total = std::chrono::duration<double>(Clock::now() - open->start).count();
    // Operators end in the order they started, innermost first.
    if (!open_operators.empty() && open_operators.back() == open) open_operators.pop_back();
    if (!open_operators.empty()) open_operators.back()->inside += total;
    OperatorProfile* profile = installed.load(std::memory_order_acquire);
    if (profile != nullptr) profile->add(fn.name(), total, std::max(0.0, total - open->inside));
}

}  // namespace

OperatorProfile::OperatorProfile(bool recording)
    : thread_(std::this_thread::get_id()), recording_(recording), start_(Clock::now()) {
    OperatorProfile* expected = nullptr;
    if (!installed.compare_exchange_strong(expected, this)) {
        throw std::logic_error("an operator profile is installed already");
    }
    try {
        callback_ = at::addGlobalCallback(
            at::RecordFunctionCallback(&on_start, &on_end).scopes({at::RecordScope::FUNCTION}));
    } catch (...) {
        installed.store(nullptr, std::memory_order_release);
        throw;
    }
}

OperatorProfile::~OperatorProfile() {
    at::removeCallback(callback_);
    installed.store(nullptr, std::memory_order_release);
    open_operators.clear();
}

void OperatorProfile::add(const char* name, double total, double self) {
    Row& row = rows_[name];
    if (row.name.empty()) row.name = name;
    ++row.calls;
    row.total_seconds += total;
    row.self_seconds += self;
}

std::vector<OperatorProfile::Row> OperatorProfile::rows() const {
    std::vector<Row> rows;
    rows.reserve(rows_.size());
    for (const auto& [name, row] : rows_) rows.push_back(row);
    std::stable_sort(rows.begin(), rows.end(),
                     [](const Row& a, const Row& b) { return a.self_seconds > b.self_seconds; });
    return rows;
}

void OperatorProfile::begin() {
    start_ = Clock::now();
    recording_ = true;
}

void OperatorProfile::end() {
    if (!recording_) return;
    recorded_seconds_ += std::chrono::duration<double>(Clock::now() - start_).count();
    recording_ = false;
}

double OperatorProfile::seconds() const {
    return recorded_seconds_ +
           (recording_ ? std::chrono::duration<double>(Clock::now() - start_).count() : 0.0);
}

nlohmann::json OperatorProfile::to_json() const {
    nlohmann::json operators = nlohmann::json::array();
    for (const Row& row : rows()) {
        operators.push_back({{"name", row.name},
                             {"calls", row.calls},
                             {"self_seconds", row.self_seconds},
                             {"total_seconds", row.total_seconds}});
    }
    return {{"seconds", seconds()}, {"operators", operators}};
}

std::string OperatorProfile::table(std::size_t top) const {
    const double wall = seconds();
    std::string text = fmt::format("{:<40} {:>8} {:>10} {:>10} {:>6}\n", "operator (self time)",
                                   "calls", "self ms", "total ms", "share");
    const std::vector<Row> sorted = rows();
    for (std::size_t i = 0; i < sorted.size() && i < top; ++i) {
        const Row& row = sorted[i];
        // Backward nodes read "backward: <node>", long names are cut (operators.json has them all).
        std::string name = row.name;
        const std::string engine = "autograd::engine::evaluate_function: ";
        if (name.rfind(engine, 0) == 0) name.replace(0, engine.size(), "backward: ");
        // A custom function's node by its class alone: "backward: GroupedSwiGLUFunction".
        const std::string cpp_node = "torch::autograd::CppNode<";
        const std::size_t node = name.find(cpp_node);
        if (node != std::string::npos && name.back() == '>') {
            std::string inner =
                name.substr(node + cpp_node.size(), name.size() - node - cpp_node.size() - 1);
            const std::size_t last = inner.rfind("::");
            if (last != std::string::npos) inner.erase(0, last + 2);
            name.replace(node, std::string::npos, inner);
        }
        if (name.size() > 40) {
            name.resize(37);
            name.append(3, '.');
        }
        text += fmt::format("{:<40} {:>8} {:>10.1f} {:>10.1f} {:>5.1f}%\n", name, row.calls,
                            1e3 * row.self_seconds, 1e3 * row.total_seconds,
                            wall > 0 ? 100 * row.self_seconds / wall : 0.0);
    }
    return text;
}

}  // namespace moelab::core
