// Replays fuzz inputs through a harness without libFuzzer: `<target>_replay FILE_OR_DIRECTORY...`
// feeds each file, and each regular file of each directory (in name order; names starting with
// '.', such as .gitkeep, are skipped), to LLVMFuzzerTestOneInput. This is how the seed corpora
// and the saved regressions of tests/fuzz run as ctest tests in the main build. A crash, a trap or
// an escaping exception fails the test; the file name is printed first, so the log says which
// input it was.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "harness.h"

namespace {

namespace fs = std::filesystem;

bool read_whole(const fs::path& file, std::vector<std::uint8_t>& bytes) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return false;
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s FILE_OR_DIRECTORY...\n", argv[0]);
        return 2;
    }
    std::vector<fs::path> files;
    for (int i = 1; i < argc; ++i) {
        const fs::path arg = argv[i];
        std::error_code error;
        if (fs::is_directory(arg, error)) {
            std::vector<fs::path> entries;
            for (const fs::directory_entry& entry : fs::directory_iterator(arg, error)) {
                const std::string name = entry.path().filename().string();
                if (entry.is_regular_file() && !name.starts_with('.')) {
                    entries.push_back(entry.path());
                }
            }
            std::sort(entries.begin(), entries.end());
            files.insert(files.end(), entries.begin(), entries.end());
        } else if (fs::is_regular_file(arg, error)) {
            files.push_back(arg);
        }
        // A misspelled path must not pass as "nothing to replay".
        if (error || !fs::exists(arg)) {
            std::fprintf(stderr, "%s: no such file or directory\n", arg.c_str());
            return 2;
        }
    }
    std::vector<std::uint8_t> bytes;
    for (const fs::path& file : files) {
        std::printf("%s\n", file.c_str());
        std::fflush(stdout);
        if (!read_whole(file, bytes)) {
            std::fprintf(stderr, "%s: cannot be read\n", file.c_str());
            return 1;
        }
        // An exact-size heap copy, as libFuzzer passes it: a read past the end stays detectable
        // with sanitizers and is never satisfied by a spare byte of the vector's capacity.
        const std::vector<std::uint8_t> input(bytes.begin(), bytes.end());
        LLVMFuzzerTestOneInput(input.data(), input.size());
    }
    std::printf("%zu inputs replayed\n", files.size());
    return 0;
}
