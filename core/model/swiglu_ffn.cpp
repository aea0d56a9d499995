#include "core/model/swiglu_ffn.h"

#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/sdk/init.h"

namespace moelab::core {

SwiGluFfn::SwiGluFfn(std::int64_t d_model, std::int64_t d_ff, double norm_eps, double init_std,
                     double output_init_std, std::uint64_t seed) {
    at::Generator generator = sdk::make_generator(seed);
    norm_ = register_module("norm", std::make_shared<sdk::RmsNorm>(d_model, norm_eps));
    w_in = register_parameter("w_in", sdk::normal_weight({d_model, 2 * d_ff}, init_std, generator));
    w_out = register_parameter("w_out",
                               sdk::normal_weight({d_ff, d_model}, output_init_std, generator));
}

at::Tensor SwiGluFfn::forward(const at::Tensor& hidden) {
    return hidden + kernels::reference::swiglu(norm_->forward(hidden), w_in, w_out);
}

}  // namespace moelab::core
