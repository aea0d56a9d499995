#pragma once

// The typed form of a recipe. Defaults live here, at the declaration; options_schema.cpp binds
// every field to its recipe key, documentation and valid range. TOML never leaves core/config:
// plugin option tables travel as the opaque PluginTable until the plugin's schema validates them.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config/choices.h"
#include "core/config/diagnostics.h"

namespace moelab::core {

struct PluginsOptions {
    std::vector<std::string> search_path;  // extra plugin directories, searched after the built-ins
};

// One [[data.source]] of a mixture: a named corpus with a validation and a test file and, for a
// training source, a training file and a mixture weight.
struct DataSourceOptions {
    std::string name;
    std::string dir;  // holds train.*, validation.*, test.* (see core/data/corpus.h)
    std::string train, validation, test;  // explicit files; each overrides the one found in dir
    std::string format = "auto";          // auto (by extension), text, jsonl or pairs
    std::string text_field = "text";      // the JSONL field holding a document's text
    // pairs: JSONL of (prompt, response) objects; the loss counts response tokens only (Note
    // [Response-only loss] in core/data/loss_mask.h).
    std::string prompt_field = "prompt";
    std::string response_field = "response";
    double weight = 1.0;     // sampling weight; training sources only
    bool eval_only = false;  // evaluated, never trained on (no train file, no weight)
};

struct DataOptions {
    std::string corpus = "data/brown";  // directory holding train.txt, validation.txt, test.txt
    std::int64_t seq_len = 128;         // tokens per training sequence (the context length)
    std::string cache_dir = "data/cache";
    // [[data.source]] tables; empty: data.corpus is the one source.
    std::vector<DataSourceOptions> sources;
};

struct ModelOptions {
    std::int64_t layers = 4;
    std::int64_t d_model = 256;
    std::int64_t heads = 4;
    std::int64_t kv_heads = 0;      // 0: as many as heads (no GQA)
    std::int64_t d_ff = 1024;       // intermediate size of the dense SwiGLU FFN layers
    FfnKind ffn = FfnKind::kDense;  // dense everywhere, or MoE layers placed by [moe]
    bool tie_embeddings = true;
    double norm_eps = 1e-5;
    double init_std = 0.02;
    ComputeDtype dtype = ComputeDtype::kFloat32;  // bfloat16 autocasts on CUDA
};

struct MoeOptions {
    // Layer i is an MoE layer iff i >= first_layer and (i - first_layer) % interval == 0:
    // every layer (0, 1), every other layer (1, 2), from layer 3 on (3, 1).
    std::int64_t first_layer = 0;
    std::int64_t interval = 1;
    std::int64_t experts = 8;
    std::int64_t d_ff_expert = 256;
    std::int64_t shared_experts =
        0;                         // always-active experts of size d_ff_expert, in every MoE layer
    bool shared_gate = false;      // mix routed and shared outputs with a learned 2-way softmax
    double capacity_factor = 0.0;  // 0: dropless
    // Which assignments an over-full expert keeps.
    DropPolicy drop_policy = DropPolicy::kProbability;
    std::string kernel = "auto";  // grouped SwiGLU expert kernel (kernels/README.md)
};

struct TrainOptions {
    DeviceChoice device = DeviceChoice::kAuto;  // resolved to kCpu or kCuda before a run
    std::int64_t steps = 1000;
    std::int64_t batch_size = 16;  // sequences per micro-batch
    std::int64_t grad_accum = 1;   // micro-batches per optimizer step
    double lr_peak = 3e-3;
    double lr_min = 3e-4;
    std::int64_t warmup_steps = 100;
    double weight_decay = 0.1;
    double beta1 = 0.9;
    double beta2 = 0.95;
    double adam_eps = 1e-8;
    double grad_clip = 1.0;  // global L2 norm; 0 disables clipping
    // CPU threads of LibTorch's intra-op pool and of OpenBLAS; 0: the measured default
    // (docs/threads.md).
    std::int64_t intra_op_threads = 0;
    std::int64_t blas_threads = 0;
    std::int64_t log_every = 10;
    std::int64_t eval_every = 0;        // 0: evaluate only at the end
    std::int64_t eval_batches = 0;      // batches of periodic evaluations; 0: the whole split
    std::int64_t checkpoint_every = 0;  // 0: checkpoint only at the end
    std::int64_t keep_checkpoints = 2;
};

// A plugin's options table as written in the recipe, validated later against the plugin's schema
// (resolve_plugin_params). Opaque outside core/config.
class PluginTable {
  public:
    struct Impl;
    PluginTable();
    explicit PluginTable(std::shared_ptr<const Impl> impl);
    const Impl& impl() const { return *impl_; }

