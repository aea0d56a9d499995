#include "kernels/binding/rows_by_token.h"

namespace moelab::kernels::binding {

RowsByToken rows_by_token(const at::Tensor& token, const at::Tensor& group_ends,
                          std::int64_t tokens) {
    const std::int64_t rows = token.size(0), experts = group_ends.size(0);
    const at::Tensor routed =
        experts == 0 ? at::zeros({rows}, token.options().dtype(at::kBool))
                     : at::arange(rows, token.options()) < group_ends.narrow(0, experts - 1, 1);
    // Rows that are not routed take the key `tokens`: after every token's rows.
    const at::Tensor key = at::where(routed, token, at::full({}, tokens, token.options()));
    const auto [sorted, order] = at::sort(key, /*stable=*/true, 0, /*descending=*/false);
    return {at::searchsorted(sorted, at::arange(tokens + 1, token.options())), order};
}

}  // namespace moelab::kernels::binding
