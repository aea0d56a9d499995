#include "core/train/adamw.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/autograd.h>

#include "core/system/tensor_text.h"
#include "kernels/binding/fused_adamw.h"

namespace moelab::core {

AdamW::AdamW(std::vector<NamedParameter> parameters, AdamWOptions options)
    : parameters_(std::move(parameters)),
      exp_avg_(parameters_.size()),
      exp_avg_sq_(parameters_.size()),
      updates_(parameters_.size(), 0),
      options_(options) {}

void AdamW::step(double lr) {
    torch::NoGradGuard no_grad;
    ++steps_;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        at::Tensor param = parameters_[i].tensor;
        const at::Tensor& grad = param.grad();
        if (!grad.defined()) continue;
        if (!exp_avg_[i].defined()) {
            exp_avg_[i] = at::zeros_like(param, at::MemoryFormat::Contiguous);
            exp_avg_sq_[i] = at::zeros_like(param, at::MemoryFormat::Contiguous);
        }
        const auto t = static_cast<double>(++updates_[i]);
        const bool decays = parameters_[i].decay && options_.weight_decay > 0;
        // The step's constants, once for both paths below.
        const kernels::binding::AdamWConstants c{
            .beta1 = options_.beta1,
            .beta2 = options_.beta2,
            .eps = options_.eps,
            .decay = decays ? 1.0 - lr * options_.weight_decay : 1.0,
            .step_size = lr / (1.0 - std::pow(options_.beta1, t)),
            .sqrt_correction2 = std::sqrt(1.0 - std::pow(options_.beta2, t))};
        // Contiguous float32/float64 CPU parameters: one pass over the parameter and its moments,
        // on the host's threads. Any other (CUDA, strided), the same update as tensor operations.
        if (kernels::binding::fused_adamw_step(param, grad, exp_avg_[i], exp_avg_sq_[i], c)) {
            continue;
        }
        if (decays) param.mul_(c.decay);
        exp_avg_[i].mul_(c.beta1).add_(grad, 1.0 - c.beta1);
        exp_avg_sq_[i].mul_(c.beta2).addcmul_(grad, grad, 1.0 - c.beta2);
        const at::Tensor denom = (exp_avg_sq_[i].sqrt() / c.sqrt_correction2).add_(c.eps);
        param.addcdiv_(exp_avg_[i], denom, -c.step_size);
    }
}

void AdamW::zero_grad() {
    for (NamedParameter& p : parameters_) {
        if (p.tensor.grad().defined()) p.tensor.mutable_grad() = at::Tensor();
    }
}

std::map<std::string, std::int64_t> AdamW::parameter_steps() const {
    std::map<std::string, std::int64_t> steps;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        if (updates_[i] > 0) steps[parameters_[i].name] = updates_[i];
    }
    return steps;
}

std::vector<NamedTensor> AdamW::state() const {
    std::vector<NamedTensor> tensors;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        if (!exp_avg_[i].defined()) continue;
        tensors.push_back({"exp_avg/" + parameters_[i].name, exp_avg_[i]});
        tensors.push_back({"exp_avg_sq/" + parameters_[i].name, exp_avg_sq_[i]});
    }
    return tensors;
}

void AdamW::load_state(const std::map<std::string, at::Tensor>& tensors, std::int64_t steps,
                       const std::map<std::string, std::int64_t>* parameter_steps) {
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        std::int64_t updates = steps;
        if (parameter_steps != nullptr) {
            const auto it = parameter_steps->find(parameters_[i].name);
            updates = it == parameter_steps->end() ? 0 : it->second;
        }
        updates_[i] = updates;
        if (updates == 0) {
            exp_avg_[i] = exp_avg_sq_[i] = at::Tensor();
            continue;
        }
        const at::Tensor& param = parameters_[i].tensor;
        exp_avg_[i] = at::zeros_like(param, at::MemoryFormat::Contiguous);
        exp_avg_sq_[i] = at::zeros_like(param, at::MemoryFormat::Contiguous);
        for (auto [prefix, target] : {std::pair<const char*, at::Tensor*>{"exp_avg/", &exp_avg_[i]},
                                      {"exp_avg_sq/", &exp_avg_sq_[i]}}) {
            const std::string key = prefix + parameters_[i].name;
            auto it = tensors.find(key);
            if (it == tensors.end()) {
                throw CheckpointError(fmt::format("optimizer state '{}' is missing", key));
            }
            if (it->second.sizes() != target->sizes()) {
                throw CheckpointError(fmt::format("optimizer state '{}' has shape {}, expected {}",
                                                  key, shape_text(it->second.sizes()),
                                                  shape_text(target->sizes())));
            }
            target->copy_(it->second);
        }
    }
    steps_ = steps;
}

double clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm) {
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> norms;
    for (const at::Tensor& p : parameters) {
        if (p.grad().defined()) norms.push_back(p.grad().detach().to(at::kFloat).norm());
    }
    if (norms.empty()) return 0.0;
    const double total = at::stack(norms).norm().item<double>();
    if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
        const double scale = max_norm / (total + 1e-6);
        for (const at::Tensor& p : parameters) {
            if (p.grad().defined()) p.grad().mul_(scale);
        }
    }
    return total;
}

double clip_grad_norm(const std::vector<at::Tensor>& replicated,
                      const std::vector<at::Tensor>& sharded, double max_norm,
                      ProcessGroup& shard_group) {
    torch::NoGradGuard no_grad;
    auto squared = [](const std::vector<at::Tensor>& parameters, at::Tensor sum) {
        for (const at::Tensor& p : parameters) {
            if (p.grad().defined()) sum = sum + p.grad().detach().to(at::kFloat).square().sum();
        }
        return sum;
    };
    const at::Device device =
        !replicated.empty() ? replicated.front().device()
                            : (!sharded.empty() ? sharded.front().device() : at::Device(at::kCPU));
    const at::Tensor zero = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(device));
    at::Tensor shard_sum = squared(sharded, zero).reshape({1});
    shard_group.all_reduce_sum(shard_sum);
    const double total =
        std::sqrt((squared(replicated, zero) + shard_sum.squeeze(0)).item<double>());
    if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
        const double scale = max_norm / (total + 1e-6);
        for (const auto* group : {&replicated, &sharded}) {
            for (const at::Tensor& p : *group) {
                if (p.grad().defined()) p.grad().mul_(scale);
            }
        }
    }
    return total;
}

}  // namespace moelab::core
