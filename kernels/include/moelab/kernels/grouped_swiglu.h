#pragma once

// The grouped SwiGLU expert family, torch-free: what a kernel is asked to compute, the weight
// layout every kernel shares, and which kernels exist with the cases each can implement. Tensors
// cross into kernels only through kernels/binding/ (the one torch-aware layer).
//
//   The rows are the (token, expert) assignments of a call, grouped by expert. For each expert e
//   and each row r of its group [offset_e, offset_e + count_e), reading token t_r with routing
//   weight w_r:
//     [gate | up] = x[t_r] W_in[e]       W_in:  (experts, d_model, 2 d_ff), gate first
//     a_r         = SiLU(gate) * up
//     out[t_r]   += w_r a_r W_out[e]     W_out: (experts, d_ff, d_model)
//   The gather of the routed tokens and the weighted combine are part of the kernel, so that a
//   kernel can fuse them into its GEMMs' loads and epilogues.
//
// Note [Expert weight layout]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Decided once for the whole code base: both matrices of all experts are stacked along a leading
// expert dimension, row-major, input dimension before output dimension (x W, not W x), with the
// gate and up projections side by side in W_in (gate columns first). Master weights are float32;
// a kernel may read them in the compute dtype. Checkpoints name them `<bank>.w_in` and
// `<bank>.w_out`; `[init] partition_ffn` splits a dense FFN along d_ff into this layout.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace moelab::kernels {

// Float64 serves the tests (the kernels against a float64 oracle).
enum class ElementType { kFloat32, kBfloat16, kFloat64 };
enum class Backend { kCpu, kCuda };

struct GroupedSwigluDesc {
    std::int64_t experts = 0;
    std::int64_t d_model = 0;
    std::int64_t d_ff = 0;
    // Of x, the tokens handed to the kernel. Under CUDA bfloat16 autocast they are still float32
    // (the residual stream's dtype); autocast acts inside the kernel's matrix products.
    ElementType element = ElementType::kFloat32;
    Backend backend = Backend::kCpu;
    // The dtype of the matrix products: bfloat16 under CUDA autocast, else `element`.
    ElementType compute = ElementType::kFloat32;
    // The platform (kernels/binding fills it in): the CUDA device's compute capability (major * 10
    // + minor; 0 on the CPU) and whether LibTorch provides at::_grouped_mm (2.8 and later, built
    // with moelab's CUDA kernels).
    int cuda_capability = 0;
    bool has_grouped_mm = false;
    // Whether this build has moelab's own CUDA kernels (the cuda preset) and a GPU to run them.
    bool has_cuda_kernels = false;
};

// Whether a kernel can implement a case; `reason` says why not (and what would).
struct Verdict {
    bool ok = true;
    std::string reason;

    static Verdict yes() { return {}; }
    static Verdict no(std::string why) { return {false, std::move(why)}; }
};

struct GroupedSwigluKernel {
    std::string_view name;     // the `[moe] kernel` value
    std::string_view summary;  // one line for messages and docs
    Verdict (*can_implement)(const GroupedSwigluDesc& desc);
};

