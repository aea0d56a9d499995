#pragma once

// An all-to-all that autograd can go through: LibTorch 1.13 has none in C++, and 2.x only in its
// functional collectives. The gradient of "send rows, receive rows" is the same exchange with the
// two directions swapped: each row's gradient goes back to the process the row came from.

#include <cstdint>
#include <vector>

#include "core/dist/process_group.h"

namespace moelab::core {

// ProcessGroup::all_to_all, differentiable in `input`. `group` must outlive the backward pass.
at::Tensor differentiable_all_to_all(ProcessGroup& group, const at::Tensor& input,
                                     const std::vector<std::int64_t>& send_rows,
                                     const std::vector<std::int64_t>& receive_rows);

}  // namespace moelab::core
