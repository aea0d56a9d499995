#include "core/system/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace moelab::core {

namespace {

std::string kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "is a directory";
    if (S_ISFIFO(mode)) return "is a FIFO (named pipe), not a regular file";
    if (S_ISCHR(mode)) return "is a character device, not a regular file";
    if (S_ISBLK(mode)) return "is a block device, not a regular file";
    if (S_ISSOCK(mode)) return "is a socket, not a regular file";
    return "is not a regular file";
}

std::string size_text(std::uint64_t bytes) {
    if (bytes >= (1ull << 30)) return fmt::format("{:.1f} GiB", bytes / double(1ull << 30));
    if (bytes >= (1ull << 20)) return fmt::format("{:.1f} MiB", bytes / double(1ull << 20));
    if (bytes >= (1ull << 10)) return fmt::format("{:.1f} KiB", bytes / double(1ull << 10));
    return fmt::format("{} bytes", bytes);
}

[[noreturn]] void fail(const std::filesystem::path& file, std::string_view /*what*/,
                       const std::string& reason) {
    throw FileError(file, reason);
}

}  // namespace

std::uint64_t regular_file_size(const std::filesystem::path& file, std::string_view what) {
    if (file.empty()) throw FileError(file, fmt::format("the path is empty (expected a {})", what));
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) {
        const int error = errno;
        if (error == ENOENT) fail(file, what, "does not exist");
        fail(file, what, fmt::format("cannot be examined: {}", errno_text(error)));
    }
    if (!S_ISREG(info.st_mode)) fail(file, what, kind_of(info.st_mode));
    return static_cast<std::uint64_t>(info.st_size);
}

std::string read_file(const std::filesystem::path& file, std::uint64_t max_bytes,
                      std::string_view what) {
    const std::uint64_t size = regular_file_size(file, what);
    if (size > max_bytes) {
        fail(file, what,
             fmt::format("is {}, more than the {} a {} may have", size_text(size),
                         size_text(max_bytes), what));
    }
    const int fd = ::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) fail(file, what, fmt::format("cannot be opened: {}", errno_text(errno)));
    // Re-check what was opened: the path may have been replaced since stat().
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        ::close(fd);
        fail(file, what, "changed while being opened and is no longer a regular file");
    }
    std::string text;
    text.resize(static_cast<std::size_t>(std::min<std::uint64_t>(size, max_bytes)));
    std::size_t used = 0;
    for (;;) {
        if (used == text.size()) {
            // The file may have grown; read on, up to the limit.
            if (text.size() >= max_bytes) {
                char probe = 0;
                const ssize_t extra = ::read(fd, &probe, 1);
                ::close(fd);
                if (extra > 0) {
                    fail(file, what,
                         fmt::format("grew past the {} a {} may have while being read",
                                     size_text(max_bytes), what));
                }
                return text;
            }
            text.resize(std::min<std::uint64_t>(max_bytes, std::max<std::size_t>(4096, 2 * used)));
        }
        const ssize_t n = ::read(fd, text.data() + used, text.size() - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int error = errno;
            ::close(fd);
            fail(file, what, fmt::format("cannot be read: {}", errno_text(error)));
        }
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    ::close(fd);
    text.resize(used);
    return text;
}

}  // namespace moelab::core
