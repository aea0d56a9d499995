#include "core/system/file_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "core/system/file_error.h"

namespace moelab::core {

FileWriter::FileWriter(std::filesystem::path file, std::uint64_t writeback_bytes)
    : file_(std::move(file)), writeback_bytes_(writeback_bytes) {
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw FileError(file_, "cannot be created: " + errno_text(errno));
}

FileWriter::~FileWriter() {
    if (fd_ >= 0) ::close(fd_);
}

namespace {

// Calls write_some(data, bytes, done) until all `bytes` are written, done being how many already
// are; write_some returns what write(2)/pwrite(2) return. Retries on EINTR.
template <class WriteSome>
void write_all(const std::filesystem::path& file, const void* data, std::size_t bytes,
               WriteSome&& write_some) {
    const char* p = static_cast<const char*>(data);
    for (std::size_t done = 0; done < bytes;) {
        const ssize_t n = write_some(p + done, bytes - done, done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw FileError(file, "cannot be written: " + errno_text(errno));
        }
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace

void FileWriter::write(const void* data, std::size_t bytes) {
    write_all(file_, data, bytes, [this](const char* p, std::size_t left, std::size_t) {
        return ::write(fd_, p, left);
    });
    written_ += bytes;
    if (writeback_bytes_ > 0 && written_ - writeback_from_ >= writeback_bytes_) {
#if defined(__linux__)
        // Only a hint: a failure here (a file system without it) leaves the work to sync().
        (void)::sync_file_range(fd_, static_cast<off_t>(writeback_from_),
                                static_cast<off_t>(written_ - writeback_from_),
                                SYNC_FILE_RANGE_WRITE);
#endif
        writeback_from_ = written_;
    }
}

void FileWriter::write_at(std::uint64_t offset, const void* data, std::size_t bytes) {
    write_all(file_, data, bytes,
              [this, offset](const char* p, std::size_t left, std::size_t done) {
                  return ::pwrite(fd_, p, left, static_cast<off_t>(offset + done));
              });
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
