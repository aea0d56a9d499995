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
    // Creates or truncates `file`. With writeback_bytes > 0 the system is asked to start writing
    // the file to the disk every writeback_bytes written, without waiting for it (Linux; elsewhere
    // nothing): a large file's final sync() then waits only for its tail, the disk having worked
    // while the rest was produced.
    explicit FileWriter(std::filesystem::path file, std::uint64_t writeback_bytes = 0);
    ~FileWriter();
    FileWriter(const FileWriter&) = delete;
    FileWriter& operator=(const FileWriter&) = delete;

    void write(const void* data, std::size_t bytes);
    // Overwrites bytes already written, from `offset` (a header filled in last).
    void write_at(std::uint64_t offset, const void* data, std::size_t bytes);
    // Waits until everything written is on the disk (fsync).
    void sync();
    // Closes the file, reporting a failure of close() (NFS and some file systems report write
    // errors only there). The destructor closes silently if this was not called.
    void close();

  private:
    std::filesystem::path file_;
    int fd_ = -1;
    std::uint64_t writeback_bytes_;
    std::uint64_t written_ = 0;         // by write()
    std::uint64_t writeback_from_ = 0;  // where writeback was last asked for
};

}  // namespace moelab::core
