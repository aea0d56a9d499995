#pragma once

// A file or directory could not be used: the message is "<path>: <reason>", with the path made
// printable (escaped, shortened) and the reason in words, with errno's text where there is one.

#include <filesystem>
#include <stdexcept>
#include <string>

namespace moelab::core {

class FileError : public std::runtime_error {
  public:
    FileError(std::filesystem::path path, std::string reason);
    const std::filesystem::path& path() const { return path_; }
    const std::string& reason() const { return reason_; }

  private:
    std::filesystem::path path_;
    std::string reason_;
};

// A path for messages: escaped (control characters as \n, \x01) and, past 160 characters,
// shortened in the middle with the full length given.
std::string printable_path(const std::filesystem::path& path);

// strerror(errno_value), thread-safe.
std::string errno_text(int errno_value);

}  // namespace moelab::core
