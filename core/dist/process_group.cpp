#include "core/dist/process_group.h"

#include <ATen/ATen.h>

namespace moelab::core {

namespace {

class SoloGroup final : public ProcessGroup {
  public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void all_reduce_sum(at::Tensor&) override {}
    at::Tensor all_gather(const at::Tensor& local) override { return local.unsqueeze(0).clone(); }
    at::Tensor all_to_all(const at::Tensor& input, const std::vector<std::int64_t>&,
                          const std::vector<std::int64_t>&) override {
        return input.clone();
    }
    void broadcast(at::Tensor&, int) override {}
    void barrier() override {}
};

}  // namespace

std::shared_ptr<ProcessGroup> solo_group() { return std::make_shared<SoloGroup>(); }

std::string broadcast_text(ProcessGroup& group, const std::string& text, int root,
                           const at::Device& device) {
    if (group.size() == 1) return text;
    const at::TensorOptions options = at::TensorOptions().dtype(at::kLong).device(device);
    at::Tensor length = at::full({1}, static_cast<std::int64_t>(text.size()), options);
    group.broadcast(length, root);
    const std::int64_t size = length.to(at::kCPU).item<std::int64_t>();
    at::Tensor bytes = at::zeros({size}, at::TensorOptions().dtype(at::kByte));
    if (group.rank() == root) {
        std::copy(text.begin(), text.end(), bytes.data_ptr<std::uint8_t>());
    }
    bytes = bytes.to(device);
    group.broadcast(bytes, root);
    bytes = bytes.to(at::kCPU);
    const auto* data = bytes.data_ptr<std::uint8_t>();
    return std::string(data, data + size);
}

bool any_member(ProcessGroup& group, bool yes, const at::Device& device) {
    if (group.size() == 1) return yes;
    at::Tensor flag =
        at::full({1}, yes ? 1.0F : 0.0F, at::TensorOptions().dtype(at::kFloat).device(device));
    group.all_reduce_sum(flag);
    return flag.to(at::kCPU).item<float>() > 0;
}

}  // namespace moelab::core
