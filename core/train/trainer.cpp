#include "core/train/trainer.h"
#include "core/train/stage_plan.h"

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <ATen/detail/CUDAHooksInterface.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/autograd.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/config/recipe_printer.h"
#include "core/data/dataset.h"
#include "core/data/mixture_batcher.h"
#include "core/dist/launch_environment.h"
#include "core/dist/parallelism.h"
#include "core/eval/split_evaluation.h"
#include "core/metrics/metrics_log.h"
#include "core/model/chunked_lm_loss.h"
#include "core/model/model_assembly.h"
#include "core/model/seeds.h"
#include "core/report/run_report.h"
#include "core/system/atomic_file.h"
#include "core/system/autocast_scope.h"
#include "core/system/build_info.h"
#include "core/system/device.h"
#include "core/system/gemm_peak.h"
#include "core/system/operator_profile.h"
#include "core/system/read_file.h"
#include "core/system/step_profiler.h"
#include "core/system/threads.h"
#include "core/train/adamw.h"
#include "core/train/calibration.h"
#include "core/train/expert_shards.h"
#include "core/train/init_from.h"
#include "core/train/interrupt.h"
#include "core/train/model_state.h"
#include "core/train/progress.h"

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string timestamp() {
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char text[32];
    std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
    return text;
}

fs::path prepare_run_directory(const Recipe& recipe, const RunOptions& options) {
    fs::path dir = options.out_dir.empty()
                       ? fs::path("runs") / fmt::format("{}-{}", recipe.name, timestamp())
                       : options.out_dir;
    const bool has_run = fs::exists(dir / "metrics.jsonl");
    if (options.resume && !has_run) {
        throw RunSetupError(fmt::format(
            "--resume: {} holds no run to resume (no metrics.jsonl); name the run directory "
            "with --out",
            dir.string()));
    }
    if (!options.resume && has_run) {
        throw RunSetupError(
            fmt::format("{} already holds a run; continue it with --resume or choose another --out",
                        dir.string()));
    }
    fs::create_directories(dir / "checkpoints");
    // A save killed part-way leaves a temporary directory or a temporary `latest`; they hold
    // nothing a run needs (every published step-N is complete).
    clean_interrupted_saves(dir / "checkpoints");
    return dir;
}

// Unigram model of the training split with add-one smoothing, evaluated on `tokens` (every token
// but the first, like the language model, and only those the loss counts: Note [Response-only
// loss]): the baseline a language model must beat.
double unigram_perplexity(const Dataset& dataset, TokenView tokens) {
    const at::Tensor counts = dataset.training_token_counts().to(at::kDouble);
    const at::Tensor log_prob =
        at::log((counts + 1.0) / (counts.sum() + static_cast<double>(counts.numel())));
    const double* lp = log_prob.data_ptr<double>();
    double nll = 0;
    std::int64_t counted = 0;
    const std::int64_t vocab = counts.numel();
    const LossMask& mask = tokens.loss_mask();
    constexpr std::int64_t kChunk = 4096;
    bool flags[kChunk];
    for (std::int64_t i = 1; i < tokens.size(); ++i) {
        if (!mask.counts_every_token()) {
            if ((i - 1) % kChunk == 0) {
                mask.fill(i, std::min(kChunk, tokens.size() - i), flags);
            }
            if (!flags[(i - 1) % kChunk]) continue;
        }
        ++counted;
        // Shards are checked for structure when opened, their ids only by `data stats --verify`.
        if (tokens[i] < 0 || tokens[i] >= vocab) {
            throw std::runtime_error(fmt::format(
                "token {} of the evaluated split is id {}, outside the vocabulary of {}: the token "
                "cache is damaged (moelab data stats --verify names the shard)",
                i, tokens[i], vocab));
        }
        nll -= lp[tokens[i]];
    }
    return std::exp(nll / static_cast<double>(std::max<std::int64_t>(1, counted)));
}

// The mixture-weighted mean of the training sources' unigram log-perplexities on `split`
// (Note [Loss of a mixture]); with one training source, its unigram perplexity.
double overall_unigram_perplexity(const Dataset& dataset, Split split) {
    std::vector<const SourceTokens*> training;
    for (const SourceTokens& source : dataset.sources()) {
        if (source.weight > 0 && source.has(split)) training.push_back(&source);
    }
    if (training.size() == 1) return unigram_perplexity(dataset, training[0]->tokens(split));
    double weight_sum = 0, log_ppl = 0;
    for (const SourceTokens* source : training) {
        weight_sum += source->weight;
        log_ppl += source->weight * std::log(unigram_perplexity(dataset, source->tokens(split)));
    }
    return std::exp(log_ppl / std::max(weight_sum, 1e-300));
}

nlohmann::json source_records(const Dataset& data) {
    nlohmann::json records = nlohmann::json::array();
    for (const SourceTokens& source : data.sources()) {
        nlohmann::json tokens = nlohmann::json::object();
        for (Split split : kSplits) {
            if (source.has(split)) tokens[split_name(split)] = source.tokens(split).size();
        }
        records.push_back({{"name", source.name}, {"weight", source.weight}, {"tokens", tokens}});
    }
    return records;
}

// The checkpoint's data position for this run's mixture: every source by name, which must be
// this run's sources (a checkpoint from before sources has one, without a name).
MixturePosition saved_mixture_position(const CheckpointState& state,
                                       const MixtureBatcher& batcher) {
    MixturePosition position;
    position.sequences = state.data_sequences;
    std::vector<std::string> saved_names, run_names;
    for (std::size_t s = 0; s < batcher.size(); ++s) run_names.push_back(batcher.name(s));
    bool same = state.data_sources.size() == batcher.size();
    for (std::size_t s = 0; s < state.data_sources.size(); ++s) {
        const SourcePosition& saved = state.data_sources[s];
        saved_names.push_back(saved.name);
        same = same && (saved.name.empty() || saved.name == run_names[s]);
        position.sources.push_back({saved.epoch, saved.cursor});
    }
    if (!same) {
        throw RunSetupError(fmt::format(
            "--resume: the checkpoint's data sources ({}) are not this recipe's ({}); the corpus "
            "changed since it was written",
            fmt::join(saved_names, ", "), fmt::join(run_names, ", ")));
    }
    return position;
}

// The job this process belongs to, from the launcher's environment; a malformed one is a usage
// error.
std::optional<LaunchEnvironment> read_launch_environment() {
    try {
        return launch_environment();
    } catch (const std::invalid_argument& error) {
        throw RunSetupError(error.what());
    }
}

// The processes of this run: one, or the job torchrun or `moelab launch` started (Note [Parallel
// layout]). Checks what only the job's size can tell (usage errors, exit 2) before meeting the
// other processes.
std::shared_ptr<Parallelism> join_job(const ResolvedRecipe& resolved, DeviceChoice device,
                                      const std::optional<LaunchEnvironment>& env) {
    const Recipe& recipe = resolved.recipe;
    const std::int64_t degree = recipe.parallel.expert;
    const int world = env ? env->world_size : 1;
    auto refuse = [&](const std::string& key, const std::string& message) {
        throw ConfigError(ConfigIssue{recipe.location_of(key), key, message});
    };
    if (world % degree != 0) {
        refuse("parallel.expert",
               fmt::format("needs a number of processes divisible by {}, got {}{}", degree, world,
                           world == 1 ? " (start the run with `moelab launch -n N -- run ...` "
                                        "or torchrun)"
                                      : ""));
    }
    // With stages, theirs are the batch sizes used (each defaults to train.batch_size).
    if (recipe.stages.empty() && recipe.train.batch_size % world != 0) {
        refuse("train.batch_size",
               fmt::format("is split over the {} processes: it must be a multiple of {}, got {}",
                           world, world, recipe.train.batch_size));
    }
    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        if (recipe.stages[i].batch_size % world == 0) continue;
        refuse(fmt::format("stage[{}].batch_size", i),
               fmt::format("is split over the {} processes: it must be a multiple of {}, got {}",
                           world, world, recipe.stages[i].batch_size));
    }
    if (world == 1) return Parallelism::single();
    check_parallel_support(resolved, world);
    if (!recipe.init.from.empty()) {
        refuse("init.from",
               "is not supported with several processes yet: initialise in one process "
               "(moelab run ... --set parallel.expert=1 --stop-after 1 writes a checkpoint), then "
               "continue that run with --resume under the launcher");
    }
    return Parallelism::join(
        DistributedJob::connect(
            *env, device == DeviceChoice::kCuda ? Transport::kNccl : Transport::kGloo),
        static_cast<int>(degree));
}

