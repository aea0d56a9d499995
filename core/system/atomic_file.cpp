#include "core/system/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace moelab::core {

void sync_path(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
        throw std::runtime_error("cannot open " + path.string() + " to sync: " +
                                 std::strerror(errno));
    }
    const int result = ::fsync(fd);
    ::close(fd);
    if (result != 0) {
        throw std::runtime_error("fsync of " + path.string() + " failed: " + std::strerror(errno));
    }
}

void write_file_atomically(const std::filesystem::path& file, std::string_view contents) {
    const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
    std::filesystem::create_directories(dir);
    std::string tmp_name = ".";  // appended, not "." + ...: GCC 12 -O3 false -Wstringop-overflow
    tmp_name += file.filename().string();
    tmp_name += ".tmp.";
    tmp_name += std::to_string(::getpid());
    const std::filesystem::path tmp = dir / tmp_name;
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        throw std::runtime_error("cannot create " + tmp.string() + ": " + std::strerror(errno));
    }
    std::size_t written = 0;
    while (written < contents.size()) {
        const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            const std::string error = std::strerror(errno);
            ::close(fd);
            std::filesystem::remove(tmp);
            throw std::runtime_error("cannot write " + tmp.string() + ": " + error);
        }
        written += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        std::filesystem::remove(tmp);
        throw std::runtime_error("cannot flush " + tmp.string() + ": " + std::strerror(errno));
    }
    std::filesystem::rename(tmp, file);
    sync_path(dir);
}

}  // namespace moelab::core
