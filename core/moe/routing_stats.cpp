#include "core/moe/routing_stats.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace moelab::core {

namespace {

at::Tensor accumulate(const at::Tensor& total, const at::Tensor& value) {
    return total.defined() ? total + value : value.clone();
}

}  // namespace

void LayerRoutingStats::add_dispatch(const std::string& bank, const DispatchRecord& record) {
    BankTotals& totals = banks_[bank];
    totals.tokens_per_expert = accumulate(totals.tokens_per_expert, record.tokens_per_expert);
    totals.assignments = accumulate(totals.assignments, record.assignments);
    totals.dropped = accumulate(totals.dropped, record.dropped);
    totals.tokens += record.tokens;
    if (record.probed > 0) {
        totals.probed_active = accumulate(totals.probed_active, record.probed_active);
        totals.probed += record.probed;
    }
}

void LayerRoutingStats::sum_over(ProcessGroup& group) {
    if (group.size() == 1) return;
    // One all-reduce for the layer: every total as float64 (exact for counts below 2^53).
    std::vector<at::Tensor*> tensors;
    std::vector<std::int64_t*> counts;
    for (auto& [name, totals] : banks_) {
        tensors.insert(tensors.end(),
                       {&totals.tokens_per_expert, &totals.assignments, &totals.dropped});
        if (totals.probed_active.defined()) tensors.push_back(&totals.probed_active);
        counts.insert(counts.end(), {&totals.tokens, &totals.probed});
    }
    for (DecisionTotals& totals : decisions_) {
        if (totals.experts_sum.defined()) tensors.push_back(&totals.experts_sum);
        if (totals.entropy_sum.defined()) tensors.push_back(&totals.entropy_sum);
        counts.push_back(&totals.tokens);
    }
    for (auto& [kind, named] : scalars_) {
        for (auto& [name, totals] : named) {
            tensors.push_back(&totals.sum);
            counts.push_back(&totals.count);
        }
    }
    at::Device device = at::kCPU;
    if (!tensors.empty()) device = tensors.front()->device();
    const at::TensorOptions options = at::TensorOptions().dtype(at::kDouble).device(device);
    std::vector<at::Tensor> parts;
    for (const at::Tensor* t : tensors) parts.push_back(t->to(options).reshape({-1}));
    std::vector<double> count_values;
    for (const std::int64_t* n : counts) count_values.push_back(static_cast<double>(*n));
    parts.push_back(at::tensor(count_values, at::TensorOptions().dtype(at::kDouble)).to(device));
    at::Tensor packed = at::cat(parts);
    group.all_reduce_sum(packed);
    std::int64_t offset = 0;
    for (at::Tensor* t : tensors) {
        *t = packed.narrow(0, offset, t->numel()).view(t->sizes()).to(t->scalar_type());
        offset += t->numel();
    }
    const at::Tensor summed =
        packed.narrow(0, offset, static_cast<std::int64_t>(counts.size())).to(at::kCPU);
    for (std::size_t i = 0; i < counts.size(); ++i) {
        *counts[i] = std::llround(summed[static_cast<std::int64_t>(i)].item<double>());
    }
}

std::map<std::string, double> LayerRoutingStats::active_fractions() const {
    std::map<std::string, double> fractions;
    for (const auto& [name, totals] : banks_) {
        const at::Tensor counts = totals.tokens_per_expert.to(at::kCPU).to(at::kDouble);
        const double denominator = static_cast<double>(totals.tokens) * counts.numel();
        fractions[name] = denominator > 0 ? counts.sum().item<double>() / denominator : 0.0;
    }
    return fractions;
}

