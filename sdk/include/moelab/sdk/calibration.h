#pragma once

// Since 5.5. Calibration: a layer that fits some of its parameters to a trained model's
// activations before training goes on, such as UniAttn's linear compensation (methods.md §6.4).
//
// Note [Calibration]
// A run with `[init] from = RUN` and `calibration_samples = N` starts from RUN's weights
// (init.from) and then calibrates, in layer order, every attention layer whose object implements
// Calibrated and says calibrates(). For such a layer l the host runs N training sequences through
//   * the reference: RUN's own model, once, recording its post-attention stream
//     h_l = x_l + Attention_l(RmsNorm(x_l)) at every layer;
//   * this model as calibrated so far (the layers before l already fitted), recording this
//     layer's normalised attention input RmsNorm(x_l) and its h_l;
// and hands the layer the two as CalibrationData. The layer fits its parameters so that its
// attention branch adds what is missing (`target`), however it chooses (UniAttn: least squares
// over position-wise means or over every token), then the host moves to the next layer. The
// component lists feature::kCalibration so that a recipe asking for calibration is refused when
// no layer of its model can be calibrated.
//
// A separate interface rather than a virtual function of Attention: attention plugins built
// against an older 5.x SDK keep their layout and simply are not Calibrated.

#include <cstdint>
#include <string_view>

#include <ATen/core/Tensor.h>

namespace moelab::sdk {

namespace feature {
// Since 5.5. Some layers of the component implement Calibrated (calibration.h).
inline constexpr std::string_view kCalibration = "init.calibration";
}  // namespace feature

struct CalibrationData {
    std::int64_t samples = 0;  // calibration sequences
    std::int64_t seq = 0;      // tokens in each
    // (samples, seq, d_model) float32 on the CPU, sequence-major: this layer's normalised
    // attention input in the model calibrated so far.
    at::Tensor input;
    // (samples, seq, d_model) float32 on the CPU: the reference model's post-attention stream at
    // this layer minus this model's, i.e. what the layer's attention branch should add.
    at::Tensor target;
};

class Calibrated {
  public:
    virtual ~Calibrated() = default;
    // Whether this layer fits anything (a component may make some of its layers Calibrated that
    // have nothing to fit, such as UniAttn's anchors).
    virtual bool calibrates() const = 0;
    // Fits this layer's parameters to `data`; called without gradients, parameters on the model's
    // device.
    virtual void calibrate(const CalibrationData& data) = 0;
};

}  // namespace moelab::sdk
