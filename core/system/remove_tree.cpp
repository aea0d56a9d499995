#include "core/system/remove_tree.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace moelab::core {

namespace {

thread_local std::string g_failed_entry;

int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
    const int result = (type == FTW_DP) ? ::rmdir(path) : ::unlink(path);
    if (result != 0 && errno != ENOENT) {
        g_failed_entry = std::string(path) + ": " + std::strerror(errno);
        return -1;
    }
    return 0;
}

}  // namespace

void remove_tree(const std::filesystem::path& path) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0) return;  // nothing there
    if (!S_ISDIR(info.st_mode)) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            throw std::runtime_error("cannot remove " + path.string() + ": " +
                                     std::strerror(errno));
        }
        return;
    }
    g_failed_entry.clear();
    if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        throw std::runtime_error("cannot remove " +
                                 (g_failed_entry.empty() ? path.string() : g_failed_entry));
    }
}

}  // namespace moelab::core
