#include "kernels/binding/grouped_swiglu.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include <ATen/autocast_mode.h>
#include <torch/version.h>
#ifdef MOELAB_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "kernels/binding/grouped_swiglu_cpu.h"
#include "kernels/binding/grouped_swiglu_cuda.h"
#include "kernels/binding/grouped_swiglu_grouped_mm.h"
#include "kernels/reference/grouped_swiglu_reference.h"

namespace moelab::kernels {

namespace {

std::string shape_of(const at::Tensor& t) {
    std::string text = "(";
    for (std::int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + std::to_string(t.size(i));
    return text + ")";
}

}  // namespace

void describe_platform(GroupedSwigluDesc& desc, int device) {
    desc.cuda_capability = 0;
    desc.has_grouped_mm = false;
    desc.has_cuda_kernels = false;
    if (desc.backend != Backend::kCuda) return;
#ifdef MOELAB_CUDA
    if (!at::cuda::is_available()) return;
    desc.has_cuda_kernels = binding::cuda_kernels_built();
    const cudaDeviceProp* properties =
        at::cuda::getDeviceProperties(device >= 0 ? device : at::cuda::current_device());
    desc.cuda_capability = properties->major * 10 + properties->minor;
    // LibTorch 2.8 runs its grouped GEMM on sm90 only; 2.9 added a fallback for other GPUs.
#if TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 8
    desc.has_grouped_mm = binding::grouped_mm_built() && desc.cuda_capability == 90;
#else
    desc.has_grouped_mm = binding::grouped_mm_built();
#endif
#else
    (void)device;
#endif
}

namespace {

bool cuda_autocast_bf16() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    return at::autocast::is_autocast_enabled(at::kCUDA) &&
           at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16;
#else
    return at::autocast::is_enabled() && at::autocast::get_autocast_gpu_dtype() == at::kBFloat16;
#endif
}

}  // namespace

GroupedSwigluDesc describe_grouped_swiglu(const at::Tensor& x, const at::Tensor& w_in,
                                          const at::Tensor& w_out) {
    if (x.dim() != 2 || w_in.dim() != 3 || w_out.dim() != 3 || w_in.size(0) != w_out.size(0) ||
        w_in.size(1) != x.size(1) || w_in.size(2) != 2 * w_out.size(1) ||
        w_out.size(2) != x.size(1)) {
        throw std::invalid_argument(
            "grouped SwiGLU: expected x (tokens, d_model), w_in (experts, d_model, "
            "2 d_ff) and w_out (experts, d_ff, d_model), got x " +
            shape_of(x) + ", w_in " + shape_of(w_in) + ", w_out " + shape_of(w_out));
    }
    GroupedSwigluDesc desc;
    desc.experts = w_in.size(0);
    desc.d_model = x.size(1);
    desc.d_ff = w_out.size(1);
    switch (x.scalar_type()) {
        case at::kFloat:
            desc.element = ElementType::kFloat32;
            break;
        case at::kBFloat16:
            desc.element = ElementType::kBfloat16;
            break;
        case at::kDouble:
            desc.element = ElementType::kFloat64;
            break;
        default:
            throw std::invalid_argument(std::string("grouped SwiGLU: x of dtype ") +
                                        c10::toString(x.scalar_type()) +
                                        " is not supported (float32, bfloat16, float64)");
    }
    desc.backend = x.is_cuda() ? Backend::kCuda : Backend::kCpu;
    desc.compute = desc.backend == Backend::kCuda && cuda_autocast_bf16() ? ElementType::kBfloat16
                                                                          : desc.element;
    describe_platform(desc);
    return desc;
}

std::vector<std::int64_t> host_group_counts(const at::Tensor& group_ends, std::int64_t rows) {
    const at::Tensor ends = group_ends.to(at::kCPU).contiguous();
    std::vector<std::int64_t> counts(ends.numel());
    std::int64_t previous = 0;
    for (std::int64_t e = 0; e < ends.numel(); ++e) {
        const std::int64_t end = ends.data_ptr<std::int64_t>()[e];
        if (end < previous || end > rows) {
            throw std::invalid_argument(
                "grouped SwiGLU: group_ends must be non-decreasing from 0 and at most the " +
                std::to_string(rows) + " rows, got " + std::to_string(end) + " for expert " +
                std::to_string(e) + " after " + std::to_string(previous));
        }
        counts[e] = end - previous;
        previous = end;
    }
    return counts;
}

at::Tensor group_ends_of(const std::vector<std::int64_t>& counts, const at::Device& device) {
    std::vector<std::int64_t> ends(counts.size());
    std::int64_t total = 0;
    for (std::size_t e = 0; e < counts.size(); ++e) ends[e] = total += counts[e];
    return at::tensor(ends, at::TensorOptions().dtype(at::kLong)).to(device);
}

namespace {

// run_grouped_swiglu once the case is described (once per call).
at::Tensor run_described(const GroupedSwigluKernel& kernel, const GroupedSwigluDesc& desc,
                         const at::Tensor& x, const RoutedRows& routed, const at::Tensor& w_in,
                         const at::Tensor& w_out, WeightCasts* casts) {
    const at::Tensor& token = routed.token;
    const at::Tensor& ends = routed.group_ends;
    if (token.dim() != 1 || token.scalar_type() != at::kLong || token.device() != x.device() ||
        routed.weight.dim() != 1 || routed.weight.size(0) != token.size(0) ||
        routed.weight.device() != x.device() || w_in.device() != x.device() ||
        w_out.device() != x.device() || ends.dim() != 1 || ends.size(0) != desc.experts ||
        ends.scalar_type() != at::kLong || ends.device() != x.device()) {
        throw std::invalid_argument(
            "grouped SwiGLU: expected token (rows,) int64, group_ends (" +
            std::to_string(desc.experts) +
            ",) int64, weight (rows,), w_in and w_out, all on the device of x (" +
            x.device().str() + "); got token " + shape_of(token) + " " +
            c10::toString(token.scalar_type()) + " on " + token.device().str() + ", group_ends " +
            shape_of(ends) + " " + c10::toString(ends.scalar_type()) + " on " +
            ends.device().str() + ", weight " + shape_of(routed.weight) + " on " +
            routed.weight.device().str() + ", w_in on " + w_in.device().str() + ", w_out on " +
            w_out.device().str());
    }
    const Verdict verdict = kernel.can_implement(desc);
    if (!verdict.ok) {
        throw std::invalid_argument("grouped SwiGLU kernel '" + std::string(kernel.name) +
                                    "': " + verdict.reason);
    }
    // Every row of the kernel table has its implementation here; a row without one is an error,
    // never a silent fallback (tests/kernels runs every row).
    if (kernel.name == "grouped") return binding::grouped_swiglu_cpu(x, routed, w_in, w_out);
    if (kernel.name == "grouped_mm") {
        return binding::grouped_swiglu_grouped_mm(x, routed, w_in, w_out, casts);
    }
    if (kernel.name == "grouped_cuda") {
        return binding::grouped_swiglu_cuda(x, routed, w_in, w_out,
                                            desc.compute == ElementType::kBfloat16);
    }
    if (kernel.name == "reference") {
        const std::vector<std::int64_t> counts = host_group_counts(ends, token.size(0));
        const std::int64_t rows = std::accumulate(counts.begin(), counts.end(), std::int64_t{0});
        return reference::grouped_swiglu(x, token.narrow(0, 0, rows),
                                         routed.weight.narrow(0, 0, rows), w_in, w_out, counts);
    }
    throw std::invalid_argument("grouped SwiGLU kernel '" + std::string(kernel.name) +
                                "' has no implementation in kernels/binding");
}

}  // namespace

at::Tensor run_grouped_swiglu(const GroupedSwigluKernel& kernel, const at::Tensor& x,
                              const RoutedRows& routed, const at::Tensor& w_in,
                              const at::Tensor& w_out, WeightCasts* casts) {
    return run_described(kernel, describe_grouped_swiglu(x, w_in, w_out), x, routed, w_in, w_out,
                         casts);
}

at::Tensor run_grouped_swiglu(std::string_view name, const at::Tensor& x, const RoutedRows& routed,
                              const at::Tensor& w_in, const at::Tensor& w_out, WeightCasts* casts) {
    const GroupedSwigluDesc desc = describe_grouped_swiglu(x, w_in, w_out);
    const KernelChoice choice = choose_grouped_swiglu_kernel(name, desc);
    if (!choice.verdict.ok) {
        throw std::invalid_argument("grouped SwiGLU kernel '" + std::string(name) +
                                    "': " + choice.verdict.reason);
    }
    return run_described(*choice.kernel, desc, x, routed, w_in, w_out, casts);
}

}  // namespace moelab::kernels
