#pragma once

// The torch side of the grouped SwiGLU expert family: describes tensors as a GroupedSwigluDesc,
// and runs the kernel chosen for it. The only place where kernels meet tensors.

#include <cstdint>
#include <string_view>
#include <vector>

#include <ATen/ATen.h>

#include "kernels/binding/weight_casts.h"
#include "moelab/kernels/grouped_swiglu.h"

namespace moelab::kernels {

// The rows of one call, grouped by expert (the expert bank's routing plan): row r reads token[r]
// of x and adds weight[r] times its expert's output into that token's output row. Expert e owns
// rows [group_ends[e - 1], group_ends[e]) (from 0 for e = 0); rows from group_ends[experts - 1]
// on are not routed (empty slots, capacity drops) and every kernel ignores them. The plan stays
// on the device of x, so a kernel that reads the group ends there never waits for the host.
struct RoutedRows {
    at::Tensor token;       // (rows,) int64, each routed one in [0, tokens)
    at::Tensor weight;      // (rows,) routing weights; gradients flow into them
    at::Tensor group_ends;  // (experts,) int64, non-decreasing, at most rows
};

// Rows per expert from group_ends, read on the host (a synchronisation on CUDA): for kernels that
// loop over experts on the host. Throws std::invalid_argument unless the ends are non-decreasing
// from 0 and at most `rows`.
std::vector<std::int64_t> host_group_counts(const at::Tensor& group_ends, std::int64_t rows);

// group_ends for rows grouped by `counts` (tests, benchmarks).
at::Tensor group_ends_of(const std::vector<std::int64_t>& counts, const at::Device& device);

// Fills in what the platform offers for `desc.backend`: the compute capability of CUDA device
// `device` (-1: the current one; none when no GPU is visible) and whether this build can run
// at::_grouped_mm there. Called by describe_grouped_swiglu, and by the recipe check before any
// tensor exists.
void describe_platform(GroupedSwigluDesc& desc, int device = -1);

// The case `x` (tokens, d_model), `w_in` (experts, d_model, 2 d_ff) and `w_out`
// (experts, d_ff, d_model) pose, on this platform, with the compute dtype of the current autocast
// state. Throws std::invalid_argument when the shapes disagree.
GroupedSwigluDesc describe_grouped_swiglu(const at::Tensor& x, const at::Tensor& w_in,
                                          const at::Tensor& w_out);

// Runs `kernel`: out[t] = sum over rows r with token[r] = t of weight[r] * SwiGLU_e(r)(x[t]),
// (tokens, d_model) in the dtype of x. Throws std::invalid_argument when the plan does not fit
// the tensors or the kernel cannot implement the case, with its reason.
// `casts`: where a kernel that multiplies in another dtype than the weights' keeps its copies of
// them across calls (the caller's, one per set of weights); null: cast on every call.
at::Tensor run_grouped_swiglu(const GroupedSwigluKernel& kernel, const at::Tensor& x,
                              const RoutedRows& routed, const at::Tensor& w_in,
                              const at::Tensor& w_out, WeightCasts* casts = nullptr);

// The same for the kernel `name` ("auto" or a kernel's name) chooses for the case, describing the
// tensors once: what the expert bank calls on every step.
at::Tensor run_grouped_swiglu(std::string_view name, const at::Tensor& x, const RoutedRows& routed,
                              const at::Tensor& w_in, const at::Tensor& w_out,
                              WeightCasts* casts = nullptr);

}  // namespace moelab::kernels