class TrainingRun {
  public:
    TrainingRun(const ResolvedRecipe& resolved, const RunOptions& options)
        : resolved_(resolved),
          recipe_(resolved.recipe),
          train_(recipe_.train),
          options_(options),
          progress_(stdout, recipe_.train.steps) {}

    RunResult run();

  private:
    // Only the first process speaks and writes the run directory; the others compute.
    void log(const std::string& line) {
        if (leader_) progress_.note(line);
    }
    void average_gradients();
    void setup();
    void restore(const fs::path& step_dir);
    // Note [Calibration]: fits the calibrating layers to init.from's model, into calibration.json.
    void calibrate(const Dataset& data);
    void train_step();
    void enter_stage(const StagePosition& position);
    // Note [Stages]: the model with stage `index`'s plugin options, holding the current model's
    // tensors and AdamW's state; and the training data of stage `index`: its pass over the data
    // (continued where the stage before shares it), in batches of its batch_size.
    std::shared_ptr<LanguageModel> assemble_stage_model(std::size_t index) const;
    void check_stage_models();
    // ConfigError at stage[i].seq_len where a training source holds less than one sequence.
    void check_stage_lengths() const;
    void switch_model(std::size_t index);
    void use_data_of_stage(std::size_t index);
    // The first stage of the run of stages that ends at `index` and shares its seq_len.
    std::size_t data_pass_origin(std::size_t index) const;
    // The sequence length of the current model: a stage with another one gets its own model.
    std::int64_t seq_len() const { return stages_->stage(model_stage_).seq_len; }
    // parameters_, their names and the optimizer, for model_.
    void collect_parameters();
    void write_train_record(double window_seconds, std::int64_t window_steps);
    // Training tokens/s, model FLOPs, achieved GFLOP/s and MFU (null where unknown).
    nlohmann::json throughput_summary() const;
    // Achieved GFLOP/s and MFU at `tokens_per_second`; nullopt where the model FLOPs or the peak
    // are unknown.
    struct Rates {
        std::optional<double> gflops, mfu;
    };
    Rates rates_at(double tokens_per_second) const {
        Rates rates;
        if (!train_flops_per_token_) return rates;
        rates.gflops = tokens_per_second * *train_flops_per_token_ / 1e9;
        if (gemm_peak_) rates.mfu = *rates.gflops / *all_processes_peak();
        return rates;
    }
    // What MFU divides by: every process's GEMM peak (each measures its own threads; the
    // leader's stands for all). nullopt before it is measured, and in other processes.
    std::optional<double> all_processes_peak() const {
        if (!gemm_peak_) return std::nullopt;
        return gemm_peak_->gflops * parallel_->layout().world;
    }
    SplitEvaluation evaluate_split(Split split, std::int64_t max_batches);
    fs::path save(const std::string& why);
    void diverged(const std::string& what, double value);
    // Rewrites report.html so a long run can be watched in a browser; a report that cannot be
    // written (chart libraries missing) is a warning, once, never a failed run.
    void refresh_report();
    bool report_warned_ = false;
    void finish();
    // profile.json and the table on the terminal, when profiling.
    void write_profile();

    const ResolvedRecipe& resolved_;
    const Recipe& recipe_;
    const TrainOptions& train_;
    RunOptions options_;
    ProgressReporter progress_;
    std::optional<GemmPeak> gemm_peak_;            // the leader's
    std::optional<double> train_flops_per_token_;  // of the last logged window
    double train_tokens_ = 0, train_seconds_ = 0;  // over the logged training windows

    fs::path run_dir_;
    std::shared_ptr<Parallelism> parallel_;
    bool leader_ = true;
    // Parameters with the same gradient in every process, and expert shares (Note [Parallel
    // layout]); expert_shards_ names the latter for checkpoints.
    std::vector<at::Tensor> replicated_parameters_, sharded_parameters_;
    std::map<std::string, ExpertShard> expert_shards_;
    at::Device device_ = at::kCPU;
    bool bf16_ = false;
    std::optional<Dataset> dataset_;
    std::shared_ptr<LanguageModel> model_;
    std::vector<at::Tensor> parameters_;
    std::vector<std::string> parameter_names_;  // parallel to parameters_
    std::unique_ptr<AdamW> optimizer_;
    std::unique_ptr<StepProfiler> profiler_;             // with --profile, after the warm-up steps
    std::unique_ptr<OperatorProfile> operator_profile_;  // with --profile-operators, likewise
    // Note [Stages]: the plan, which parameters each stage trains (parallel to parameters_), and
    // the stage the parameters are set up for (-1: none yet).
    std::unique_ptr<StagePlan> stages_;
    std::vector<std::vector<bool>> trainable_;
    std::int64_t current_stage_ = -1;
    std::size_t model_stage_ = 0;           // whose options and seq_len model_ was assembled with
    std::set<std::string> option_buffers_;  // buffers computed from a stage's options
    std::size_t data_pass_stage_ = 0;       // where the batcher's pass over the data began
    std::int64_t batch_size_ = 0;           // the batcher's
    std::unique_ptr<MixtureBatcher> batcher_;
    std::unique_ptr<MetricsLog> metrics_;
    std::string recipe_hash_;

    std::int64_t step_ = 0;
    std::int64_t tokens_seen_ = 0;
    double elapsed_before_ = 0;  // wall time of earlier invocations (resume)
    Clock::time_point started_ = Clock::now();
    std::string last_checkpoint_;

    // The current logging window.
    RoutingStats window_stats_;
    double window_loss_ = 0, window_lm_ = 0, window_aux_ = 0, window_grad_norm_ = 0;
    std::optional<std::int64_t> window_loss_targets_;  // with prompts: targets the loss counted
    double last_lr_ = 0;
    std::int64_t window_start_tokens_ = 0;
};

