#pragma once

#include <stdexcept>
#include <string>

namespace moelab::sdk {

// Throw this from plugin code for errors a user can act on (bad parameter combinations, shapes
// that do not fit). The host catches every exception that leaves a plugin call and reports it
// together with the plugin's name and file; an sdk::Error's message is shown as the cause.
class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace moelab::sdk