namespace detail {

inline Verdict any_case(const GroupedSwigluDesc&) { return Verdict::yes(); }

// The grouped CPU kernel: torch-free launchers (kernels/cpu/grouped_swiglu_cpu.h) for float32
// and float64. On CUDA it would take part neither in autocast nor in asynchronous execution (its
// loop needs the group sizes on the host), so it refuses CUDA.
inline Verdict cpu_float(const GroupedSwigluDesc& desc) {
    if (desc.backend != Backend::kCpu) {
        return Verdict::no(
            "the grouped kernel runs on the CPU only; on CUDA use kernel = \"reference\" (or "
            "\"auto\")");
    }
    if (desc.element == ElementType::kBfloat16) {
        return Verdict::no(
            "the grouped kernel computes in float32 (or float64); for bfloat16 on the CPU use "
            "kernel = \"reference\" (or \"auto\")");
    }
    return Verdict::yes();
}

// LibTorch's grouped GEMM (CUTLASS on sm90) for both matrix products in bfloat16, moelab's fused
// activation kernel between them (kernels/cuda/swiglu_rows_cuda.h), the plan's group ends read on
// the device: no host synchronisation.
inline Verdict cuda_grouped_mm(const GroupedSwigluDesc& desc) {
    // Whole sentences as literals: GCC 12 warns falsely about appending literals to strings here.
    if (desc.backend != Backend::kCuda) {
        return Verdict::no(
            "the grouped_mm kernel runs on CUDA only; use kernel = \"reference\" (or \"auto\")");
    }
    if (!desc.has_grouped_mm) {
        return Verdict::no(
            "the grouped_mm kernel needs moelab built with the cuda preset against LibTorch 2.8 "
            "or later (2.8 on sm90 GPUs only, 2.9 on others); use kernel = \"reference\" (or "
            "\"auto\")");
    }
    if (desc.cuda_capability < 90) {
        return Verdict::no(
            "the grouped_mm kernel needs compute capability 9.0 or newer, this GPU has " +
            std::to_string(desc.cuda_capability / 10) + "." +
            std::to_string(desc.cuda_capability % 10) +
            "; use kernel = \"reference\" (or \"auto\")");
    }
    if (desc.compute != ElementType::kBfloat16) {
        return Verdict::no(
            "the grouped_mm kernel multiplies in bfloat16: set model.dtype = \"bfloat16\", or use "
            "kernel = \"reference\" (or \"auto\")");
    }
    if (desc.d_model % 8 != 0 || desc.d_ff % 8 != 0) {
        return Verdict::no(
            "the grouped_mm kernel needs d_model and d_ff_expert divisible by 8 (16-byte rows), "
            "got " +
            std::to_string(desc.d_model) + " and " + std::to_string(desc.d_ff) +
            "; use kernel = \"reference\" (or \"auto\")");
    }
    return Verdict::yes();
}

// moelab's own grouped GEMMs (kernels/cuda/grouped_gemm_tile.h) on any GPU, float32 or bfloat16:
// the gather in the loads, SiLU(gate)*up and the routing weight in the first GEMM's epilogue, an
// ordered combine, the group ends read on the device.
inline Verdict cuda_grouped(const GroupedSwigluDesc& desc) {
    if (desc.backend != Backend::kCuda) {
        return Verdict::no(
            "the grouped_cuda kernel runs on CUDA only; use kernel = \"grouped\" on the CPU (or "
            "\"auto\")");
    }
    if (!desc.has_cuda_kernels) {
        return Verdict::no(
            "the grouped_cuda kernel needs moelab built with the cuda preset; use kernel = "
            "\"reference\" (or \"auto\")");
    }
    if (desc.compute == ElementType::kFloat64 || desc.element == ElementType::kFloat64) {
        return Verdict::no(
            "the grouped_cuda kernel takes and computes float32 or bfloat16; for float64 use "
            "kernel = \"reference\" (or \"auto\")");
    }
    return Verdict::yes();
}

// Every kernel, in the order `auto` tries them. grouped_mm and grouped_cuda come after reference,
// so `auto` does not pick them, until a GPU run of the kernel tests has passed with them
// (tools/gpu_check.sh): they are compiled only where a GPU machine builds the cuda preset (the
// launchers of grouped_cuda compile with nvcc everywhere), and have not yet run.
inline constexpr GroupedSwigluKernel kKernels[] = {
    {"grouped",
     "CPU: gather, one BLAS GEMM per expert, fused SiLU*up and routing weight, ordered combine; "
     "hand-written backward",
     cpu_float},
    {"reference", "LibTorch operators composed per expert (any device and dtype; autocast applies)",
     any_case},
    {"grouped_mm",
     "CUDA, bfloat16, sm90+: LibTorch's grouped GEMM with a fused activation kernel, group ends "
     "on the device (no host synchronisation); not yet run on a GPU",
     cuda_grouped_mm},
    {"grouped_cuda",
     "CUDA, float32 or bfloat16, any GPU: moelab's grouped GEMMs with the gather in the loads, "
     "SwiGLU and the routing weight in the epilogue, an ordered combine, group ends on the device; "
     "not yet run on a GPU",
     cuda_grouped},
};

}  // namespace detail

// Every kernel, in the order `auto` tries them.
inline std::span<const GroupedSwigluKernel> grouped_swiglu_kernels() { return detail::kKernels; }

// The kernel named `name`, or null.
inline const GroupedSwigluKernel* find_grouped_swiglu_kernel(std::string_view name) {
    for (const GroupedSwigluKernel& kernel : detail::kKernels) {
        if (kernel.name == name) return &kernel;
    }
    return nullptr;
}

// The names `[moe] kernel` accepts: "auto" and every kernel's name, comma-separated.
inline std::string grouped_swiglu_kernel_names() {
    std::string names = "auto";
    for (const GroupedSwigluKernel& kernel : detail::kKernels) {
        names += ", " + std::string(kernel.name);
    }
    return names;
}

// `name` ("auto" or a kernel's name) resolved for `desc`: the kernel itself, or for "auto" the
// first that can implement it, with the verdict of the kernel chosen (or why none fits).
struct KernelChoice {
    const GroupedSwigluKernel* kernel = nullptr;
    Verdict verdict;
};
inline KernelChoice choose_grouped_swiglu_kernel(std::string_view name,
                                                 const GroupedSwigluDesc& desc) {
    if (name != "auto") {
        const GroupedSwigluKernel* kernel = find_grouped_swiglu_kernel(name);
        if (kernel == nullptr) {
            return {nullptr, Verdict::no("no grouped SwiGLU kernel named '" + std::string(name) +
                                         "'; expected one of " + grouped_swiglu_kernel_names())};
        }
        return {kernel, kernel->can_implement(desc)};
    }
    std::string reasons;
    for (const GroupedSwigluKernel& kernel : detail::kKernels) {
        Verdict verdict = kernel.can_implement(desc);
        if (verdict.ok) return {&kernel, std::move(verdict)};
        reasons += (reasons.empty() ? "" : "; ") + std::string(kernel.name) + ": " + verdict.reason;
    }
    return {nullptr, Verdict::no("no kernel can implement this case (" + reasons + ")")};
}

}  // namespace moelab::kernels