void TrainingRun::setup() {
    // Start-up is measured from here (LibTorch's own start excluded): data, model, optimizer.
    const auto setup_start = Clock::now();
    const DeviceChoice device = resolve_device(recipe_);
    device_ = torch_device(device);
    bf16_ = device == DeviceChoice::kCuda && recipe_.model.dtype == ComputeDtype::kBfloat16;
    const std::optional<LaunchEnvironment> env = read_launch_environment();
    apply_threads(recipe_threads(train_.intra_op_threads, train_.blas_threads,
                                 env ? env->local_world_size : 1));
    at::manual_seed(static_cast<std::uint64_t>(recipe_.seed));
    parallel_ = join_job(resolved_, device, env);
    const ParallelLayout& layout = parallel_->layout();
    leader_ = layout.rank == 0;
    // What MFU is measured against (core/system/gemm_peak.h), measured first, while this process
    // does nothing else: measured after the data and the model are set up, the same product
    // gives 125 instead of 200 GFLOP/s on this project's 2-core machine.
    // Its seconds are start-up's but not the data's: startup_s keeps them apart.
    const auto peak_start = Clock::now();
    if (leader_) gemm_peak_ = gemm_peak(device_, bf16_ ? at::kBFloat16 : at::kFloat);
    const double peak_seconds = seconds_since(peak_start);
    if (device_.is_cuda() && parallel_->distributed()) {
        device_ = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(layout.local_rank));
    }

    // The first process makes the run directory (and the data: tokenizer and token cache); the
    // others learn its path and then read what it wrote.
    if (leader_) run_dir_ = prepare_run_directory(recipe_, options_);
    run_dir_ = broadcast_text(parallel_->world(), run_dir_.string(), 0, device_);
    recipe_hash_ = recipe_hash(resolved_);
    auto say = [this](const std::string& line) { log(line); };
    auto prepare_with_run_tokenizer = [&] {
        const fs::path tokenizer_file = run_dir_ / "tokenizer.txt";
        if (!fs::exists(tokenizer_file)) {
            throw RunSetupError(
                fmt::format("--resume: {} is missing; the run directory is "
                            "incomplete",
                            tokenizer_file.string()));
        }
        dataset_.emplace(Dataset::prepare_with_tokenizer(resolved_, tokenizer_file, say));
    };
    // The first process prepares the data (tokenizer, token cache: never two writers) and, for a
    // new run, writes the recipe and the tokenizer; the others then read what it made.
    if (leader_ && options_.resume) prepare_with_run_tokenizer();
    if (leader_ && !options_.resume) {
        dataset_.emplace(Dataset::prepare(resolved_, say));
        write_file_atomically(run_dir_ / "recipe.resolved.toml",
                              format_recipe(recipe_, resolved_.plugin_params()));
        write_file_atomically(run_dir_ / "tokenizer.txt", dataset_->serialized_tokenizer());
    }
    parallel_->world().barrier();
    if (!leader_) prepare_with_run_tokenizer();
    const double data_seconds = seconds_since(setup_start) - peak_seconds;
    const Dataset& data = *dataset_;
    stages_ = std::make_unique<StagePlan>(recipe_);
    model_ = assemble_model(
        stage_recipe(resolved_, 0), device, data.vocab_size(),
        [&data] { return data.training_token_counts(); }, {}, parallel_->experts_handle());
    expert_shards_ = model_->expert_shards();
    if (!recipe_.init.from.empty() && !options_.resume) {
        const InitReport init = initialize_from(*model_, recipe_, dataset_->serialized_tokenizer());
        std::string fresh;
        for (const std::string& name : init.fresh) fresh += (fresh.empty() ? "" : ", ") + name;
        log(fmt::format(
            "initialised from {}: {} tensors copied, {} dense FFNs split into {} "
            "experts, {} source tensors unused, {} tensors keep their fresh "
            "initialisation{}{}",
            init.checkpoint, init.copied, init.partitioned_layers, recipe_.init.partition_ffn,
            init.unused.size(), init.fresh.size(), fresh.empty() ? "" : ": ", fresh));
    }
    model_->to(device_);
    if (recipe_.init.calibration_samples > 0 && !options_.resume) calibrate(data);
    collect_parameters();
    // Every stage's patterns and model are checked against the model now, before any step.
    trainable_ = stages_->trainable(recipe_, parameter_names_);
    check_stage_models();
    check_stage_lengths();
    use_data_of_stage(0);
    if (options_.resume) {
        if (const auto step_dir = newest_checkpoint(run_dir_ / "checkpoints")) {
            restore(*step_dir);
        } else {
            // Stopped before its first checkpoint was published: nothing to restore, and the same
            // run from step 0 is what resuming means.
            if (leader_) MetricsLog::truncate_after(run_dir_ / "metrics.jsonl", 0);
            log(fmt::format("--resume: {} holds no complete checkpoint yet; starting from step 0",
                            (run_dir_ / "checkpoints").string()));
        }
    }

    if (!leader_) return;
    metrics_ = std::make_unique<MetricsLog>(run_dir_ / "metrics.jsonl");
    const BuildInfo build = build_info();
    const ParameterCounts counts = model_->parameter_counts();
    const ThreadSettings threads = current_threads();
    metrics_->write(
        {{"type", "run"},
         {"recipe", recipe_.name},
         {"recipe_hash", recipe_hash_},
         {"moelab_version", build.moelab_version},
         {"sdk_version", build.sdk_version},
         {"build_fingerprint", build.build_fingerprint},
         {"torch_version", build.torch_version},
         {"device", name_of(device)},
         {"dtype", name_of(recipe_.model.dtype)},
         {"threads", {{"intra_op", threads.intra_op}, {"blas", threads.blas}}},
         {"plugins", plugin_records(resolved_)},
         {"parameters", {{"total", counts.total}, {"expert", counts.expert}}},
         {"tokens",
          {{"train", data.total_tokens(Split::kTrain)},
           {"validation", data.total_tokens(Split::kValidation)},
           {"test", data.total_tokens(Split::kTest)}}},
         {"sources", source_records(data)},
         {"vocab_size", data.vocab_size()},
         {"parallel", {{"processes", layout.world}, {"expert_degree", layout.expert_degree}}},
         {"startup_s",
          {{"gemm_peak", peak_seconds},
           {"data", data_seconds},
           {"total", seconds_since(setup_start)}}},
         {"resumed_from_step", options_.resume ? nlohmann::json(step_) : nullptr},
         {"gemm_peak",
          {{"gflops", gemm_peak_->gflops},
           {"what", gemm_peak_->description},
           {"source", gemm_peak_->source}}}});
    log(fmt::format("run directory: {}", run_dir_.string()));
    log(fmt::format("GEMM peak {:.1f} GFLOP/s ({}; {}): the reference of MFU", gemm_peak_->gflops,
                    gemm_peak_->description, gemm_peak_->source));
    if (parallel_->distributed()) {
        log(fmt::format(
            "{} processes: expert parallelism of degree {}, each process {} of the {} "
            "sequences of a batch",
            layout.world, layout.expert_degree, layout.local_rows(stages_->stage(0).batch_size),
            stages_->stage(0).batch_size));
    }
    log(
        fmt::format("model: {:.2f}M parameters ({:.2f}M in experts), vocab {}, device {}, "
                    "threads {}/{}",
                    counts.total / 1e6, counts.expert / 1e6, data.vocab_size(), name_of(device),
                    threads.intra_op, threads.blas));
}

void TrainingRun::calibrate(const Dataset& data) {
    if (!options_.load_reference_model) {
        throw RunSetupError(
            "init.calibration_samples: this command cannot load init.from's model to calibrate "
            "against; use moelab run");
    }
    if (calibrating_layers(*model_).empty()) {
        throw RunSetupError(fmt::format(
            "init.calibration_samples: no layer of this model has anything to calibrate "
            "(attention '{}' lists {}, but none of its layers is Calibrated with something to fit)",
            recipe_.attention.plugin, sdk::feature::kCalibration));
    }
    const std::shared_ptr<LanguageModel> reference =
        options_.load_reference_model(recipe_.init.from, resolve_device(recipe_));
    reference->to(device_);
    // The first training source's first sequences: fixed, whatever the mixture draws.
    const auto source = std::find_if(data.sources().begin(), data.sources().end(),
                                     [](const SourceTokens& s) { return s.has(Split::kTrain); });
    if (source == data.sources().end()) {
        throw RunSetupError("init.calibration_samples: the recipe has no training source");
    }
    const at::Tensor sequences = calibration_sequences(source->tokens(Split::kTrain),
                                                       recipe_.init.calibration_samples, seq_len());
    log(fmt::format("calibrating against {} on {} sequences of {} tokens", recipe_.init.from,
                    sequences.size(0), sequences.size(1)));
    const CalibrationReport report =
        calibrate_layers(*model_, *reference, sequences, train_.batch_size, device_,
                         [this](const std::string& line) { log(line); });
    nlohmann::json layers = nlohmann::json::array();
    for (const CalibratedLayer& layer : report.layers) {
        layers.push_back({{"layer", layer.layer},
                          {"rms_error_before", layer.rms_error_before},
                          {"rms_error_after", layer.rms_error_after}});
    }
    if (leader_) {
        write_file_atomically(run_dir_ / "calibration.json",
                              nlohmann::json{{"from", recipe_.init.from},
                                             {"samples", report.samples},
                                             {"seq", report.seq},
                                             {"layers", layers}}
                                      .dump(2) +
                                  "\n");
    }
}