void LayerRoutingStats::add_decision(std::size_t sublayer, const sdk::RoutingDecision& decision) {
    if (decisions_.size() <= sublayer) decisions_.resize(sublayer + 1);
    DecisionTotals& totals = decisions_[sublayer];
    const at::Tensor used = (decision.expert_indices >= 0).sum(1).to(at::kFloat);
    totals.experts_sum = accumulate(totals.experts_sum, used.sum().detach());
    totals.tokens += decision.expert_indices.size(0);
    if (decision.probs.defined()) {
        // Scores that are not a distribution (sigmoid gates) are normalised per token first.
        at::Tensor p = decision.probs.detach().to(at::kFloat);
        p = p / p.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
        // 0 log 0 = 0
        const at::Tensor entropy = -(p * at::log(p.clamp_min(1e-30))).sum(-1);
        totals.entropy_sum = accumulate(totals.entropy_sum, entropy.sum());
        totals.has_probs = true;
    }
}

void LayerRoutingStats::add_scalars(const std::string& kind, const sdk::NamedScalars& scalars,
                                    bool counted) {
    for (const auto& [name, value] : scalars) {
        ScalarTotals& totals = scalars_[kind][name];
        const at::Tensor scalar = value.detach().to(at::kFloat).reshape({});
        totals.sum = accumulate(totals.sum, counted ? scalar : at::zeros_like(scalar));
        if (counted) ++totals.count;
    }
}

nlohmann::json LayerRoutingStats::summary() const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [name, totals] : banks_) {
        const at::Tensor counts = totals.tokens_per_expert.to(at::kCPU).to(at::kDouble);
        const std::int64_t experts = counts.numel();
        std::vector<std::int64_t> per_expert(experts);
        for (std::int64_t e = 0; e < experts; ++e) {
            per_expert[e] = static_cast<std::int64_t>(counts[e].item<double>());
        }
        const double mean = counts.mean().item<double>();
        const double max = counts.max().item<double>();
        const double std = experts > 1 ? counts.std(/*unbiased=*/false).item<double>() : 0.0;
        const double assignments = totals.assignments.to(at::kCPU).item<double>();
        const double dropped = totals.dropped.to(at::kCPU).item<double>();
        out["banks"][name] = {
            {"tokens_per_expert", per_expert},
            {"load_imbalance", mean > 0 ? max / mean : 0.0},
            {"cv", mean > 0 ? std / mean : 0.0},
            {"dead_fraction", (counts == 0).to(at::kDouble).mean().item<double>()},
            {"dropped_fraction", assignments > 0 ? dropped / assignments : 0.0},
            {"active_fraction", active_fractions().at(name)},
        };
        if (totals.probed > 0) {
            out["banks"][name]["nsar"] = totals.probed_active.to(at::kCPU).item<double>() /
                                         static_cast<double>(totals.probed);
        }
    }
    for (const DecisionTotals& totals : decisions_) {
        nlohmann::json router = nlohmann::json::object();
        if (totals.tokens > 0) {
            router["experts_per_token"] =
                totals.experts_sum.to(at::kCPU).item<double>() / static_cast<double>(totals.tokens);
            if (totals.has_probs) {
                router["entropy"] = totals.entropy_sum.to(at::kCPU).item<double>() /
                                    static_cast<double>(totals.tokens);
            }
        }
        out["routers"].push_back(router);
    }
    for (const auto& [kind, values] : scalars_) {
        for (const auto& [name, totals] : values) {
            if (totals.count == 0) continue;  // only calls without tokens
            out[kind][name] = totals.sum.to(at::kCPU).item<double>() / totals.count;
        }
    }
    return out;
}

const LayerRoutingStats& RoutingStats::layer_or_empty(int layer_index) const {
    static const LayerRoutingStats kEmpty;
    auto it = layers_.find(layer_index);
    return it == layers_.end() ? kEmpty : it->second;
}

bool RoutingStats::perturbed_gates() const {
    for (const auto& [index, stats] : layers_) {
        if (stats.perturbed_gates()) return true;
    }
    return false;
}

void RoutingStats::sum_over(ProcessGroup& group) {
    for (auto& [index, layer] : layers_) layer.sum_over(group);
}

nlohmann::json RoutingStats::summary() const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [index, stats] : layers_)
        out["layer" + std::to_string(index)] = stats.summary();
    return out;
}

}  // namespace moelab::core
