#include "core/dist/differentiable_all_to_all.h"

#include <torch/autograd.h>

namespace moelab::core {

namespace {

class AllToAllRows : public torch::autograd::Function<AllToAllRows> {
  public:
    static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& input,
                              ProcessGroup* group, const std::vector<std::int64_t>& send_rows,
                              const std::vector<std::int64_t>& receive_rows) {
        // The context keeps IValues only: the group travels as its address (it outlives the
        // graph, see the header), the splits as integer lists.
        context->saved_data["group"] = reinterpret_cast<std::int64_t>(group);
        context->saved_data["send"] = send_rows;
        context->saved_data["receive"] = receive_rows;
        return group->all_to_all(input, send_rows, receive_rows);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                   torch::autograd::variable_list grads) {
        auto* group = reinterpret_cast<ProcessGroup*>(context->saved_data["group"].toInt());
        const std::vector<std::int64_t> send = context->saved_data["send"].toIntVector();
        const std::vector<std::int64_t> receive = context->saved_data["receive"].toIntVector();
        // Every process runs this backward (its forward took part in the same exchange), so the
        // reverse exchange is a collective like the forward one.
        return {group->all_to_all(grads[0], receive, send), at::Tensor(), at::Tensor(),
                at::Tensor()};
    }
};

}  // namespace

at::Tensor differentiable_all_to_all(ProcessGroup& group, const at::Tensor& input,
                                     const std::vector<std::int64_t>& send_rows,
                                     const std::vector<std::int64_t>& receive_rows) {
    return AllToAllRows::apply(input, &group, send_rows, receive_rows);
}

}  // namespace moelab::core