void TrainingRun::restore(const fs::path& step_dir) {
    const LoadedCheckpoint checkpoint = load_checkpoint(step_dir);
    const std::string& saved_hash = checkpoint.state.recipe_hash;
    bool same_recipe = saved_hash == recipe_hash_;
    if (!same_recipe && options_.rehash_stored_recipe) {
        // Note [Recipe hash across plugin versions]: the same recipe under today's defaults?
        try {
            same_recipe =
                options_.rehash_stored_recipe(run_dir_ / "recipe.resolved.toml") == recipe_hash_;
        } catch (const std::exception&) {
            same_recipe = false;  // unreadable or no longer valid: the refusal below says why
        }
        if (same_recipe) {
            log(
                fmt::format("--resume: {} was trained before moelab or a plugin gained options; "
                            "with their "
                            "defaults its recipe is the one given",
                            step_dir.string()));
        }
    }
    if (!same_recipe) {
        throw RunSetupError(fmt::format(
            "--resume: the recipe differs from the one {} was trained with (recipe hash {} vs "
            "{}); compare with {}",
            step_dir.string(), recipe_hash_, saved_hash,
            (run_dir_ / "recipe.resolved.toml").string()));
    }
    // Checkpoints hold every expert; this process keeps its own (expert_shards.h).
    load_model_tensors(*model_, select_expert_shards(checkpoint.model, expert_shards_));
    step_ = checkpoint.state.step;
    optimizer_->load_state(
        select_expert_shards(checkpoint.optimizer, expert_shards_),
        checkpoint.state.optimizer_steps,
        checkpoint.state.parameter_steps ? &*checkpoint.state.parameter_steps : nullptr);
    restore_rng_state(checkpoint.optimizer, device_.is_cuda());
    // The model of the stage that trained the checkpoint's last step (Note [Stages]), as the
    // uninterrupted run holds it here; also what a finished run's evaluations need.
    const std::size_t trained_by = stage_of_weights(recipe_, step_);
    if (!same_stage_model(resolved_, model_stage_, trained_by)) switch_model(trained_by);
    // The pass over the data the checkpoint's last step drew from (Note [Stages]).
    batcher_.reset();
    use_data_of_stage(trained_by);
    batcher_->restore(saved_mixture_position(checkpoint.state, *batcher_));
    tokens_seen_ = checkpoint.state.tokens_seen;
    window_start_tokens_ = tokens_seen_;
    elapsed_before_ = checkpoint.state.elapsed_seconds;
    last_checkpoint_ = step_dir.string();
    if (leader_) MetricsLog::truncate_after(run_dir_ / "metrics.jsonl", step_);
    log(fmt::format("resumed from {} (step {})", step_dir.string(), step_));
}

void TrainingRun::diverged(const std::string& what, double value) {
    const std::string kept = last_checkpoint_.empty()
                                 ? "no checkpoint had been written yet"
                                 : "the last good checkpoint is " + last_checkpoint_;
    const std::string message = fmt::format(
        "training diverged at step {}: {} is {}; stopped without saving ({}). Lower "
        "train.lr_peak, raise train.warmup_steps or set train.grad_clip",
        step_ + 1, what, value, kept);
    if (leader_) metrics_->write({{"type", "error"}, {"step", step_ + 1}, {"message", message}});
    throw TrainingDiverged(message);
}

void TrainingRun::collect_parameters() {
    parameters_.clear();
    parameter_names_.clear();
    replicated_parameters_.clear();
    sharded_parameters_.clear();
    std::vector<NamedParameter> named;
    for (const auto& item : model_->named_parameters()) {
        named.push_back({item.key(), item.value(), item.value().dim() >= 2});
        parameters_.push_back(item.value());
        parameter_names_.push_back(item.key());
        (expert_shards_.count(item.key()) != 0 ? sharded_parameters_ : replicated_parameters_)
            .push_back(item.value());
    }
    optimizer_ = std::make_unique<AdamW>(
        named, AdamWOptions{train_.beta1, train_.beta2, train_.adam_eps, train_.weight_decay});
}

std::shared_ptr<LanguageModel> TrainingRun::assemble_stage_model(std::size_t index) const {
    // Modules draw their initialisation from generators of their own (language_model.h); the
    // run's generators are kept all the same, so that a new stage's model cannot shift what the
    // run draws next (--resume across a stage must give the same steps).
    const bool cuda = device_.is_cuda();
    std::map<std::string, at::Tensor> generators;
    for (NamedTensor& saved : rng_state(cuda)) generators.emplace(saved.name, saved.tensor);
    const Dataset& data = *dataset_;
    std::shared_ptr<LanguageModel> model = assemble_model(
        stage_recipe(resolved_, index), resolve_device(recipe_), data.vocab_size(),
        [&data] { return data.training_token_counts(); }, {}, parallel_->experts_handle());
    restore_rng_state(generators, cuda);
    return model;
}

// A stage's model takes its predecessor's tensors by name: the same names, shapes and order, or
// the recipe is refused before training starts rather than at the stage's first step. Buffers
// whose fresh values differ between stages are computed from the options (a hash router's table,
// MaskMoE's mask): a stage keeps its own (option_buffers_).
void TrainingRun::check_stage_models() {
    bool one_model = true;
    for (std::size_t i = 1; i < stages_->size(); ++i) {
        one_model = one_model && same_stage_model(resolved_, 0, i);
    }
    if (one_model) return;  // nothing to compare, and no model to assemble
    // Fresh models: model_ may hold init.from's tensors.
    const std::shared_ptr<LanguageModel> first = assemble_stage_model(0);
    std::vector<std::string> names;
    std::map<std::string, at::Tensor> tensors;
    for (NamedTensor& tensor : model_tensors(*first)) {
        names.push_back(tensor.name);
        tensors.emplace(tensor.name, tensor.tensor);
    }
    for (std::size_t i = 1; i < stages_->size(); ++i) {
        bool seen = false;
        for (std::size_t j = 0; j < i && !seen; ++j) seen = same_stage_model(resolved_, i, j);
        if (seen) continue;
        // A stage without options of its own has the run's, which differ from stage 1's.
        const std::map<std::string, sdk::Params>& own = resolved_.stage_params.at(i);
        const std::string key = own.size() == 1 ? fmt::format("stage[{}].{}", i, own.begin()->first)
                                                : fmt::format("stage[{}]", i);
        const std::shared_ptr<LanguageModel> model = assemble_stage_model(i);
        std::vector<std::string> differences, order;
        std::map<std::string, at::Tensor> missing = tensors;
        for (const NamedTensor& tensor : model_tensors(*model)) {
            order.push_back(tensor.name);
            auto it = missing.find(tensor.name);
            if (it == missing.end()) {
                differences.push_back(fmt::format("{} is new", tensor.name));
                continue;
            }
            if (it->second.sizes() != tensor.tensor.sizes()) {
                differences.push_back(fmt::format("{} is {} instead of {}", tensor.name,
                                                  tensor.tensor.sizes(), it->second.sizes()));
            }
            missing.erase(it);
        }
        for (const auto& [name, tensor] : missing) {
            differences.push_back(fmt::format("{} is gone", name));
        }
        // Which parameters each stage trains is kept by position.
        if (differences.empty() && order != names) {
            differences.push_back("the same tensors in another order");
        }
        if (!differences.empty()) {
            throw ConfigError(ConfigIssue{
                recipe_.location_of(key), key,
                fmt::format(
                    "the stage's options change the model's tensors ({}{}); a stage's "
                    "model takes over the tensors of the one before it, so it may change "
                    "only options that keep them",
                    fmt::join(differences.begin(),
                              differences.begin() + std::min<std::size_t>(differences.size(), 3),
                              "; "),
                    differences.size() > 3 ? "; ..." : "")});
        }
        for (const auto& buffer : model->named_buffers()) {
            if (!at::equal(buffer.value(), tensors.at(buffer.key()))) {
                option_buffers_.insert(buffer.key());
            }
        }
    }
}

