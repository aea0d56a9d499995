#include "core/dist/launch_environment.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "core/system/printable.h"

namespace moelab::core {

namespace {

int integer_variable(const char* name, const char* text, int low, int high) {
    const std::string_view value(text);
    long long parsed = 0;
    bool ok = !value.empty() && value.size() <= 9;
    for (char c : value) {
        ok = ok && c >= '0' && c <= '9';
        if (ok) parsed = parsed * 10 + (c - '0');
    }
    if (!ok || parsed < low || parsed > high) {
        throw std::invalid_argument(
            fmt::format("environment variable {}={}: expected an integer "
                        "in [{}, {}]",
                        name, printable(value), low, high));
    }
    return static_cast<int>(parsed);
}

}  // namespace

int free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        const std::string reason = std::strerror(errno);
        ::close(fd);
        throw std::runtime_error(fmt::format("no free port on 127.0.0.1: {}", reason));
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

std::optional<LaunchEnvironment> launch_environment(
    const std::function<const char*(const char*)>& lookup) {
    auto get = [&](const char* name) -> const char* {
        return lookup ? lookup(name) : std::getenv(name);
    };
    const char* world = get("WORLD_SIZE");
    if (world == nullptr) return std::nullopt;
    LaunchEnvironment env;
    env.world_size = integer_variable("WORLD_SIZE", world, 1, 1 << 20);
    const char* rank = get("RANK");
    if (rank == nullptr) {
        throw std::invalid_argument(
            "environment variable WORLD_SIZE is set but RANK is not: start every process with "
            "its RANK (torchrun and moelab launch do)");
    }
    env.rank = integer_variable("RANK", rank, 0, env.world_size - 1);
    if (const char* local_world = get("LOCAL_WORLD_SIZE")) {
        env.local_world_size = integer_variable("LOCAL_WORLD_SIZE", local_world, 1, env.world_size);
    }
    if (const char* local = get("LOCAL_RANK")) {
        env.local_rank = integer_variable(
            "LOCAL_RANK", local, 0,
            (get("LOCAL_WORLD_SIZE") != nullptr ? env.local_world_size : env.world_size) - 1);
    }
    if (const char* restarts = get("TORCHELASTIC_RESTART_COUNT")) {
        env.restart_count = integer_variable("TORCHELASTIC_RESTART_COUNT", restarts, 0, 1 << 20);
    }
    if (const char* agent = get("TORCHELASTIC_USE_AGENT_STORE")) {
        const std::string_view value(agent);
        env.agent_store = value == "True" || value == "true" || value == "1";
        if (!env.agent_store && value != "False" && value != "false" && value != "0") {
            throw std::invalid_argument(
                fmt::format("environment variable TORCHELASTIC_USE_AGENT_STORE={}: expected True "
                            "or False",
                            printable(value)));
        }
    }
    if (const char* file = get("MOELAB_FILE_STORE"); file != nullptr && *file != '\0') {
        env.file_store = file;
        return env;
    }
    const char* addr = get("MASTER_ADDR");
    const char* port = get("MASTER_PORT");
    if (env.world_size > 1 && (addr == nullptr || *addr == '\0' || port == nullptr)) {
        throw std::invalid_argument(
            "environment variables MASTER_ADDR and MASTER_PORT must name the rendezvous (the TCP "
            "store) of a job with WORLD_SIZE > 1; torchrun and moelab launch set them");
    }
    if (addr != nullptr) env.master_addr = addr;
    if (port != nullptr) env.master_port = integer_variable("MASTER_PORT", port, 1, 65535);
    return env;
}

}  // namespace moelab::core
