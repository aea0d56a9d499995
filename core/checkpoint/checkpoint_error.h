#pragma once

// A checkpoint or one of its files is missing, damaged or inconsistent. The message names the file.

#include <stdexcept>

namespace moelab::core {

class CheckpointError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

}  // namespace moelab::core
