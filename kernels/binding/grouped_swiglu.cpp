#include "kernels/binding/grouped_swiglu.h"

#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels/binding/grouped_swiglu_cpu.h"
#include "kernels/reference/grouped_swiglu_reference.h"

namespace moelab::kernels {

namespace {

std::string shape_of(const at::Tensor& t) {
    std::string text = "(";
    for (std::int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + std::to_string(t.size(i));
    return text + ")";
}

}  // namespace

GroupedSwigluDesc describe_grouped_swiglu(const at::Tensor& rows, const at::Tensor& w_in,
                                          const at::Tensor& w_out) {
    if (rows.dim() != 2 || w_in.dim() != 3 || w_out.dim() != 3 || w_in.size(0) != w_out.size(0) ||
        w_in.size(1) != rows.size(1) || w_in.size(2) != 2 * w_out.size(1) ||
        w_out.size(2) != rows.size(1)) {
        throw std::invalid_argument(
            "grouped SwiGLU: expected rows (assignments, d_model), w_in (experts, d_model, "
            "2 d_ff) and w_out (experts, d_ff, d_model), got rows " +
            shape_of(rows) + ", w_in " + shape_of(w_in) + ", w_out " + shape_of(w_out));
    }
    GroupedSwigluDesc desc;
    desc.experts = w_in.size(0);
    desc.d_model = rows.size(1);
    desc.d_ff = w_out.size(1);
    switch (rows.scalar_type()) {
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
            throw std::invalid_argument(std::string("grouped SwiGLU: rows of dtype ") +
                                        c10::toString(rows.scalar_type()) +
                                        " are not supported (float32, bfloat16, float64)");
    }
    desc.backend = rows.is_cuda() ? Backend::kCuda : Backend::kCpu;
    return desc;
}

at::Tensor run_grouped_swiglu(const GroupedSwigluKernel& kernel, const at::Tensor& rows,
                              const at::Tensor& w_in, const at::Tensor& w_out,
                              const std::vector<std::int64_t>& counts) {
    const GroupedSwigluDesc desc = describe_grouped_swiglu(rows, w_in, w_out);
    if (static_cast<std::int64_t>(counts.size()) != desc.experts ||
        std::accumulate(counts.begin(), counts.end(), std::int64_t{0}) != rows.size(0)) {
        throw std::invalid_argument("grouped SwiGLU: counts must give the rows of each of the " +
                                    std::to_string(desc.experts) + " experts and sum to " +
                                    std::to_string(rows.size(0)));
    }
    const Verdict verdict = kernel.can_implement(desc);
    if (!verdict.ok) {
        throw std::invalid_argument("grouped SwiGLU kernel '" + std::string(kernel.name) +
                                    "': " + verdict.reason);
    }
    // Every row of the kernel table has its implementation here; a row without one is an error,
    // never a silent fallback (tests/kernels runs every row).
    if (kernel.name == "grouped") return binding::grouped_swiglu_cpu(rows, w_in, w_out, counts);
    if (kernel.name == "reference") return reference::grouped_swiglu(rows, w_in, w_out, counts);
    throw std::invalid_argument("grouped SwiGLU kernel '" + std::string(kernel.name) +
                                "' has no implementation in kernels/binding");
}

}  // namespace moelab::kernels
