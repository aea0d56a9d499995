#include "core/train/calibration.h"

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "core/train/trainer.h"

namespace moelab::core {

namespace {

// Keeps, on the CPU in float32, the post-attention streams and the normalised attention inputs of
// the layers it is told to watch, batch after batch.
class StreamRecorder : public LayerObserver {
  public:
    explicit StreamRecorder(std::set<std::int64_t> layers) : layers_(std::move(layers)) {}

    void attention_done(int layer, const at::Tensor& normed,
                        const at::Tensor& post_attention) override {
        if (layers_.count(layer) == 0) return;
        post_[layer].push_back(post_attention.detach().to(at::kCPU, at::kFloat));
        normed_[layer].push_back(normed.detach().to(at::kCPU, at::kFloat));
    }

    // (samples, seq, d_model)
    at::Tensor post(std::int64_t layer) const { return at::cat(post_.at(layer), 0); }
    at::Tensor normed(std::int64_t layer) const { return at::cat(normed_.at(layer), 0); }

  private:
    std::set<std::int64_t> layers_;
    std::map<std::int64_t, std::vector<at::Tensor>> post_, normed_;
};

// Runs `sequences` through `model` in evaluation mode, leaving its mode as it was.
void run_through(LanguageModel& model, const at::Tensor& sequences, std::int64_t batch_size,
                 const at::Device& device, StreamRecorder& recorder) {
    torch::NoGradGuard no_grad;
    const bool training = model.is_training();
    model.eval();
    ForwardOptions options;
    options.hidden_only = true;  // the LM head is not needed
    options.observer = &recorder;
    for (std::int64_t first = 0; first < sequences.size(0); first += batch_size) {
        const std::int64_t rows = std::min(batch_size, sequences.size(0) - first);
        model.forward(sequences.narrow(0, first, rows).to(device), options);
    }
    model.train(training);
}

double rms(const at::Tensor& t) {
    return std::sqrt(t.to(at::kDouble).square().mean().item<double>());
}

}  // namespace

std::vector<std::int64_t> calibrating_layers(const LanguageModel& model) {
    std::vector<std::int64_t> layers;
    for (std::int64_t l = 0; l < model.layers(); ++l) {
        if (model.calibrates_layer(l)) layers.push_back(l);
    }
    return layers;
}

at::Tensor calibration_sequences(const TokenView& tokens, std::int64_t samples,
                                 std::int64_t seq_len) {
    if (tokens.size() < samples * seq_len) {
        throw RunSetupError(fmt::format(
            "init.calibration_samples: {} sequences of {} tokens need {} training tokens, the "
            "training split has {}",
            samples, seq_len, samples * seq_len, tokens.size()));
    }
    at::Tensor out = at::empty({samples, seq_len}, at::kLong);
    tokens.copy_to(0, samples * seq_len, out.data_ptr<std::int64_t>());
    return out;
}

CalibrationReport calibrate_layers(LanguageModel& model, LanguageModel& reference,
                                   const at::Tensor& sequences, std::int64_t batch_size,
                                   const at::Device& device,
                                   const std::function<void(const std::string&)>& log) {
    CalibrationReport report;
    report.samples = sequences.size(0);
    report.seq = sequences.size(1);
    const std::vector<std::int64_t> layers = calibrating_layers(model);
    if (layers.empty()) return report;
    if (reference.layers() != model.layers()) {
        throw RunSetupError(fmt::format(
            "init.calibration_samples: init.from's model has {} layers, this one {}; calibration "
            "compares them layer by layer",
            reference.layers(), model.layers()));
    }

    const std::set<std::int64_t> watched(layers.begin(), layers.end());
    StreamRecorder target(watched);
    run_through(reference, sequences, batch_size, device, target);
    StreamRecorder before(watched);
    run_through(model, sequences, batch_size, device, before);
    for (const std::int64_t l : layers) {
        report.layers.push_back({l, rms(target.post(l) - before.post(l)), 0.0});
    }
    // In layer order, each layer fitted on the stream the layers fitted before it produce (the
    // first one's is the stream recorded before any fit).
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::int64_t l = layers[i];
        std::optional<StreamRecorder> current;
        if (i > 0) {
            current.emplace(std::set<std::int64_t>{l});
            run_through(model, sequences, batch_size, device, *current);
        }
        const StreamRecorder& stream = current ? *current : before;
        sdk::CalibrationData data;
        data.samples = report.samples;
        data.seq = report.seq;
        data.input = stream.normed(l);
        data.target = target.post(l) - stream.post(l);
        model.calibrate_layer(l, data);
    }
    StreamRecorder after(watched);
    run_through(model, sequences, batch_size, device, after);
    for (CalibratedLayer& layer : report.layers) {
        layer.rms_error_after = rms(target.post(layer.layer) - after.post(layer.layer));
        log(
            fmt::format("calibrated layer {}: rms error of the post-attention stream {:.6f} -> "
                        "{:.6f}",
                        layer.layer, layer.rms_error_before, layer.rms_error_after));
    }
    return report;
}

}  // namespace moelab::core
