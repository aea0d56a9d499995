#include "core/data/file_fingerprint.h"

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/system/atomic_file.h"
#include "core/system/file_error.h"
#include "core/system/hash.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

// One line: "<size> <mtime in ns> <hash> <path>"; the path guards against a hash collision of
// the entry's name.
std::string entry_text(std::uintmax_t size, std::int64_t mtime, const std::string& hash,
                       const fs::path& file) {
    return fmt::format("{} {} {} {}\n", size, mtime, hash, file.string());
}

}  // namespace

std::string file_content_hash(const fs::path& file, const fs::path& cache_dir) {
    std::error_code error;
    const fs::path absolute = fs::weakly_canonical(fs::absolute(file), error);
    const fs::path& key_path = error ? file : absolute;
    const std::uintmax_t size = fs::file_size(file, error);
    if (error) throw FileError(file, "cannot be read: " + error.message());
    const auto written = fs::last_write_time(file, error);
    if (error) throw FileError(file, "cannot be read: " + error.message());
    const std::int64_t mtime =
        std::chrono::duration_cast<std::chrono::nanoseconds>(written.time_since_epoch()).count();

    const fs::path entry =
        cache_dir / "files" / (ContentHash().add(key_path.string()).hex() + ".txt");
    {
        std::ifstream in(entry);
        std::string line;
        if (in && std::getline(in, line)) {
            std::istringstream fields(line);
            std::uintmax_t cached_size = 0;
            std::int64_t cached_mtime = 0;
            std::string hash, path;
            fields >> cached_size >> cached_mtime >> hash;
            std::getline(fields >> std::ws, path);
            if (fields && cached_size == size && cached_mtime == mtime &&
                path == key_path.string() && hash.size() == 16) {
                return hash;
            }
        }
    }
    std::string hash;
    try {
        hash = ContentHash().add_file(file).hex();
    } catch (const std::runtime_error&) {
        throw FileError(file, "cannot be read: " + errno_text(errno));
    }
    try {
        write_file_atomically(entry, entry_text(size, mtime, hash, key_path));
    } catch (const std::exception&) {
        // A read-only cache still gives the right hash; the next start hashes again.
    }
    return hash;
}

}  // namespace moelab::core