void TrainingRun::check_stage_lengths() const {
    for (std::size_t i = 0; i < recipe_.stages.size(); ++i) {
        const std::int64_t seq_len = recipe_.stages[i].seq_len;
        for (const SourceTokens& source : dataset_->sources()) {
            if (source.weight <= 0 || !source.has(Split::kTrain)) continue;
            const std::int64_t tokens = source.tokens(Split::kTrain).size();
            if (tokens >= seq_len + 1) continue;
            const std::string key = fmt::format("stage[{}].seq_len", i);
            throw ConfigError(ConfigIssue{
                recipe_.location_of(key), key,
                fmt::format("is {}, but source '{}' has {} training tokens, fewer than one "
                            "sequence of seq_len + 1",
                            seq_len, source.name, tokens)});
        }
    }
}

void TrainingRun::switch_model(std::size_t index) {
    std::shared_ptr<LanguageModel> model = assemble_stage_model(index);
    model->to(device_);
    std::map<std::string, at::Tensor> tensors;
    for (NamedTensor& tensor : model_tensors(*model_)) tensors.emplace(tensor.name, tensor.tensor);
    for (const auto& buffer : model->named_buffers()) {
        if (option_buffers_.count(buffer.key()) != 0)
            tensors[buffer.key()] = buffer.value().clone();
    }
    load_model_tensors(*model, tensors);
    std::map<std::string, at::Tensor> moments;
    for (NamedTensor& tensor : optimizer_->state()) moments.emplace(tensor.name, tensor.tensor);
    const std::int64_t optimizer_steps = optimizer_->steps();
    const std::map<std::string, std::int64_t> parameter_steps = optimizer_->parameter_steps();
    model_ = std::move(model);
    collect_parameters();
    optimizer_->load_state(moments, optimizer_steps, &parameter_steps);
    model_stage_ = index;
}

std::size_t TrainingRun::data_pass_origin(std::size_t index) const {
    while (index > 0 && stages_->stage(index - 1).seq_len == stages_->stage(index).seq_len) {
        --index;
    }
    return index;
}

void TrainingRun::use_data_of_stage(std::size_t index) {
    const std::size_t origin = data_pass_origin(index);
    const std::int64_t batch_size = stages_->stage(index).batch_size;
    const bool continues = batcher_ != nullptr && origin == data_pass_stage_;
    if (continues && batch_size == batch_size_) return;
    // The position counts sequences, not batches: another batch size reads on from it.
    const MixturePosition position = continues ? batcher_->position() : MixturePosition{};
    std::vector<MixtureSource> mixture;
    for (const SourceTokens& source : dataset_->sources()) {
        if (source.weight > 0)
            mixture.push_back({source.name, source.weight, source.tokens(Split::kTrain)});
    }
    // The first pass keeps the seed it always had, so runs without seq_len stages are unchanged.
    const std::uint64_t seed =
        origin == 0 ? derive_seed(recipe_.seed, "data", 0)
                    : derive_seed(recipe_.seed, "data.stage", static_cast<std::int64_t>(origin));
    batcher_ =
        std::make_unique<MixtureBatcher>(mixture, stages_->stage(origin).seq_len, batch_size, seed);
    if (continues) batcher_->restore(position);
    data_pass_stage_ = origin;
    batch_size_ = batch_size;
}

// Note [Stages]: assembles the stage's model where its plugin options differ, starts its pass over
// the data where its seq_len differs, freezes the parameters outside the stage's patterns (they
// get no gradient, so AdamW neither updates them nor creates their state) and says how much the
// stage trains.
void TrainingRun::enter_stage(const StagePosition& position) {
    // What the stage changes from the stage before it (the first: from the run's tables), also
    // where it returns to the run's options; the same whether or not the run was resumed here.
    std::vector<std::string> changes;
    const ResolvedRecipe before =
        position.index == 0 ? resolved_ : stage_recipe(resolved_, position.index - 1);
    const ResolvedRecipe after = stage_recipe(resolved_, position.index);
    auto compare = [&](const char* section, const sdk::Params& old_options,
                       const sdk::Params& new_options) {
        for (const auto& [key, value] : new_options.values()) {
            auto old_value = old_options.values().find(key);
            if (old_value != old_options.values().end() && old_value->second == value) continue;
            changes.push_back(fmt::format("{}.{} = {}", section, key, format_param_value(value)));
        }
    };
    compare("attention", before.attention_params, after.attention_params);
    compare("router", before.router_params, after.router_params);
    const StageOptions& options = stages_->stage(position.index);
    const std::int64_t batch_before = position.index == 0
                                          ? recipe_.train.batch_size
                                          : stages_->stage(position.index - 1).batch_size;
    if (before.recipe.data.seq_len != options.seq_len) {
        changes.push_back(fmt::format("seq_len = {}", options.seq_len));
    }
    if (batch_before != options.batch_size) {
        changes.push_back(fmt::format("batch_size = {}", options.batch_size));
    }
    if (!same_stage_model(resolved_, model_stage_, position.index)) switch_model(position.index);
    use_data_of_stage(position.index);
    const std::vector<bool>& mask = trainable_[position.index];
    std::int64_t trainable = 0, total = 0, tensors = 0;
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
        parameters_[i].requires_grad_(mask[i]);
        // Parameters of the whole model, also where this process holds a share of the experts.
        std::int64_t numel = parameters_[i].numel();
        if (auto it = expert_shards_.find(parameter_names_[i]); it != expert_shards_.end()) {
            numel = it->second.whole_numel(numel);
        }
        total += numel;
        if (mask[i]) {
            trainable += numel;
            ++tensors;
        }
    }
    current_stage_ = static_cast<std::int64_t>(position.index);
    const StageOptions& stage = stages_->stage(position.index);
    if (stages_->size() > 1 || trainable != total) {
        log(fmt::format(
            "stage {}/{} '{}' ({} steps{}): {} of {} parameters trainable ({:.3g}%, "
            "{} of {} tensors){}",
            position.index + 1, stages_->size(), stage.name, stage.steps,
            position.step_in_stage > 0 ? fmt::format(", resumed after {}", position.step_in_stage)
                                       : std::string(),
            trainable, total, 100.0 * static_cast<double>(trainable) / total, tensors,
            parameters_.size(),
            changes.empty() ? std::string() : fmt::format("; {}", fmt::join(changes, ", "))));
    }
    if (leader_) {
        metrics_->write({{"type", "stage"},
                         {"step", step_},
                         {"stage", position.index},
                         {"name", stage.name},
                         {"steps", stage.steps},
                         {"step_in_stage", position.step_in_stage},
                         {"seq_len", seq_len()},
                         {"changes", changes},
                         {"trainable_parameters", trainable},
                         {"trainable_tensors", tensors},
                         {"total_parameters", total}});
    }
}

