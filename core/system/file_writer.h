#pragma once

// Writing a file with every failure reported as a FileError carrying errno's reason ("No space
// left on device"), which std::ofstream cannot tell. Nothing is synced unless sync() is called:
// callers that publish files atomically sync them first (token shards call sync(); atomic_file.h
// syncs its own).

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace moelab::core {

class FileWriter {
  public:
    // Creates or truncates `file`.
    explicit FileWriter(std::filesystem::path file);
    ~FileWriter();
    FileWriter(const FileWriter&) = delete;
    FileWriter& operator=(const FileWriter&) = delete;

    void write(const void* data, std::size_t bytes);
    // Overwrites bytes already written, from `offset` (a header filled in last).
    void write_at(std::uint64_t offset, const void* data, std::size_t bytes);
    // Asks the system to start writing `bytes` of the file from `offset` to the disk, without
    // waiting for it (Linux; elsewhere nothing): a large file's final sync() then waits only for
    // its tail instead of the whole file, the disk having worked while the rest was produced.
    void start_writeback(std::uint64_t offset, std::uint64_t bytes);
    // Waits until everything written is on the disk (fsync).
    void sync();
    // Closes the file, reporting a failure of close() (NFS and some file systems report write
    // errors only there). The destructor closes silently if this was not called.
    void close();

  private:
    std::filesystem::path file_;
    int fd_ = -1;
};

}  // namespace moelab::core