  private:
    std::shared_ptr<const Impl> impl_;
};

// Note [Stages]: a run in stages ([[stage]] tables), each with its own length, learning-rate
// schedule (linear warm-up, then cosine decay, within the stage) and set of trainable parameters
// (glob patterns over parameter names: `*` any run of characters, dots included, `?` one
// character). A parameter outside a stage's patterns is frozen for the stage: no gradient, no
// update, no optimizer state until a stage trains it. AdamW counts steps per parameter, so a
// parameter that starts training in a later stage gets the bias correction of its own first step.
// Without [[stage]] tables a run is one stage of train.steps training everything with [train]'s
// schedule; with them, train.steps is the sum of the stages' steps.
//
// A stage may also change the model's context and its plugins' options (ABF's growing RoPE base
// and length, methods.md §5.5): `seq_len` (and `batch_size`, to keep the tokens of a step), and
// [stage.attention] / [stage.router] tables with
// options of the run's attention and router plugins (not other plugins). The model of such a stage
// is assembled anew with those options when the stage begins and takes every tensor of the model
// before it by name, and AdamW keeps its state by name, so it must have the same tensors (checked
// before the first step). A stage whose seq_len differs from the stage before it starts its own
// pass over the training data, in an order of its own (seeded by the stage's index); stages of
// one seq_len in a row share one pass (a new batch_size continues it). A checkpoint's model is the
// model of the stage that trained its last step; eval, generate and export assemble that one.
struct StageOptions {
    std::string name;
    std::int64_t steps = 1;
    // Unset keys take [train]'s (and [data]'s) value when the recipe is loaded.
    double lr_peak = 3e-3;
    double lr_min = 3e-4;
    std::int64_t warmup_steps = 0;
    std::int64_t seq_len = 0;
    std::int64_t batch_size = 0;
    std::vector<std::string> trainable{"*"};
    // Plugin section ("attention", "router") -> the options this stage sets over the run's.
    std::map<std::string, PluginTable> plugin_options;
};

// Starting from a trained model instead of random weights (DSMoE's dense -> MoE conversion,
// methods.md §3.1). Tensors are copied by name; with partition_ffn = n each dense SwiGLU FFN of
// the source becomes the n experts of the MoE block at the same layer, split along the
// intermediate dimension in contiguous slices. Everything the source lacks (routers, gates) keeps
// its fresh initialisation.
struct InitOptions {
    std::string from;                // run directory or checkpoint; "" starts from scratch
    std::int64_t partition_ffn = 0;  // 0: copy tensors as they are; n: split dense FFNs into n
    // Note [Calibration] in the SDK's calibration.h: after copying, layers that can fit parameters
    // to the source model's activations do so on this many training sequences; 0: none.
    std::int64_t calibration_samples = 0;
};

// A routing perturbation as written in a recipe ([eval.perturbation]) or a comparison file;
// core::Perturbation (core/moe/perturbation.h) is its typed form.
struct PerturbationOptions {
    std::string kind = "none";
    double strength = 0;
    std::vector<std::int64_t> layers;   // empty: every MoE layer
    std::vector<std::int64_t> routers;  // empty: every router of a block
    bool renormalize = true;
    bool keep_shared = true;
    std::string none_left = "no_expert";
    std::int64_t seed = 0;
};

struct EvalOptions {
    std::int64_t batch_size = 16;
    std::int64_t max_batches = 0;  // 0: the whole split
    PerturbationOptions perturbation;
};

// How a run is spread over processes (docs/parallel.md, Note [Parallel layout]). Not part of the
// model: a run may resume with another layout.
struct ParallelOptions {
    std::int64_t expert = 1;  // expert-parallel degree: processes that share each bank's experts
};

struct PluginSelection {
    std::string plugin;  // component name
    PluginTable options;
    std::string section;  // recipe table it came from: "tokenizer", "attention", "router"
};

struct Recipe {
    std::filesystem::path file;  // the recipe named on the command line
    std::string name;            // defaults to the file's stem
    std::string description;
    std::int64_t seed = 1;

    PluginsOptions plugins;
    DataOptions data;
    PluginSelection tokenizer;
    ModelOptions model;
    PluginSelection attention;
    MoeOptions moe;
    std::optional<PluginSelection> router;  // present iff model.ffn is FfnKind::kMoe
    InitOptions init;
    TrainOptions train;
    std::vector<StageOptions> stages;  // [[stage]]; empty: one stage (Note [Stages])
    EvalOptions eval;
    ParallelOptions parallel;

    // Where each key (dotted path) was set; keys left at their default are absent.
    std::map<std::string, SourceLocation> locations;
    // Deprecated keys the recipe used, each with what to write instead. The recipe still works;
    // the CLI prints them as warnings.
    std::vector<ConfigIssue> deprecations;

    // The location of `key`, else of its closest set ancestor, else the recipe file itself.
    SourceLocation location_of(const std::string& key) const;
};

}  // namespace moelab::core
