#pragma once

// The rows of each token, for an ordered combine on the device: out[t] adds the rows of token t in
// ascending row order, so a kernel's result does not depend on how its threads are scheduled.
// Computed with a stable sort and a binary search on the device of the plan (no host
// synchronisation, unlike the CPU's counting sort in kernels/cpu/grouped_swiglu_cpu.h, which
// reads the plan where it lies).

#include <cstdint>

#include <ATen/ATen.h>

namespace moelab::kernels::binding {

struct RowsByToken {
    at::Tensor
        token_offsets;  // (tokens + 1,) int64: token t's rows are [offsets[t], offsets[t + 1])
    at::Tensor rows_of_token;  // (rows,) int64: routed rows by token, ascending; then the others
};

// token: (rows,) int64, valid for the routed rows (before group_ends[experts - 1]); the rows
// after them are left out whatever their token.
RowsByToken rows_by_token(const at::Tensor& token, const at::Tensor& group_ends,
                          std::int64_t tokens);

}  // namespace moelab::kernels::binding
