#pragma once

// Finedeep (methods.md §4) — [INTERPRETATION]: only the outline of the method is published, and
// this block implements the reading of methods.md §4.3. The dense FFN (d_ff) is cut into
// M sequential sub-layers of K fine-grained SwiGLU experts of d_ff / (M K) each, so the
// parameters equal the dense FFN's (plus M norms and the gates). Every expert runs (dense
// activation) and contributes with its own sigmoid weight:
//
//   z_0 = h;  for m = 1..M:  x = RMSNorm_m(z_{m-1});  e_k = E_{m,k}(x)
//             g_k = sigmoid(w_m . e_k)      gate_input = "output" (output-guided, the default)
//             g_k = sigmoid(w_{m,k} . x)    gate_input = "input"  (ablation)
//             z_m = z_{m-1} + sum_k g_k e_k
//   y = z_M
//
// Assumed, not published: the gate formulas above (no normalisation across experts), the
// initialisation (N(0, init_std) gates, so g starts near 1/2), no auxiliary loss. The non-sparse
// activation rate (NSAR) is measured as the fraction of expert intermediate activations with
// |a| > nsar_epsilon, reported as the banks' "nsar" statistic.

#include <cstdint>
#include <memory>
#include <vector>

#include "moelab/sdk/expert_bank.h"
#include "moelab/sdk/moe_block.h"
#include "moelab/sdk/moe_layer_context.h"
#include "moelab/sdk/params.h"
#include "moelab/sdk/rms_norm.h"

namespace moelab::plugins::finedeep {

struct FinedeepOptions {
    std::int64_t sublayers = 2;             // M
    std::int64_t experts_per_sublayer = 4;  // K
    bool output_guided = true;
    double nsar_epsilon = 0.01;

    static FinedeepOptions from(const sdk::Params& params);
};

class FinedeepBlock : public sdk::MoeBlock {
  public:
    FinedeepBlock(const sdk::MoeLayerContext& context, const FinedeepOptions& options);

    sdk::BlockOutput forward(const sdk::BlockInput& input) override;

  private:
    FinedeepOptions options_;
    std::vector<std::shared_ptr<sdk::RmsNorm>> norms_;
    std::vector<std::shared_ptr<sdk::ExpertBank>> banks_;
    std::vector<at::Tensor> gates_;  // (d_model,) output-guided, or (K, d_model) input-guided
};

}  // namespace moelab::plugins::finedeep
