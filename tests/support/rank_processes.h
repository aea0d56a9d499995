#pragma once

// Multi-process tests: the test binary runs the current test again in N processes that form one
// job (RANK, WORLD_SIZE and a file store, as the launcher would set them up), and the test passes
// when every process passes. A test body starts with
//
//     if (!moelab::tests::in_rank_process(2)) return;  // the parent: children ran and passed
//     ... the body, as the process of rank rank_of_this_process() ...
//
// so the body runs only inside the children; a failing child's output is shown by the parent.

namespace moelab::tests {

bool in_rank_process(int processes, int timeout_seconds = 120);

int rank_of_this_process();

}  // namespace moelab::tests