void TrainingRun::train_step() {
    StepProfiler* const profiler = profiler_.get();
    const auto mark = [profiler](StepPhase phase) {
        if (profiler != nullptr) profiler->mark(phase);
    };
    if (profiler != nullptr) profiler->begin_step();
    mark(StepPhase::kData);
    const std::int64_t tokens_before = tokens_seen_;
    const double lr = stages_->learning_rate(step_);
    at::Tensor lm_sum = at::zeros({}, at::TensorOptions().device(device_));
    at::Tensor aux_sum = at::zeros({}, at::TensorOptions().device(device_));
    ForwardOptions forward;
    forward.training = true;
    forward.step = step_;
    forward.stats = &window_stats_;
    forward.batch_reduction = &parallel_->batch();
    const ParallelLayout& layout = parallel_->layout();
    // Every process draws the same global batch and takes its own rows (Note [Parallel layout]):
    // the data position is the same everywhere and does not depend on the layout. The whole
    // step's micro-batches are drawn first, so that with prompts the loss can be the mean over the
    // step's counted targets (Note [Response-only loss]).
    std::vector<TokenBatch> micro_batches;
    for (std::int64_t micro = 0; micro < train_.grad_accum; ++micro) {
        micro_batches.push_back(batcher_->next());
    }
    const bool has_prompts = micro_batches.front().loss_mask.defined();
    // With prompts, each process's summed loss is scaled so that the mean over micro-batches and
    // processes below is the sum over the global batch divided by its counted targets. A step
    // without any counts nothing (0, not NaN).
    double prompt_scale = 0;
    if (has_prompts) {
        std::int64_t step_targets = 0;  // counted targets of the global batch
        for (const TokenBatch& batch : micro_batches) step_targets += batch.loss_targets();
        window_loss_targets_ = window_loss_targets_.value_or(0) + step_targets;
        if (step_targets > 0) {
            prompt_scale = static_cast<double>(train_.grad_accum * layout.world) /
                           static_cast<double>(step_targets);
        }
    }
    forward.micro_batches = train_.grad_accum;
    // On the CPU in float32 the LM head and the loss run chunk by chunk (Note [Chunked LM loss]);
    // under CUDA autocast the head is a bfloat16 product and the loss the plain one.
    forward.hidden_only = !bf16_ && device_.is_cpu();
    for (const TokenBatch& batch : micro_batches) {
        const std::int64_t rows = batch.rows();
        mark(StepPhase::kData);
        const TokenBatch part =
            batch.narrow_rows(layout.first_row(rows), layout.local_rows(rows)).to(device_);
        const at::Tensor inputs = part.inputs();
        at::Tensor lm, aux;
        {
            mark(StepPhase::kForward);
            CudaAutocastScope autocast(bf16_);
            ModelOutput output = model_->forward(inputs, forward);
            ProfileScope loss_scope(OpFamily::kLmHeadLoss);
            if (forward.hidden_only) {
                lm = chunked_lm_loss(output.hidden.reshape({-1, output.hidden.size(-1)}),
                                     model_->head_weight(), next_token_targets(part),
                                     /*sum=*/has_prompts);
            } else {
                lm = next_token_loss(output.logits, part, /*sum=*/has_prompts);
            }
            if (has_prompts) lm = lm * prompt_scale;
            aux = output.aux_loss;
        }
        const at::Tensor micro_loss = (lm + aux) / static_cast<double>(train_.grad_accum);
        mark(StepPhase::kBackward);
        micro_loss.backward();
        mark(StepPhase::kOther);
        lm_sum += lm.detach();
        aux_sum += aux.detach();
        tokens_seen_ += inputs.numel() * layout.world;
        ++forward.micro_batch;
    }
    // The losses of the whole batch: the mean of the processes' means (equal parts).
    at::Tensor losses = at::stack({lm_sum, aux_sum}).to(at::kDouble);
    if (parallel_->distributed()) {
        parallel_->world().all_reduce_sum(losses);
        losses = losses / static_cast<double>(layout.world);
    }
    losses = losses.to(at::kCPU);
    const double lm_loss = losses[0].item<double>() / train_.grad_accum;
    const double aux_loss = losses[1].item<double>() / train_.grad_accum;
    if (!std::isfinite(lm_loss)) diverged("the language-model loss", lm_loss);
    if (!std::isfinite(aux_loss)) diverged("the auxiliary loss", aux_loss);
    average_gradients();
    mark(StepPhase::kOptimizer);
    const double grad_norm = parallel_->distributed()
                                 ? clip_grad_norm(replicated_parameters_, sharded_parameters_,
                                                  train_.grad_clip, parallel_->experts())
                                 : clip_grad_norm(parameters_, train_.grad_clip);
    if (!std::isfinite(grad_norm)) diverged("the gradient norm", grad_norm);
    optimizer_->step(lr);
    optimizer_->zero_grad();
    if (profiler != nullptr) profiler->end_step(tokens_seen_ - tokens_before);
    ++step_;
    window_loss_ += lm_loss + aux_loss;
    window_lm_ += lm_loss;
    window_aux_ += aux_loss;
    window_grad_norm_ += grad_norm;
    last_lr_ = lr;
}

// Gradients of the whole batch: each process's loss is the mean over its own part, so the sum over
// the processes that hold a parameter, divided by the number of processes, is the gradient of the
// mean loss. Replicated parameters sum over every process; expert shares over the processes that
// hold the same experts (their expert-parallel peers already sent their rows' gradients through
// the all-to-all). A parameter keeps "no gradient" only where no process has one (AdamW then
// leaves it alone, as in one process).
void TrainingRun::average_gradients() {
    if (!parallel_->distributed()) return;
    torch::NoGradGuard no_grad;
    const double processes = parallel_->layout().world;
    auto average = [&](const std::vector<at::Tensor>& all, ProcessGroup& group) {
        // Frozen parameters (Note [Stages]) are frozen in every process: nothing to exchange.
        std::vector<at::Tensor> parameters;
        for (const at::Tensor& p : all) {
            if (p.requires_grad()) parameters.push_back(p);
        }
        if (parameters.empty()) return;
        std::vector<at::Tensor> parts;
        std::vector<float> has_grad;
        for (const at::Tensor& p : parameters) {
            const bool defined = p.grad().defined();
            has_grad.push_back(defined ? 1.0F : 0.0F);
            parts.push_back(defined ? p.grad().reshape({-1}) : at::zeros({p.numel()}, p.options()));
        }
        parts.push_back(at::tensor(has_grad).to(parts.front().device()));
        at::Tensor flat = at::cat(parts);
        group.all_reduce_sum(flat);
        const at::Tensor any =
            flat.narrow(0, flat.numel() - static_cast<std::int64_t>(parameters.size()),
                        static_cast<std::int64_t>(parameters.size()))
                .to(at::kCPU);
        std::int64_t offset = 0;
        for (std::size_t i = 0; i < parameters.size(); ++i) {
            at::Tensor p = parameters[i];
            const at::Tensor summed = flat.narrow(0, offset, p.numel()).view(p.sizes());
            offset += p.numel();
            if (any[static_cast<std::int64_t>(i)].item<float>() == 0) continue;
            if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
            p.mutable_grad().copy_(summed / processes);
        }
    };
    average(replicated_parameters_, parallel_->world());
    average(sharded_parameters_, parallel_->expert_replicas());
}

