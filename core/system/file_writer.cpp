#include "core/system/file_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "core/system/file_error.h"

namespace moelab::core {

FileWriter::FileWriter(std::filesystem::path file) : file_(std::move(file)) {
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw FileError(file_, "cannot be created: " + errno_text(errno));
}

FileWriter::~FileWriter() {
    if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, std::size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        const ssize_t n = ::write(fd_, p, bytes);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw FileError(file_, "cannot be written: " + errno_text(errno));
        }
        p += n;
        bytes -= static_cast<std::size_t>(n);
    }
}

void FileWriter::write_at(std::uint64_t offset, const void* data, std::size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        const ssize_t n = ::pwrite(fd_, p, bytes, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw FileError(file_, "cannot be written: " + errno_text(errno));
        }
        p += n;
        offset += static_cast<std::uint64_t>(n);
        bytes -= static_cast<std::size_t>(n);
    }
}

void FileWriter::start_writeback(std::uint64_t offset, std::uint64_t bytes) {
#if defined(__linux__)
    // Only a hint: a failure here (a file system without it) leaves the work to sync().
    (void)::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes),
                            SYNC_FILE_RANGE_WRITE);
#endif
}

void FileWriter::sync() {
    while (::fsync(fd_) != 0) {
        if (errno != EINTR) throw FileError(file_, "cannot be synced: " + errno_text(errno));
    }
}

void FileWriter::close() {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) {
        throw FileError(file_, "cannot be written: " + errno_text(errno));
    }
}

}  // namespace moelab::core
