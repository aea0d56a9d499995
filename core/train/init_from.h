#pragma once

// Initialising a model from another run's checkpoint ([init] in a recipe): tensors are copied by
// name, and with init.partition_ffn = n every dense SwiGLU FFN of the source becomes the n experts
// of the MoE block at the same layer (DSMoE, methods.md §3.1). The block must follow the SDK's
// naming convention for convertible blocks (Note [Dense conversion] in sdk/README.md): its FFN
// input norm is registered as "norm" and its routed bank as "experts".

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "core/config/options.h"

namespace moelab::core {

struct InitReport {
    std::string checkpoint;               // the step directory read
    std::int64_t copied = 0;              // target tensors copied unchanged
    std::int64_t partitioned_layers = 0;  // dense FFNs split into experts
    std::vector<std::string> fresh;       // target tensors the source lacks (keep their init)
    std::vector<std::string> unused;      // source tensors nothing used
};

// Throws ConfigError (naming init.from / init.partition_ffn and where the recipe set them) when
// the checkpoint cannot initialise `model`: no checkpoint there, a source run whose tokenizer
// differs from `tokenizer` (the serialized tokenizer of this run: embeddings of another
// vocabulary would be copied silently), a tensor of the same name with another shape, a dense FFN
// whose size does not split into the MoE layer's experts, or no dense FFN to split.
InitReport initialize_from(torch::nn::Module& model, const Recipe& recipe,
                           const std::string& tokenizer);

// ConfigError at init.from when it is set and names no checkpoint: `moelab check` says so before
// any training starts.
void check_init_source(const Recipe& recipe);

// Expert slices of a dense SwiGLU FFN, exactly: with w_in = [gate | up] (d_model, 2 D) and w_out
// (D, d_model), expert i gets gate/up columns and w_out rows [i D/n, (i+1) D/n). Returns
// (n, d_model, 2 D/n) and (n, D/n, d_model), the host expert bank's layout. The experts' outputs
// sum to the dense FFN's output.
std::pair<at::Tensor, at::Tensor> partition_swiglu(const at::Tensor& w_in, const at::Tensor& w_out,
                                                   std::int64_t n);

}  // namespace moelab::core
