#include "core/system/read_file.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moelab::core {

std::string read_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + file.string());
    std::stringstream text;
    text << in.rdbuf();
    if (in.bad()) throw std::runtime_error("error while reading " + file.string());
    return text.str();
}

}  // namespace moelab::core
