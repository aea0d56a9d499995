#include "rank_processes.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "subprocess.h"
#include "temp_dir.h"

namespace moelab::tests {

int rank_of_this_process() {
    const char* rank = std::getenv("MOELAB_TEST_RANK");
    return rank == nullptr ? -1 : std::atoi(rank);
}

bool in_rank_process(int processes, int timeout_seconds) {
    if (rank_of_this_process() >= 0) return true;
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string filter = std::string(test->test_suite_name()) + "." + test->name();
    char self[4096];
    const ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (length <= 0) {
        ADD_FAILURE() << "cannot find the test binary";
        return false;
    }
    self[length] = '\0';
    TempDir dir("moelab-ranks");
    std::string script;
    for (int r = 0; r < processes; ++r) {
        const std::string out = (dir / ("out." + std::to_string(r))).string();
        const std::string rc = (dir / ("rc." + std::to_string(r))).string();
        script += "(env MOELAB_TEST_RANK=" + std::to_string(r) + " RANK=" + std::to_string(r) +
                  " LOCAL_RANK=" + std::to_string(r) + " WORLD_SIZE=" + std::to_string(processes) +
                  " MOELAB_FILE_STORE=" + shell_quote((dir / "store").string()) + " timeout " +
                  std::to_string(timeout_seconds) + " " + shell_quote(self) + " " +
                  shell_quote("--gtest_filter=" + filter) + " > " + shell_quote(out) +
                  " 2>&1; echo $? > " + shell_quote(rc) + ") & ";
    }
    script += "wait";
    run_command(script);
    for (int r = 0; r < processes; ++r) {
        const std::string rc = read_text(dir / ("rc." + std::to_string(r)));
        EXPECT_EQ(rc, "0\n") << "rank " << r << " of " << filter << " exited with " << rc
                             << "; its output:\n"
                             << read_text(dir / ("out." + std::to_string(r)));
    }
    return false;
}

}  // namespace moelab::tests
