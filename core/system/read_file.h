#pragma once

// Every file moelab opens for reading goes through here. Note [Reading untrusted paths]: a path in
// a recipe or on the command line can name anything: a directory, a FIFO (opening it blocks until
// a writer appears), /dev/zero (never ends), a file far larger than any recipe. So a file is
// stat()ed before it is opened, only regular files are opened (non-blocking, so that a FIFO
// swapped in between cannot hang us), and reads stop at a size limit chosen by the caller for what
// the file should be. Errors say which file, what it is, and what was expected, with errno's
// text; they never leak std::filesystem's or iostream's wording.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/system/file_error.h"

namespace moelab::core {

// Size limits of the files a run reads whole. A recipe or state file beyond these is not one.
inline constexpr std::uint64_t kMaxRecipeBytes = 4u << 20;         // recipes, --set files
inline constexpr std::uint64_t kMaxSmallFileBytes = 64u << 20;     // state.json, summaries
inline constexpr std::uint64_t kMaxTokenizerBytes = 1u << 30;      // tokenizer files
inline constexpr std::uint64_t kMaxCorpusFileBytes = 64ull << 30;  // one corpus split
inline constexpr std::uint64_t kMaxCheckpointFileBytes = 1ull << 40;

// The size of `file`, which must be an existing regular file (symbolic links are followed).
// FileError otherwise, whose reason() is "does not exist", "is a directory", "is a FIFO (named
// pipe), not a regular file", "cannot be examined: File name too long", ... `what` names the role
// of the file ("recipe file", "checkpoint file") where the reason needs it (size limits).
std::uint64_t regular_file_size(const std::filesystem::path& file, std::string_view what = "file");

// The whole of `file` (a regular file of at most `max_bytes`). FileError otherwise.
std::string read_file(const std::filesystem::path& file,
                      std::uint64_t max_bytes = kMaxSmallFileBytes, std::string_view what = "file");

}  // namespace moelab::core
