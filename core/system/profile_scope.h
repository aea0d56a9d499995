#pragma once

// The operator families a training step's time is split into (`moelab run --profile`, Note [Step
// profile] in step_profiler.h). Host code marks the calls of each family with a ProfileScope at
// the seams every plugin goes through (the attention plugin's forward, the router's route, the
// expert bank's mix), so any plugin is profiled the same way. Outside a profiled step a scope
// costs one atomic load.

namespace moelab::core {

enum class OpFamily : int {
    kEmbedding,
    kAttention,
    kRouter,
    kRoutingPlan,     // permutation, capacity and drops, routing statistics
    kExperts,         // grouped SwiGLU experts: gather, matrix products, scatter
    kExpertExchange,  // the expert-parallel all-to-all
    kMoeBlockOther,   // a MoE block's own work around its router and experts
    kDenseFfn,
    kNormsElementwise,  // RMSNorms, residual additions, layer glue
    kLmHeadLoss,        // final projection and cross-entropy
};
inline constexpr int kOpFamilies = static_cast<int>(OpFamily::kLmHeadLoss) + 1;

const char* op_family_name(OpFamily family);

// Charges the time until its end to `family`, less the time of scopes opened inside it.
class ProfileScope {
  public:
    explicit ProfileScope(OpFamily family);
    ~ProfileScope();
    ProfileScope(const ProfileScope&) = delete;
    ProfileScope& operator=(const ProfileScope&) = delete;

  private:
    bool open_ = false;
};

}  // namespace moelab::core
