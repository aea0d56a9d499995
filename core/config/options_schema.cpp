#include "core/config/options_schema.h"

#include <cmath>

#include <fmt/format.h>

#include "moelab/kernels/grouped_swiglu.h"

namespace moelab::core {

const OptionsBinding<Recipe>& recipe_top_binding() {
    static const OptionsBinding<Recipe> binding = [] {
        OptionsBinding<Recipe> b;
        b.bind("name", &Recipe::name, "Run name; defaults to the recipe file's stem");
        b.bind("description", &Recipe::description, "What this recipe shows");
        b.bind("seed", &Recipe::seed, "Seed of every random choice of the run").at_least(0);
        return b;
    }();
    return binding;
}

const OptionsBinding<PluginsOptions>& plugins_binding() {
    static const OptionsBinding<PluginsOptions> binding = [] {
        OptionsBinding<PluginsOptions> b;
        b.bind("search_path", &PluginsOptions::search_path,
               "Extra plugin directories, searched after the built-in plugins and "
               "MOELAB_PLUGIN_PATH; relative paths resolve against the recipe file that sets "
               "them (like extends), and each must exist");
        return b;
    }();
    return binding;
}

const OptionsBinding<DataOptions>& data_binding() {
    static const OptionsBinding<DataOptions> binding = [] {
        OptionsBinding<DataOptions> b;
        b.bind("corpus", &DataOptions::corpus,
               "Directory with train.txt, validation.txt and test.txt (relative to the working "
               "directory); for several sources write [[data.source]] tables instead");
        b.bind("seq_len", &DataOptions::seq_len, "Tokens per training sequence (context length)")
            .between(2, 1 << 20);
        b.bind("cache_dir", &DataOptions::cache_dir,
               "Where tokenized corpora are cached, keyed by the tokenizer's hash");
        return b;
    }();
    return binding;
}

const OptionsBinding<StageOptions>& stage_binding() {
    static const OptionsBinding<StageOptions> binding = [] {
        OptionsBinding<StageOptions> b;
        b.bind("name", &StageOptions::name, "Name of the stage in logs and metrics");
        b.bind("steps", &StageOptions::steps, "Optimizer steps of this stage").at_least(1);
        b.bind("lr_peak", &StageOptions::lr_peak,
               "Learning rate after the stage's warm-up (default: train.lr_peak)")
            .between(0, 10);
        b.bind("lr_min", &StageOptions::lr_min,
               "Learning rate at the stage's last step, after cosine decay (default: "
               "train.lr_min)")
            .between(0, 10);
        b.bind("warmup_steps", &StageOptions::warmup_steps,
               "Linear warm-up steps at the start of the stage (default: train.warmup_steps, "
               "capped at the stage's steps)")
            .at_least(0);
        b.bind("seq_len", &StageOptions::seq_len,
               "Tokens per training sequence in this stage (default: data.seq_len); a change "
               "starts a pass over the data of the stage's own")
            .between(2, 1 << 20);
        b.bind("batch_size", &StageOptions::batch_size,
               "Sequences per optimizer step in this stage (default: train.batch_size)")
            .at_least(1);
        b.bind("trainable", &StageOptions::trainable,
               "Glob patterns over parameter names (`*` any characters, `?` one); parameters "
               "matching none are frozen in this stage (default [\"*\"]: everything)");
        return b;
    }();
    return binding;
}

const OptionsBinding<DataSourceOptions>& data_source_binding() {
    static const OptionsBinding<DataSourceOptions> binding = [] {
        OptionsBinding<DataSourceOptions> b;
        b.bind("name", &DataSourceOptions::name,
               "Name of the source in logs, metrics and per-source validation losses (letters, "
               "digits, '-', '_', '.')");
        b.bind("dir", &DataSourceOptions::dir,
               "Directory holding the source's train, validation and test files (train.txt, "
               "train.jsonl, train.json or train.ndjson, optionally .gz or .zst; relative to the "
               "working directory)");
        b.bind("train", &DataSourceOptions::train,
               "Training file (overrides the one in dir); every source has one unless "
               "eval_only = true");
        b.bind("validation", &DataSourceOptions::validation,
               "Validation file (overrides the one in dir)");
        b.bind("test", &DataSourceOptions::test, "Test file (overrides the one in dir)");
        b.bind_choice(
            "format", &DataSourceOptions::format, {"auto", "text", "jsonl", "pairs"},
            "text: documents separated by blank lines; jsonl: one JSON object per "
            "line; pairs: JSONL of (prompt, response) objects whose loss counts the response "
            "only (supervised fine-tuning); auto: jsonl for .jsonl/.json/.ndjson files (before "
            ".gz/.zst), else text");
        b.bind("text_field", &DataSourceOptions::text_field,
               "JSONL: the field holding a document's text");
        b.bind("prompt_field", &DataSourceOptions::prompt_field,
               "pairs: the field holding the prompt (read, never counted in the loss)");
        b.bind("response_field", &DataSourceOptions::response_field,
               "pairs: the field holding the response (counted in the loss, with the "
               "end-of-document token after it)");
        b.bind("weight", &DataSourceOptions::weight,
               "Mixture weight: a training sequence comes from this source with probability "
               "weight / (sum of the weights); a finite number > 0");
        b.bind("eval_only", &DataSourceOptions::eval_only,
               "Evaluate this source (validation and test, reported on its own) but never train "
               "on it: an out-of-domain measurement; it takes no train file and no weight");
        return b;
    }();
    return binding;
}

const OptionsBinding<ModelOptions>& model_binding() {
    static const OptionsBinding<ModelOptions> binding = [] {
        OptionsBinding<ModelOptions> b;
        b.bind("layers", &ModelOptions::layers, "Transformer layers").between(1, 1024);
        b.bind("d_model", &ModelOptions::d_model, "Hidden size").between(1, 1 << 16);
        b.bind("heads", &ModelOptions::heads, "Attention (query) heads").between(1, 1024);
        b.bind("kv_heads", &ModelOptions::kv_heads,
               "Key/value heads for grouped-query attention; 0 means as many as heads")
            .between(0, 1024);
        b.bind("d_ff", &ModelOptions::d_ff, "Intermediate size of the dense SwiGLU FFN layers")
            .between(1, 1 << 20);
        b.bind_choice("ffn", &ModelOptions::ffn,
                      "FFN of every layer: dense SwiGLU, or MoE blocks placed by [moe] and "
                      "routed by [router]");
        b.bind("tie_embeddings", &ModelOptions::tie_embeddings,
               "Share the input embedding with the output projection");
        b.bind("norm_eps", &ModelOptions::norm_eps, "RMSNorm epsilon").between(0, 1);
        b.bind("init_std", &ModelOptions::init_std,
               "Standard deviation of the normal initialisation of weight matrices")
            .between(0, 10);
        b.bind_choice("dtype", &ModelOptions::dtype,
                      "Compute dtype; bfloat16 autocasts matrix products on CUDA while weights, "
                      "routing and the optimizer stay in float32");
        return b;
    }();
    return binding;
}

const OptionsBinding<MoeOptions>& moe_binding() {
    static const OptionsBinding<MoeOptions> binding = [] {
        OptionsBinding<MoeOptions> b;
        b.bind("first_layer", &MoeOptions::first_layer,
               "First MoE layer; layer i is MoE iff i >= first_layer and (i - first_layer) % "
               "interval == 0")
            .at_least(0);
        b.bind("interval", &MoeOptions::interval,
               "Distance between MoE layers: 1 every layer, 2 every other layer")
            .at_least(1);
        b.bind("experts", &MoeOptions::experts, "Routed experts per MoE layer").between(1, 4096);
        b.bind("d_ff_expert", &MoeOptions::d_ff_expert, "Intermediate size of one expert")
            .between(1, 1 << 20);
        b.bind("shared_experts", &MoeOptions::shared_experts,
               "Always-active experts of size d_ff_expert added to every routed block")
            .between(0, 64);
        b.bind("shared_gate", &MoeOptions::shared_gate,
               "Mix routed and shared experts per token with a learned 2-way softmax, "
               "c_0 * routed + c_1 * shared (SMoE-Share, methods.md §2.3); off: shared experts are "
               "added. Routers in gate form only");
        b.bind("capacity_factor", &MoeOptions::capacity_factor,
               "0: dropless; c > 0: an expert keeps at most ceil(c * assignments / experts) "
               "assignments per batch")
            .between(0, 1024);
        b.bind_choice("drop_policy", &MoeOptions::drop_policy,
                      "Which assignments an over-full expert keeps: highest routing weight, or "
                      "earliest tokens");
        std::vector<std::string> kernel_names{"auto"};
        for (const kernels::GroupedSwigluKernel& kernel : kernels::grouped_swiglu_kernels()) {
            kernel_names.emplace_back(kernel.name);
        }
        b.bind_choice("kernel", &MoeOptions::kernel, std::move(kernel_names),
                      "Grouped SwiGLU expert kernel: auto (the first that can run the case), "
                      "grouped (CPU, one GEMM per expert) or reference (LibTorch operators, any "
                      "device); kernels/README.md");
        return b;
    }();
    return binding;
}

const OptionsBinding<TrainOptions>& train_binding() {
    static const OptionsBinding<TrainOptions> binding = [] {
        OptionsBinding<TrainOptions> b;
        b.bind_choice("device", &TrainOptions::device,
                      "Where to train; auto picks CUDA when a device is present");
        b.bind("steps", &TrainOptions::steps, "Optimizer steps").at_least(1);
        b.bind("batch_size", &TrainOptions::batch_size, "Sequences per micro-batch")
            .between(1, 1 << 20);
        b.bind("grad_accum", &TrainOptions::grad_accum, "Micro-batches per optimizer step")
            .between(1, 1 << 16);
        b.bind("lr_peak", &TrainOptions::lr_peak, "Learning rate after warm-up").between(0, 10);
        b.bind("lr_min", &TrainOptions::lr_min, "Learning rate at the end of the cosine decay")
            .between(0, 10);
        b.bind("warmup_steps", &TrainOptions::warmup_steps, "Linear warm-up steps").at_least(0);
        b.bind("weight_decay", &TrainOptions::weight_decay,
               "AdamW decoupled weight decay (matrices only; norms and biases are not decayed)")
            .between(0, 10);
        b.bind("beta1", &TrainOptions::beta1, "AdamW beta1").between(0, 0.999999);
        b.bind("beta2", &TrainOptions::beta2, "AdamW beta2").between(0, 0.999999);
        b.bind("adam_eps", &TrainOptions::adam_eps, "AdamW epsilon").between(0, 1);
        b.bind("grad_clip", &TrainOptions::grad_clip,
               "Clip the global gradient L2 norm to this value; 0 disables")
            .at_least(0);
        b.bind("intra_op_threads", &TrainOptions::intra_op_threads,
               "LibTorch intra-op CPU threads; 0 uses the measured default (docs/threads.md)")
            .between(0, 4096);
        b.bind("blas_threads", &TrainOptions::blas_threads,
               "OpenBLAS threads; 0 uses the measured default (docs/threads.md)")
            .between(0, 4096);
        b.bind("log_every", &TrainOptions::log_every, "Steps between metric records").at_least(1);
        b.bind("eval_every", &TrainOptions::eval_every,
               "Steps between validation evaluations; 0 evaluates only at the end")
            .at_least(0);
        b.bind("eval_batches", &TrainOptions::eval_batches,
               "Validation batches of each periodic evaluation; 0: the whole split (the final "
               "evaluation always uses [eval])")
            .at_least(0);
        b.bind("checkpoint_every", &TrainOptions::checkpoint_every,
               "Steps between checkpoints; 0 checkpoints only at the end")
            .at_least(0);
        b.bind("keep_checkpoints", &TrainOptions::keep_checkpoints,
               "How many most recent checkpoints to keep")
            .at_least(1);
        return b;
    }();
    return binding;
}

const OptionsBinding<InitOptions>& init_binding() {
    static const OptionsBinding<InitOptions> binding = [] {
        OptionsBinding<InitOptions> b;
        b.bind("from", &InitOptions::from,
               "Run directory or checkpoint whose tensors initialise the model (copied by name); "
               "\"\" starts from scratch");
        b.bind("partition_ffn", &InitOptions::partition_ffn,
               "Split each dense SwiGLU FFN of init.from into this many experts along the "
               "intermediate dimension (DSMoE conversion); must equal [moe] experts. 0: no split")
            .between(0, 4096);
        b.bind("calibration_samples", &InitOptions::calibration_samples,
               "After init.from, attention layers that can calibrate (feature init.calibration, "
               "e.g. UniAttn's compensation) fit themselves to init.from's model on this many "
               "training sequences, in layer order. 0: no calibration")
            .between(0, 1000000);
        return b;
    }();
    return binding;
}

const OptionsBinding<EvalOptions>& eval_binding() {
    static const OptionsBinding<EvalOptions> binding = [] {
        OptionsBinding<EvalOptions> b;
        b.bind("batch_size", &EvalOptions::batch_size, "Sequences per evaluation batch")
            .between(1, 1 << 20);
        b.bind("max_batches", &EvalOptions::max_batches,
               "Evaluate at most this many batches; 0 evaluates the whole split")
            .at_least(0);
        return b;
    }();
    return binding;
}

const OptionsBinding<ParallelOptions>& parallel_binding() {
    static const OptionsBinding<ParallelOptions> binding = [] {
        OptionsBinding<ParallelOptions> b;
        b.bind("expert", &ParallelOptions::expert,
               "Expert-parallel degree: each routed bank's experts are split over this many "
               "processes (it divides [moe] experts and the number of processes); the batch is "
               "split over every process (docs/parallel.md)")
            .between(1, 4096);
        return b;
    }();
    return binding;
}

const OptionsBinding<PerturbationOptions>& perturbation_binding() {
    static const OptionsBinding<PerturbationOptions> binding = [] {
        OptionsBinding<PerturbationOptions> b;
        b.bind_choice("kind", &PerturbationOptions::kind,
                      {"none", "disable_top", "logit_noise", "expert_dropout", "random_routing",
                       "forced_balance"},
                      "Routing perturbation of the evaluation (docs/robustness.md): remove each "
                      "token's top-n experts, Gaussian logit noise, expert dropout, random "
                      "routing, or forced uniform load");
        b.bind("strength", &PerturbationOptions::strength,
               "n for disable_top (whole number), sigma for logit_noise, p for expert_dropout, "
               "q for random_routing; unused by forced_balance")
            .at_least(0);
        b.bind("layers", &PerturbationOptions::layers,
               "Transformer layers (0-based) whose MoE blocks are perturbed; [] for all");
        b.bind("routers", &PerturbationOptions::routers,
               "Routers of each block (0-based, in execution order: CartesianMoE has 0 and 1); "
               "[] for all");
        b.bind("renormalize", &PerturbationOptions::renormalize,
               "Renormalise softmax scores over the experts that remain (the paper's protocol)");
        b.bind("keep_shared", &PerturbationOptions::keep_shared,
               "Keep shared experts on (the paper's protocol); false switches them off");
        b.bind_choice("none_left", &PerturbationOptions::none_left, {"no_expert", "fallback"},
                      "A token left with no selectable expert (MaskMoE's rare tokens): no routed "
                      "expert, or the router's fallback scores (MaskMoE: its unmasked router)");
        b.bind("seed", &PerturbationOptions::seed,
               "Seed of the perturbation's random draws (per batch, layer and router)")
            .at_least(0);
        return b;
    }();
    return binding;
}

std::vector<std::pair<std::string, std::string>> check_perturbation(const PerturbationOptions& p) {
    std::vector<std::pair<std::string, std::string>> problems;
    if (p.kind == "disable_top" && p.strength != std::floor(p.strength)) {
        problems.emplace_back("strength", fmt::format("disable_top removes a whole number of "
                                                      "experts; expected an integer n, got {}",
                                                      p.strength));
    }
    if ((p.kind == "expert_dropout" || p.kind == "random_routing") && p.strength > 1) {
        problems.emplace_back("strength", fmt::format("{} takes a probability in [0, 1], got {}",
                                                      p.kind, p.strength));
    }
    for (std::int64_t layer : p.layers) {
        if (layer < 0) {
            problems.emplace_back("layers", fmt::format("layer indices start at 0, got {}", layer));
        }
    }
    for (std::int64_t router : p.routers) {
        if (router < 0) {
            problems.emplace_back("routers",
                                  fmt::format("router indices start at 0, got {}", router));
        }
    }
    return problems;
}

const std::vector<std::string>& host_section_names() {
    static const std::vector<std::string> names = {"plugins", "data",  "model", "moe",
                                                   "init",    "train", "eval",  "parallel"};
    return names;
}

const std::vector<std::string>& plugin_section_names() {
    static const std::vector<std::string> names = {"tokenizer", "attention", "router"};
    return names;
}

}  // namespace moelab::core
