#pragma once

// Content hashes of corpus files without rereading them: the hash of a file is remembered under
// the cache directory with the file's size and modification time, and reused while both are
// unchanged, so a warm start reads file metadata and nothing else. A file rewritten with the same
// size within one modification-time tick is not noticed (the caveat of make and rsync);
// `moelab data prepare --rehash` (to come) rehashes everything.

#include <filesystem>
#include <string>

namespace moelab::core {

// ContentHash().add_file(file).hex(), remembered in cache_dir/files/. Throws FileError when the
// file cannot be read; a cache entry that cannot be written is skipped (the hash is still right).
std::string file_content_hash(const std::filesystem::path& file,
                              const std::filesystem::path& cache_dir);

}  // namespace moelab::core
