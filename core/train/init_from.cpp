#include "core/train/init_from.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <torch/autograd.h>

#include "core/checkpoint/checkpoint.h"
#include "core/config/diagnostics.h"
#include "core/system/read_file.h"
#include "core/system/tensor_text.h"
#include "core/train/model_state.h"

namespace moelab::core {

std::pair<at::Tensor, at::Tensor> partition_swiglu(const at::Tensor& w_in, const at::Tensor& w_out,
                                                   std::int64_t n) {
    const std::int64_t d_model = w_in.size(0);
    const std::int64_t d_ff = w_out.size(0);
    const std::int64_t slice = d_ff / n;
    // (d, 2, n, D/n): [gate | up] halves, each in n contiguous slices -> (n, d, 2, D/n).
    const at::Tensor experts_in =
        w_in.reshape({d_model, 2, n, slice}).permute({2, 0, 1, 3}).reshape({n, d_model, 2 * slice});
    const at::Tensor experts_out = w_out.reshape({n, slice, d_model});
    return {experts_in.contiguous(), experts_out.contiguous()};
}

void check_init_source(const Recipe& recipe) {
    if (recipe.init.from.empty()) return;
    try {
        resolve_checkpoint(recipe.init.from);
    } catch (const CheckpointError& error) {
        throw ConfigError(ConfigIssue{recipe.location_of("init.from"), "init.from",
                                      std::string(error.what()) +
                                          " (relative paths are relative to the working "
                                          "directory)"});
    }
}

InitReport initialize_from(torch::nn::Module& model, const Recipe& recipe,
                           const std::string& tokenizer) {
    const InitOptions& init = recipe.init;
    auto fail = [&](const std::string& key, const std::string& message) {
        throw ConfigError(ConfigIssue{recipe.location_of(key), key, message});
    };
    if (!std::filesystem::exists(init.from)) {
        fail("init.from", fmt::format("no run directory or checkpoint at '{}' (relative paths are "
                                      "relative to the working directory)",
                                      init.from));
    }
    InitReport report;
    LoadedCheckpoint source;
    try {
        const std::filesystem::path step_dir = resolve_checkpoint(init.from);
        source = load_checkpoint(step_dir, CheckpointParts::kModel);
        report.checkpoint = step_dir.string();
    } catch (const CheckpointError& error) {
        fail("init.from", error.what());
    }
    // A checkpoint lives in RUN/checkpoints/step-N; the run keeps its tokenizer next to them.
    const std::filesystem::path source_tokenizer =
        std::filesystem::path(report.checkpoint).parent_path().parent_path() / "tokenizer.txt";
    if (std::filesystem::exists(source_tokenizer) &&
        read_file(source_tokenizer, kMaxTokenizerBytes, "tokenizer file") != tokenizer) {
        fail("init.from", fmt::format("{} was trained with another tokenizer ({}); its embeddings "
                                      "would mean other tokens here",
                                      report.checkpoint, source_tokenizer.string()));
    }
    std::set<std::string> used;
    torch::NoGradGuard no_grad;

    // Pass 1: dense FFNs of the source into the experts of the target's MoE blocks.
    std::set<std::string> partitioned;  // target tensor names written by pass 1
    if (init.partition_ffn > 0) {
        const std::int64_t n = init.partition_ffn;
        std::map<std::string, at::Tensor> targets;
        for (const NamedTensor& t : model_tensors(model)) targets[t.name] = t.tensor;
        for (const auto& [name, w_in] : source.model) {
            // "layer3.ffn.w_in" -> layer prefix "layer3."
            if (!name.ends_with(".ffn.w_in")) continue;
            const std::string layer = name.substr(0, name.size() - std::string("ffn.w_in").size());
            const std::string bank = layer + "moe.block.experts.";
            auto in = targets.find(bank + "w_in");
            auto out = targets.find(bank + "w_out");
            auto norm = targets.find(layer + "moe.block.norm.weight");
            if (in == targets.end() || out == targets.end() || norm == targets.end()) {
                if (std::any_of(targets.begin(), targets.end(), [&](const auto& t) {
                        return t.first.starts_with(layer + "moe.");
                    })) {
                    fail("init.partition_ffn",
                         fmt::format("the router's block at {} has no bank 'experts' and norm "
                                     "'norm' to receive the dense FFN (see Note [Dense "
                                     "conversion] in sdk/README.md)",
                                     layer.substr(0, layer.size() - 1)));
                }
                continue;  // a dense layer in the target too: copied by name below
            }
            const at::Tensor& w_out = source.model.at(layer + "ffn.w_out");
            const std::int64_t d_ff = w_out.size(0);
            if (d_ff % n != 0 || in->second.size(0) != n || in->second.size(2) != 2 * (d_ff / n) ||
                in->second.size(1) != w_in.size(0)) {
                fail("init.partition_ffn",
                     fmt::format("{}: the dense FFN (d_model {}, d_ff {}) does not split into the "
                                 "MoE layer's experts {}: need d_ff = experts x d_ff_expert",
                                 layer.substr(0, layer.size() - 1), w_in.size(0), d_ff,
                                 tensor_text(in->second)));
            }
            auto [experts_in, experts_out] = partition_swiglu(w_in, w_out, n);
            in->second.copy_(experts_in);
            out->second.copy_(experts_out);
            norm->second.copy_(source.model.at(layer + "ffn.norm.weight"));
            for (const char* suffix : {"ffn.w_in", "ffn.w_out", "ffn.norm.weight"}) {
                used.insert(layer + suffix);
            }
            partitioned.insert({in->first, out->first, norm->first});
            ++report.partitioned_layers;
        }
        if (report.partitioned_layers == 0) {
            fail("init.partition_ffn",
                 fmt::format("{} has no dense FFN layer whose position is an MoE layer here",
                             report.checkpoint));
        }
    }

    // Pass 2: everything else by name.
    for (const NamedTensor& target : model_tensors(model)) {
        if (partitioned.count(target.name) > 0) continue;
        auto it = source.model.find(target.name);
        if (it == source.model.end()) {
            report.fresh.push_back(target.name);
            continue;
        }
        if (it->second.sizes() != target.tensor.sizes()) {
            fail("init.from", fmt::format("'{}' has shape {} in {}, this model expects {}",
                                          target.name, shape_text(it->second.sizes()),
                                          report.checkpoint, shape_text(target.tensor.sizes())));
        }
        at::Tensor destination = target.tensor;
        destination.copy_(it->second);
        used.insert(target.name);
        ++report.copied;
    }
    for (const auto& [name, tensor] : source.model) {
        if (used.count(name) == 0 && !no_longer_saved(name)) report.unused.push_back(name);
    }
    return report;
}

}  // namespace moelab::core
