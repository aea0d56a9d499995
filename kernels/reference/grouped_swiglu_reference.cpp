#include "kernels/reference/grouped_swiglu_reference.h"

namespace moelab::kernels::reference {

at::Tensor swiglu_activation(const at::Tensor& x, const at::Tensor& w_in) {
    const std::int64_t d_ff = w_in.size(-1) / 2;
    const at::Tensor pre = at::matmul(x, w_in);
    return at::silu(pre.narrow(-1, 0, d_ff)) * pre.narrow(-1, d_ff, d_ff);
}

at::Tensor swiglu(const at::Tensor& x, const at::Tensor& w_in, const at::Tensor& w_out) {
    return at::matmul(swiglu_activation(x, w_in), w_out);
}

at::Tensor grouped_swiglu(const at::Tensor& x, const at::Tensor& token, const at::Tensor& weight,
                          const at::Tensor& w_in, const at::Tensor& w_out,
                          const std::vector<std::int64_t>& counts) {
    const at::Tensor rows = x.index_select(0, token);
    std::vector<at::Tensor> pieces;
    std::int64_t offset = 0;
    for (std::size_t e = 0; e < counts.size(); ++e) {
        if (counts[e] == 0) continue;
        pieces.push_back(swiglu(rows.narrow(0, offset, counts[e]), w_in[e], w_out[e]));
        offset += counts[e];
    }
    if (pieces.empty()) return at::zeros_like(x);
    const at::Tensor expert_rows = at::cat(pieces, 0).to(x.scalar_type());
    return at::zeros_like(x).index_add(0, token,
                                       expert_rows * weight.to(x.scalar_type()).unsqueeze(1));
}

}  // namespace moelab::kernels::reference
