// SDK public headers may include only the standard library, LibTorch (torch/, ATen/, c10/) and
// other SDK headers: a plugin author pulls in nothing else. (That each header compiles alone is
// checked by building tests/sdk's self_contained targets.)

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

namespace {

namespace fs = std::filesystem;

const std::set<std::string> kStandardHeaders = {
    "algorithm",   "cmath",  "cstddef", "cstdint",     "exception", "functional", "limits",
    "map",         "memory", "mutex",   "optional",    "span",      "stdexcept",  "string",
    "string_view", "thread", "tuple",   "type_traits", "utility",   "variant",    "vector"};

TEST(SdkHeaders, IncludeOnlyStandardLibraryLibTorchAndSdk) {
    const fs::path dir = fs::path(MOELAB_SOURCE_DIR) / "sdk" / "include" / "moelab" / "sdk";
    const std::regex include_line(R"(^\s*#\s*include\s*([<"])([^>"]+)[>"])");
    int headers = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        ++headers;
        std::ifstream in(entry.path());
        for (std::string line; std::getline(in, line);) {
            std::smatch match;
            if (!std::regex_search(line, match, include_line)) continue;
            const std::string delimiter = match[1];
            const std::string header = match[2];
            if (delimiter == "\"") {
                EXPECT_EQ(header.rfind("moelab/sdk/", 0), 0u)
                    << entry.path().filename() << " includes \"" << header << "\"";
                continue;
            }
            const bool torch = header.rfind("torch/", 0) == 0 || header.rfind("ATen/", 0) == 0 ||
                               header.rfind("c10/", 0) == 0;
            EXPECT_TRUE(torch || kStandardHeaders.count(header))
                << entry.path().filename() << " includes <" << header << ">";
        }
    }
    EXPECT_GE(headers, 15);
}

}  // namespace
