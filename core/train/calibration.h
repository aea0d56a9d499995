#pragma once

// The host's side of Note [Calibration] (the SDK's calibration.h): after init.from, every layer
// whose attention can calibrate is fitted, in layer order, to the source model's post-attention
// streams on a fixed set of training sequences.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/data/token_view.h"
#include "core/model/language_model.h"

namespace moelab::core {

struct CalibratedLayer {
    std::int64_t layer = 0;
    // Root mean square of (reference - model) post-attention stream at this layer over the
    // calibration tokens, before any layer was fitted and after every layer was.
    double rms_error_before = 0;
    double rms_error_after = 0;
};

struct CalibrationReport {
    std::int64_t samples = 0;
    std::int64_t seq = 0;
    std::vector<CalibratedLayer> layers;  // in layer order; empty: nothing to calibrate
};

// The layers of `model` whose attention has something to calibrate, in order.
std::vector<std::int64_t> calibrating_layers(const LanguageModel& model);

// The first `samples` windows of `seq_len` tokens of `tokens` (the training split), back to back,
// as (samples, seq_len) int64. RunSetupError when the split is too short.
at::Tensor calibration_sequences(const TokenView& tokens, std::int64_t samples,
                                 std::int64_t seq_len);

// Fits every calibrating layer of `model` to `reference` (the model init.from was read from) on
// `sequences` (samples, seq) int64, run `batch_size` at a time on `device` without gradients and
// in evaluation mode (each model's mode is restored). `log` receives one line per layer.
CalibrationReport calibrate_layers(LanguageModel& model, LanguageModel& reference,
                                   const at::Tensor& sequences, std::int64_t batch_size,
                                   const at::Device& device,
                                   const std::function<void(const std::string&)>& log);

}  // namespace moelab::core
