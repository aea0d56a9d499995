#include "tools/bench/bench_args.h"

#include <algorithm>
#include <charconv>

namespace moelab::bench {

BenchArgs::BenchArgs(int argc, const char* const* argv, int positionals,
                     std::vector<std::string> flags) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            help_ = true;
            return;
        }
    }
    if (argc - 1 < positionals) {
        throw BenchUsageError("expected " + std::to_string(positionals) +
                              " positional argument(s) before the flags, got " +
                              std::to_string(argc - 1) + " argument(s)");
    }
    for (int i = 1; i <= positionals; ++i) {
        if (std::string(argv[i]).rfind("--", 0) == 0) {
            throw BenchUsageError("expected a positional argument before the flags, got '" +
                                  std::string(argv[i]) + "'");
        }
        positionals_.emplace_back(argv[i]);
    }
    for (int i = positionals + 1; i < argc; i += 2) {
        const std::string flag = argv[i];
        if (std::find(flags.begin(), flags.end(), flag) == flags.end()) {
            std::string known;
            for (const std::string& f : flags) known += (known.empty() ? "" : ", ") + f;
            throw BenchUsageError("unknown argument '" + flag + "' (expected one of " + known +
                                  ")");
        }
        if (i + 1 >= argc) throw BenchUsageError(flag + " needs a value");
        values_[flag].emplace_back(argv[i + 1]);
    }
}

std::string BenchArgs::text(const std::string& flag, const std::string& fallback) const {
    const auto it = values_.find(flag);
    return it == values_.end() ? fallback : it->second.back();
}

std::int64_t BenchArgs::integer(const std::string& flag, std::int64_t fallback,
                                std::int64_t min) const {
    const auto it = values_.find(flag);
    if (it == values_.end()) return fallback;
    const std::string& text = it->second.back();
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < min) {
        throw BenchUsageError(flag + ": expected a whole number of at least " +
                              std::to_string(min) + ", got '" + text + "'");
    }
    return value;
}

std::vector<std::string> BenchArgs::all(const std::string& flag) const {
    const auto it = values_.find(flag);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

}  // namespace moelab::bench
