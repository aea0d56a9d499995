#pragma once

// The `grouped_cuda` kernel's matrix products as grouped GEMM problems over raw pointers
// (kernels/cuda/grouped_gemm_tile.h), built here once for the CUDA launchers and the CPU tests
// alike. With h = [g | u] = x W_in, a = w SiLU(g) u, y = a W_out (Note [Grouped SwiGLU backward]
// in kernels/cpu/grouped_swiglu_cpu.cpp):
//   forward   gate_up: pre = x[token] W_in_e, act = w SiLU(g) u   (gather in the loads, SwiGLU
//                      and the routing weight in the epilogue)
//             down:    expert_rows = act W_out_e                  (then the ordered combine)
//   backward  grad_act:  da = dy[token] W_out_e^T
//             (the SwiGLU backward: kernels/cuda/swiglu_rows_cuda.h)
//             grad_rows: dx_rows = d_pre W_in_e^T                 (then the ordered combine)
//             grad_w_out: dW_out_e = act_e^T dy[token_e]
//             grad_w_in:  dW_in_e = x[token_e]^T d_pre_e
// Row buffers have a row for every slot of the plan; only the routed rows are read or written.
// C++17 (nvcc).

#include <cstdint>

#include "kernels/cuda/grouped_gemm_tile.h"

namespace moelab::kernels::cuda {

struct SwigluPlan {
    std::int64_t tokens = 0, rows = 0, experts = 0, d_model = 0, d_ff = 0;
    const std::int64_t* token = nullptr;              // rows: the token each row reads
    const std::int64_t* group_ends = nullptr;         // experts, on the device
    tile::Element element = tile::Element::kFloat32;  // of x, dy and the row buffers
};

inline tile::GemmProblem rows_problem(const SwigluPlan& plan) {
    tile::GemmProblem p;
    p.group_ends = plan.group_ends;
    p.experts = plan.experts;
    return p;
}

// pre (rows x 2 d_ff) and act (rows x d_ff), element type; weight float32.
inline tile::GemmProblem gate_up_step(const SwigluPlan& plan, const void* x, const float* w_in,
                                      const float* weight, void* pre, void* act) {
    tile::GemmProblem p = rows_problem(plan);
    p.a = {x, plan.element, plan.d_model, 0, plan.token, false};
    p.b = {w_in, tile::Element::kFloat32, 2 * plan.d_ff, plan.d_model * 2 * plan.d_ff, nullptr,
           false};
    p.columns = plan.d_ff;
    p.depth = plan.d_model;
    p.epilogue = tile::Epilogue::kSwiglu;
    p.c = {pre, plan.element, 2 * plan.d_ff, 0};
    p.act = {act, plan.element, plan.d_ff, 0};
    p.weight = weight;
    return p;
}

// expert_rows: rows x d_model, float32.
inline tile::GemmProblem down_step(const SwigluPlan& plan, const void* act, const float* w_out,
                                   float* expert_rows) {
    tile::GemmProblem p = rows_problem(plan);
    p.a = {act, plan.element, plan.d_ff, 0, nullptr, false};
    p.b = {w_out, tile::Element::kFloat32, plan.d_model, plan.d_ff * plan.d_model, nullptr, false};
    p.columns = plan.d_model;
    p.depth = plan.d_ff;
    p.c = {expert_rows, tile::Element::kFloat32, plan.d_model, 0};
    return p;
}

// grad_out: tokens x d_model; grad_act: rows x d_ff; both element type.
inline tile::GemmProblem grad_act_step(const SwigluPlan& plan, const void* grad_out,
                                       const float* w_out, void* grad_act) {
    tile::GemmProblem p = rows_problem(plan);
    p.a = {grad_out, plan.element, plan.d_model, 0, plan.token, false};
    // B(k, n) = W_out_e(n, k)
    p.b = {w_out, tile::Element::kFloat32, plan.d_model, plan.d_ff * plan.d_model, nullptr, true};
    p.columns = plan.d_ff;
    p.depth = plan.d_model;
    p.c = {grad_act, plan.element, plan.d_ff, 0};
    return p;
}

// grad_pre: rows x 2 d_ff, element type; grad_rows: rows x d_model, float32.
inline tile::GemmProblem grad_rows_step(const SwigluPlan& plan, const void* grad_pre,
                                        const float* w_in, float* grad_rows) {
    tile::GemmProblem p = rows_problem(plan);
    p.a = {grad_pre, plan.element, 2 * plan.d_ff, 0, nullptr, false};
    // B(k, n) = W_in_e(n, k)
    p.b = {w_in, tile::Element::kFloat32, 2 * plan.d_ff, plan.d_model * 2 * plan.d_ff, nullptr,
           true};
    p.columns = plan.d_model;
    p.depth = 2 * plan.d_ff;
    p.c = {grad_rows, tile::Element::kFloat32, plan.d_model, 0};
    return p;
}

// grad_w_out: experts x d_ff x d_model, float32 (zero for an expert without rows).
inline tile::GemmProblem grad_w_out_step(const SwigluPlan& plan, const void* act,
                                         const void* grad_out, float* grad_w_out) {
    tile::GemmProblem p = rows_problem(plan);
    p.a = {act, plan.element, plan.d_ff, 0, nullptr, true};  // A(m, r) = act(r, m)
    p.b = {grad_out, plan.element, plan.d_model, 0, plan.token, false};
    p.columns = plan.d_model;
    p.height = plan.d_ff;
    p.c = {grad_w_out, tile::Element::kFloat32, plan.d_model, plan.d_ff * plan.d_model};
    return p;
}

// grad_w_in: experts x d_model x 2 d_ff, float32 (zero for an expert without rows).
inline tile::GemmProblem grad_w_in_step(const SwigluPlan& plan, const void* x, const void* grad_pre,
                                        float* grad_w_in) {
    tile::GemmProblem p = rows_problem(plan);
    p.a = {x, plan.element, plan.d_model, 0, plan.token, true};  // A(m, r) = x(token[r], m)
    p.b = {grad_pre, plan.element, 2 * plan.d_ff, 0, nullptr, false};
    p.columns = 2 * plan.d_ff;
    p.height = plan.d_model;
    p.c = {grad_w_in, tile::Element::kFloat32, 2 * plan.d_ff, plan.d_model * 2 * plan.d_ff};
    return p;
}

}  // namespace moelab::kernels::cuda