namespace {

// This process's peak resident memory so far, in MiB (getrusage's ru_maxrss, KiB on Linux).
double peak_resident_mib() {
    struct rusage usage {};
    if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace

void TrainingRun::write_profile() {
    if (!options_.profile || !leader_) return;
    if (profiler_ == nullptr || profiler_->steps() == 0) {
        log(
            fmt::format("profile: no step was profiled (the first {} steps of an invocation warm "
                        "up; train more steps)",
                        kProfileWarmupSteps));
        return;
    }
    nlohmann::json profile = profiler_->to_json();
    profile["warmup_steps"] = kProfileWarmupSteps;
    profile["last_step"] = step_;
    profile["device"] = device_.str();
    const ThreadSettings threads = current_threads();
    profile["threads"] = {{"intra_op", threads.intra_op}, {"blas", threads.blas}};
    const double tokens_per_second = profile["tokens_per_second"].get<double>();
    const Rates rates = rates_at(tokens_per_second);
    std::string rates_text;
    if (rates.gflops) {
        profile["achieved_gflops"] = *rates.gflops;
        rates_text = fmt::format(", {:.1f} GFLOP/s", *rates.gflops);
    }
    if (rates.mfu) {
        profile["mfu"] = *rates.mfu;
        rates_text += fmt::format(" = {:.1f}% of the GEMM peak", 100 * *rates.mfu);
    }
    const fs::path file = run_dir_ / "profile.json";
    write_file_atomically(file, profile.dump(2) + "\n");
    log(
        fmt::format("profile of {} steps after {} warm-up steps: {:.1f} ms/step, {:.0f} tokens/s{} "
                    "(with the profiler's hooks); in {}\n{}",
                    profiler_->steps(), kProfileWarmupSteps, profiler_->step_seconds() * 1e3,
                    tokens_per_second, rates_text, file.string(), profiler_->table()));
    if (operator_profile_ == nullptr) return;
    nlohmann::json operators = operator_profile_->to_json();
    operators["steps"] = profiler_->steps();
    const fs::path operators_file = run_dir_ / "operators.json";
    write_file_atomically(operators_file, operators.dump(2) + "\n");
    log(fmt::format("operators of the profiled steps, by self time (every one in {}):\n{}",
                    operators_file.string(), operator_profile_->table(15)));
}

nlohmann::json TrainingRun::throughput_summary() const {
    // Over the training windows this process timed (evaluations and checkpoints excluded).
    const double tokens_per_second = train_tokens_ / std::max(train_seconds_, 1e-9);
    nlohmann::json out = {{"training_tokens_per_second", tokens_per_second},
                          {"model_flops_per_token", nullptr},
                          {"achieved_gflops", nullptr},
                          {"gemm_peak_gflops", nullptr},
                          {"mfu", nullptr}};
    if (gemm_peak_) {
        out["gemm_peak_gflops"] = *all_processes_peak();
        out["gemm_peak"] = gemm_peak_->description;
    }
    const Rates rates = rates_at(tokens_per_second);
    if (train_flops_per_token_) out["model_flops_per_token"] = *train_flops_per_token_;
    if (rates.gflops) out["achieved_gflops"] = *rates.gflops;
    if (rates.mfu) out["mfu"] = *rates.mfu;
    return out;
}

void TrainingRun::write_train_record(double window_seconds, std::int64_t window_steps) {
    const double n = static_cast<double>(window_steps);
    // Counted as drawn: a window may span stages of different lengths.
    const double tokens = static_cast<double>(tokens_seen_ - window_start_tokens_);
    window_start_tokens_ = tokens_seen_;
    const double tokens_per_second = tokens / std::max(window_seconds, 1e-9);
    train_tokens_ += tokens;
    train_seconds_ += window_seconds;
    const double eta = window_seconds / n * static_cast<double>(train_.steps - step_);
    nlohmann::json record = {{"type", "train"},
                             {"step", step_},
                             {"stage", current_stage_},
                             {"loss", window_loss_ / n},
                             {"lm_loss", window_lm_ / n},
                             {"aux_loss", window_aux_ / n},
                             {"lr", last_lr_},
                             {"grad_norm", window_grad_norm_ / n},
                             {"tokens", tokens_seen_},
                             {"tokens_per_s", tokens_per_second},
                             {"peak_rss_mib", peak_resident_mib()},
                             {"elapsed_s", elapsed_before_ + seconds_since(started_)}};
    window_stats_.sum_over(parallel_->world());
    // Note [Model FLOPs]: a training step is 3 forward passes' worth; the experts' share follows
    // the window's measured routing.
    std::optional<double> mfu;
    if (const std::optional<double> forward =
            model_->forward_flops_per_token(window_stats_, seq_len())) {
        train_flops_per_token_ = 3.0 * *forward;
        record["model_flops_per_token"] = *train_flops_per_token_;
        const Rates rates = rates_at(tokens_per_second);
        record["achieved_gflops"] = *rates.gflops;
        if (rates.mfu) record["mfu"] = *rates.mfu;
        mfu = rates.mfu;
    }
    if (parallel_->distributed()) {
        // This process's time in each kind of exchange during the window's steps; the rest of
        // the window is computation (and waiting inside the exchanges for slower processes).
        record["parallel_s"] = {{"all_to_all", parallel_->expert_exchange().take()},
                                {"all_reduce", parallel_->gradient_exchange().take()},
                                {"window", window_seconds}};
    }
    // With prompts, how much of the window the loss saw (Note [Response-only loss]).
    if (window_loss_targets_) record["loss_tokens"] = *window_loss_targets_;
    if (leader_) {
        if (!window_stats_.empty()) record["moe"] = window_stats_.summary();
        metrics_->write(record);
        progress_.update(step_, window_loss_ / n, last_lr_, tokens_per_second, eta, mfu);
    }
    window_stats_ = RoutingStats();
    window_loss_ = window_lm_ = window_aux_ = window_grad_norm_ = 0;
    window_loss_targets_.reset();
}

SplitEvaluation TrainingRun::evaluate_split(Split split, std::int64_t max_batches) {
    EvalSetup setup{device_, bf16_, {}};
    setup.parallel = parallel_.get();
    SplitEvaluation evaluation = core::evaluate_split(*model_, *dataset_, split, seq_len(),
                                                      recipe_.eval.batch_size, max_batches, setup);
    if (!leader_) return evaluation;
    const EvalResult& result = evaluation.overall;
    nlohmann::json record = result.to_json();
    record["type"] = "eval";
    record["split"] = split_name(split);
    record["step"] = step_;
    metrics_->write(record);
    std::string per_source;
    if (evaluation.sources.size() > 1) {
        // One record per source, marked by "source"; the record without it is the overall loss.
        for (const auto& [source, source_result] : evaluation.sources) {
            metrics_->write({{"type", "eval"},
                             {"split", split_name(split)},
                             {"source", source->name},
                             {"weight", source->weight},
                             {"step", step_},
                             {"loss", source_result.loss()},
                             {"ppl", source_result.perplexity()},
                             {"tokens", source_result.tokens}});
            per_source += fmt::format("{}{} {:.4f}", per_source.empty() ? "; by source: " : ", ",
                                      source->name, source_result.loss());
        }
    }
    log(fmt::format("eval {} at step {}: loss {:.4f}, ppl {:.3f} ({} tokens){}{}",
                    split_name(split), step_, result.loss(), result.perplexity(), result.tokens,
                    evaluation.weighted ? ", mixture-weighted" : "", per_source));
    refresh_report();
    return evaluation;
}

void TrainingRun::refresh_report() {
    try {
        write_run_report(run_dir_);
    } catch (const std::exception& error) {
        if (!report_warned_) log(fmt::format("warning: report.html not written: {}", error.what()));
        report_warned_ = true;
    }
}

fs::path TrainingRun::save(const std::string& why) {
    // With experts spread over E processes the first E write the checkpoint together, each its
    // own experts (Note [Expert shards]): the first creates the temporary directory and writes
    // file 1 and the indexes, then names the directory to the others and waits for their files.
    const ParallelLayout& layout = parallel_->layout();
    const bool writes = leader_ || (layout.expert_degree > 1 && layout.expert_group() == 0);
    CheckpointContents contents;
    contents.shards.files = layout.expert_degree;
    contents.model_metadata = model_layout_metadata(resolved_.recipe, dataset_->vocab_size(),
                                                    dataset_->tokenizer().special_tokens().eos);
    if (writes) {
        contents.model = split_into_experts(model_tensors(*model_), expert_shards_,
                                            contents.shards.model_stacks);
        contents.optimizer = split_into_experts(optimizer_->state(), expert_shards_,
                                                contents.shards.optimizer_stacks);
    }
    const fs::path step_dir = run_dir_ / "checkpoints" / fmt::format("step-{}", step_);
    if (!leader_) {
        if (layout.expert_degree > 1) {
            const fs::path directory = broadcast_text(parallel_->world(), "", 0, device_);
            if (layout.expert_group() == 0) {
                try {
                    write_checkpoint_shard(directory, layout.expert_rank() + 1,
                                           layout.expert_degree, contents.model,
                                           contents.optimizer);
                } catch (const std::exception& error) {
                    throw CheckpointError(fmt::format(
                        "saving checkpoint step-{} failed: rank {} could not write its experts' "
                        "files into {}: {}",
                        step_, layout.rank, directory.string(), error.what()));
                }
            }
            parallel_->world().barrier();
        }
        last_checkpoint_ = step_dir.string();
        return step_dir;
    }
    SaveHooks hooks;
    if (layout.expert_degree > 1) {
        hooks.before_publish = [this](const fs::path& directory) {
            broadcast_text(parallel_->world(), directory.string(), 0, device_);
            parallel_->world().barrier();
        };
    }
    for (NamedTensor& rng : rng_state(device_.is_cuda())) contents.optimizer.push_back(rng);
    const MixturePosition position = batcher_->position();
    contents.state.tokens_seen = tokens_seen_;
    contents.state.optimizer_steps = optimizer_->steps();
    contents.state.parameter_steps = optimizer_->parameter_steps();
    contents.state.data_sequences = position.sequences;
    for (std::size_t s = 0; s < position.sources.size(); ++s) {
        contents.state.data_sources.push_back(
            {batcher_->name(s), position.sources[s].epoch, position.sources[s].cursor});
    }
    contents.state.recipe_hash = recipe_hash_;
    contents.state.elapsed_seconds = elapsed_before_ + seconds_since(started_);
    const StagePosition stage = stages_->at(step_);
    contents.state.extra = {{"moelab_version", build_info().moelab_version},
                            {"plugins", plugin_records(resolved_)},
                            {"stage",
                             {{"index", stage.index},
                              {"name", stages_->stage(stage.index).name},
                              {"step_in_stage", stage.step_in_stage}}}};
    const fs::path dir = save_checkpoint(run_dir_ / "checkpoints", step_, contents,
                                         static_cast<int>(train_.keep_checkpoints), hooks);
    last_checkpoint_ = dir.string();
    log(fmt::format("checkpoint ({}): {}", why, dir.string()));
    return dir;
}

void TrainingRun::finish() {
    save("final");
    const SplitEvaluation validation_split =
        evaluate_split(Split::kValidation, recipe_.eval.max_batches);
    const SplitEvaluation test_split = evaluate_split(Split::kTest, recipe_.eval.max_batches);
    if (!leader_) return;
    const EvalResult& validation = validation_split.overall;
    const EvalResult& test = test_split.overall;
    const ParameterCounts counts = model_->parameter_counts();
    const double wall = elapsed_before_ + seconds_since(started_);
    const Dataset& data = *dataset_;
    auto split_summary = [&](const SplitEvaluation& evaluation, Split split) {
        const EvalResult& result = evaluation.overall;
        nlohmann::json s = {{"loss", result.loss()},
                            {"ppl", result.perplexity()},
                            {"tokens", result.tokens},
                            {"unigram_ppl", overall_unigram_perplexity(data, split)}};
        // Whole split only: every token but the first is predicted once; and only where the
        // text's size is known (plain-text files). A weighted mixture has no single byte count;
        // its sources each have theirs.
        auto add_bits_per_byte = [&](nlohmann::json& out, const EvalResult& r,
                                     const SourceTokens& source) {
            const std::int64_t bytes = source.bytes[static_cast<int>(split)];
            if (recipe_.eval.max_batches != 0 || bytes <= 0) return;
            out["bits_per_byte"] = r.nll_sum / std::log(2.0) / static_cast<double>(bytes);
        };
        if (!evaluation.weighted) {
            for (const SourceEvaluation& evaluated : evaluation.sources) {
                if (evaluated.source->weight > 0) add_bits_per_byte(s, result, *evaluated.source);
            }
        }
        if (evaluation.sources.size() > 1) {
            s["weighted"] = evaluation.weighted;
            nlohmann::json by_source = nlohmann::json::object();
            for (const auto& [source, source_result] : evaluation.sources) {
                nlohmann::json entry = {
                    {"weight", source->weight},
                    {"loss", source_result.loss()},
                    {"ppl", source_result.perplexity()},
                    {"tokens", source_result.tokens},
                    {"unigram_ppl", unigram_perplexity(data, source->tokens(split))}};
                add_bits_per_byte(entry, source_result, *source);
                by_source[source->name] = entry;
            }
            s["sources"] = by_source;
        }
        return s;
    };
    const nlohmann::json summary = {
        {"recipe", recipe_.name},
        {"recipe_hash", recipe_hash_},
        {"steps", step_},
        {"seq_len", seq_len()},  // of the last stage: the context of the evaluations below
        {"tokens_seen", tokens_seen_},
        {"wall_seconds", wall},
        {"tokens_per_second", static_cast<double>(tokens_seen_) / std::max(wall, 1e-9)},
        {"throughput", throughput_summary()},
        {"peak_rss_mib", peak_resident_mib()},
        {"validation", split_summary(validation_split, Split::kValidation)},
        {"test", split_summary(test_split, Split::kTest)},
        {"parameters",
         {{"total", counts.total},
          {"expert", counts.expert},
          {"active", model_->active_parameters(validation.routing)}}},
        {"validation_moe", validation.routing.summary()},
        {"parallel",
         {{"processes", parallel_->layout().world},
          {"expert_degree", parallel_->layout().expert_degree}}},
        {"plugins", plugin_records(resolved_)}};
    write_file_atomically(run_dir_ / "summary.json", summary.dump(2) + "\n");
    refresh_report();
    log(
        fmt::format("done in {}: validation ppl {:.3f} (unigram {:.3f}), test ppl {:.3f}; "
                    "summary in {}",
                    format_duration(wall), validation.perplexity(),
                    summary["validation"]["unigram_ppl"].get<double>(), test.perplexity(),
                    (run_dir_ / "summary.json").string()));
}

RunResult TrainingRun::run() {
    setup();
    InterruptGuard interrupts;
    std::int64_t steps_this_invocation = 0;
    Clock::time_point window_start = Clock::now();
    double window_paused = 0;  // evaluation and checkpoint time, not training
    std::int64_t window_steps = 0;
    while (step_ < train_.steps) {
        // A stop request reaches the processes at different moments; they agree on it before
        // each step, so all stop at the same one.
        const bool interrupted =
            any_member(parallel_->world(), InterruptGuard::requested(), device_);
        if (interrupted ||
            (options_.stop_after_steps > 0 && steps_this_invocation == options_.stop_after_steps)) {
            write_profile();
            save(interrupted ? "interrupted" : "stop-after");
            log(fmt::format("stopped at step {}; continue with --resume --out {}", step_,
                            run_dir_.string()));
            return {run_dir_, interrupted ? RunOutcome::kInterrupted : RunOutcome::kStopped, step_};
        }
        if (const StagePosition position = stages_->at(step_);
            static_cast<std::int64_t>(position.index) != current_stage_) {
            enter_stage(position);
        }
        if (options_.profile && profiler_ == nullptr &&
            steps_this_invocation == kProfileWarmupSteps) {
            std::function<void()> synchronize;
            if (device_.is_cuda()) {
                const int index = device_.has_index() ? device_.index() : 0;
                synchronize = [index] { at::detail::getCUDAHooks().deviceSynchronize(index); };
            }
            profiler_ = std::make_unique<StepProfiler>(std::move(synchronize));
            if (options_.profile_operators) {
                operator_profile_ = std::make_unique<OperatorProfile>(/*recording=*/false);
            }
        }
        if (operator_profile_) operator_profile_->begin();
        train_step();
        if (operator_profile_) operator_profile_->end();
        ++steps_this_invocation;
        ++window_steps;
        if (step_ % train_.log_every == 0 || step_ == train_.steps) {
            write_train_record(seconds_since(window_start) - window_paused, window_steps);
            window_start = Clock::now();
            window_paused = 0;
            window_steps = 0;
        }
        const Clock::time_point pause = Clock::now();
        // Exchanges of evaluations and checkpoints are not the training window's.
        parallel_->expert_exchange().set_paused(true);
        parallel_->gradient_exchange().set_paused(true);
        if (train_.eval_every > 0 && step_ % train_.eval_every == 0 && step_ < train_.steps) {
            evaluate_split(Split::kValidation, train_.eval_batches);
        }
        if (train_.checkpoint_every > 0 && step_ % train_.checkpoint_every == 0 &&
            step_ < train_.steps) {
            save("periodic");
        }
        window_paused += seconds_since(pause);
        parallel_->expert_exchange().set_paused(false);
        parallel_->gradient_exchange().set_paused(false);
    }
    write_profile();
    finish();
    return {run_dir_, RunOutcome::kCompleted, step_};
}

}  // namespace

RunResult run_training(const ResolvedRecipe& resolved, const RunOptions& options) {
    TrainingRun run(resolved, options);
    return run.run();
}

}  // namespace moelab::core
