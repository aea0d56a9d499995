#pragma once

// Writing a file with every failure reported as a FileError carrying errno's reason ("No space
// left on device"), which std::ofstream cannot tell. The file is not synced: callers that publish
// files atomically fsync them (atomic_file.h).

#include <cstddef>
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
    // Closes the file, reporting a failure of close() (NFS and some file systems report write
    // errors only there). The destructor closes silently if this was not called.
    void close();

  private:
    std::filesystem::path file_;
    int fd_ = -1;
};

}  // namespace moelab::core
