// MoE layer vs dense FFN benchmark: forward + backward of
//   moe:    the host's standard MoE block (RMSNorm, top-k softmax router, expert bank)
//   dense:  a dense SwiGLU FFN (with its RMSNorm) of equal active FLOPs: d_ff = k * d_ff_expert
//   naive:  the same MoE computed the "Python way": per expert, find its tokens with a mask,
//           index_select them, run the expert, index_add back (no permutation, no grouping)
// The variants run interleaved, round after round, in one process, and the report gives the
// median time of each, the ratios moe/dense and naive/moe, and the achieved GFLOP/s of the expert
// GEMMs (18 T k d f FLOPs forward + backward) against the machine's GEMM peak measured in the same
// process: the best of square 2048 sgemms (bf16 GEMMs on CUDA with --bf16), and the same GEMM at
// the shape one expert sees (T k / E rows).
//
//   moelab_bench_moe [--tokens 8192] [--d-model 512] [--d-ff 1024] [--experts 8] [--k 2]
//                    [--rounds 7] [--threads N] [--device cpu|cuda] [--bf16 1]
//                    [--kernel auto|grouped|reference|grouped_mm|grouped_cuda]
//                    [--only moe|experts|dense|naive]
// --only times one variant (for a profiler: perf record -g moelab_bench_moe --only moe).
//   experts: the expert kernel alone (gather, GEMMs, combine, forward + backward) on a fixed
//            routing plan; moe minus experts is what routing, planning and the norm cost.
// --threads sets OpenBLAS's threads (CPU); on CUDA the dense peer is cuBLAS through LibTorch and
// every timed round ends with a device synchronisation.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <torch/autograd.h>
#include <torch/cuda.h>

#include "core/model/swiglu_ffn.h"
#include "core/moe/host_expert_bank.h"
#include "core/system/allocator.h"
#include "core/system/autocast_scope.h"
#include "core/system/blas_probe.h"
#include "core/system/threads.h"
#include "kernels/binding/grouped_swiglu.h"
#include "kernels/reference/grouped_swiglu_reference.h"
#include "moelab/sdk/rms_norm.h"
#include "moelab/sdk/routing_ops.h"
#include "tools/bench/bench_args.h"

namespace {

using moelab::core::DispatchPolicy;
using moelab::core::HostExpertBank;

struct Options {
    std::int64_t tokens = 8192, d_model = 512, d_ff = 1024, experts = 8, k = 2;
    int rounds = 7;
    int threads = 0;
    std::string device = "cpu";
    bool bf16 = false;
    std::string kernel = "auto";
    std::string only;  // empty: every variant
};

constexpr const char* kUsage =
    "moelab_bench_moe [--tokens 8192] [--d-model 512] [--d-ff 1024] [--experts 8] [--k 2]\n"
    "                 [--rounds 7] [--threads N] [--device cpu|cuda] [--bf16 0|1]\n"
    "                 [--kernel auto|grouped|reference|grouped_mm|grouped_cuda]\n"
    "                 [--only moe|experts|dense|naive]\n";

// Throws BenchUsageError.
Options parse(const moelab::bench::BenchArgs& args) {
    Options o;
    o.tokens = args.integer("--tokens", o.tokens, 1);
    o.d_model = args.integer("--d-model", o.d_model, 1);
    o.d_ff = args.integer("--d-ff", o.d_ff, 1);
    o.experts = args.integer("--experts", o.experts, 1);
    o.k = args.integer("--k", o.k, 1);
    o.rounds = static_cast<int>(args.integer("--rounds", o.rounds, 1));
    o.threads = static_cast<int>(args.integer("--threads", o.threads, 0));
    o.device = args.text("--device", o.device);
    o.bf16 = args.integer("--bf16", 0, 0) != 0;
    o.kernel = args.text("--kernel", o.kernel);
    o.only = args.text("--only", o.only);
    if (o.device != "cpu" && o.device != "cuda") {
        throw moelab::bench::BenchUsageError("--device: expected cpu or cuda, got '" + o.device +
                                             "'");
    }
    if (!o.only.empty() && o.only != "moe" && o.only != "experts" && o.only != "dense" &&
        o.only != "naive") {
        throw moelab::bench::BenchUsageError(
            "--only: expected moe, experts, dense or naive, got '" + o.only + "'");
    }
    if (o.k > o.experts) {
        throw moelab::bench::BenchUsageError("--k must not exceed --experts");
    }
    return o;
}

double seconds(const std::function<void()>& run, bool cuda) {
    if (cuda) torch::cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    run();
    if (cuda) torch::cuda::synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Best GFLOP/s of `rounds` GEMMs (m x k) x (k x n) after a warm-up.
double gemm_gflops(std::int64_t m, std::int64_t k, std::int64_t n, const at::TensorOptions& options,
                   bool cuda, int rounds) {
    const at::Tensor a = at::randn({m, k}, options);
    const at::Tensor b = at::randn({k, n}, options);
    at::Tensor c = at::empty({m, n}, options);
    at::mm_out(c, a, b);
    double best = 0;
    for (int r = 0; r < rounds; ++r) {
        const double t = seconds([&] { at::mm_out(c, a, b); }, cuda);
        best = std::max(best, 2.0 * m * k * n / t / 1e9);
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    // As `moelab run` does: large buffers are reused across calls, not mapped afresh.
    moelab::core::tune_allocator_for_training();
    Options o;
    try {
        const moelab::bench::BenchArgs args(
            argc, argv, 0,
            {"--tokens", "--d-model", "--d-ff", "--experts", "--k", "--rounds", "--threads",
             "--device", "--bf16", "--kernel", "--only"});
        if (args.help()) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        o = parse(args);
    } catch (const moelab::bench::BenchUsageError& error) {
        std::fprintf(stderr, "moelab_bench_moe: %s\nusage: %s", error.what(), kUsage);
        return 2;
    }
    const int cores = moelab::core::hardware_threads();
    moelab::core::apply_threads(moelab::core::recipe_threads(0, o.threads));
    at::manual_seed(0);
    const bool cuda = o.device == "cuda";
    if (cuda && !torch::cuda::is_available()) {
        std::fprintf(stderr, "--device cuda: no CUDA device\n");
        return 2;
    }
    const at::Device device = cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);

    // Shared pieces: input, upstream gradient, router weight, norms.
    const at::Tensor hidden = at::randn({o.tokens, o.d_model}, at::TensorOptions().device(device));
    const at::Tensor upstream =
        at::randn({o.tokens, o.d_model}, at::TensorOptions().device(device));
    const at::Tensor router =
        (0.02 * at::randn({o.experts, o.d_model}, at::TensorOptions().device(device)))
            .requires_grad_();
    auto norm = std::make_shared<moelab::sdk::RmsNorm>(o.d_model, 1e-5);
    HostExpertBank bank({"experts", o.experts, o.d_model, o.d_ff, 0.0}, DispatchPolicy{}, 0.02,
                        0.02, 1);
    bank.set_kernel(o.kernel);
    moelab::core::SwiGluFfn dense(o.d_model, o.k * o.d_ff, 1e-5, 0.02, 0.02, 2);
    norm->to(device);
    bank.to(device);
    dense.to(device);

    auto route = [&](const at::Tensor& x) {
        const at::Tensor probs = at::matmul(x, router.t()).softmax(-1);
        return moelab::sdk::select_top_k(probs, o.k, /*renormalize=*/true);
    };
    auto run_moe = [&] {
        moelab::core::CudaAutocastScope autocast(cuda && o.bf16);
        const at::Tensor h = hidden.clone().requires_grad_();
        const at::Tensor x = norm->forward(h);
        auto [indices, weights] = route(x);
        const at::Tensor y = h + bank.mix(x, indices, weights);
        y.backward(upstream);
        bank.take_dispatches();
    };
    // The expert kernel alone (gather, expert GEMMs, combine; forward + backward) on one fixed
    // routing plan: what the MoE layer costs beyond it is routing, planning and the norm.
    const moelab::kernels::RoutedRows plan = [&] {
        at::NoGradGuard no_grad;
        auto [indices, weights] = route(norm->forward(hidden));
        const at::Tensor flat = indices.reshape({-1});
        const at::Tensor order = std::get<1>(at::sort(flat, /*stable=*/true, 0, false));
        return moelab::kernels::RoutedRows{at::div(order, o.k, "floor"),
                                           weights.reshape({-1}).index_select(0, order),
                                           at::cumsum(at::bincount(flat, {}, o.experts), 0)};
    }();
    // Chosen under the autocast the runs use: it decides the compute dtype.
    const moelab::kernels::KernelChoice kernel_choice = [&] {
        moelab::core::CudaAutocastScope autocast(cuda && o.bf16);
        return moelab::kernels::choose_grouped_swiglu_kernel(
            o.kernel, moelab::kernels::describe_grouped_swiglu(hidden, bank.w_in, bank.w_out));
    }();
    if (!kernel_choice.verdict.ok) {
        std::fprintf(stderr, "--kernel %s: %s\n", o.kernel.c_str(),
                     kernel_choice.verdict.reason.c_str());
        return 2;
    }
    auto run_experts = [&] {
        moelab::core::CudaAutocastScope autocast(cuda && o.bf16);
        const at::Tensor x = hidden.clone().requires_grad_();
        const at::Tensor weight = plan.weight.clone().requires_grad_();
        moelab::kernels::run_grouped_swiglu(
            *kernel_choice.kernel, x, {plan.token, weight, plan.group_ends}, bank.w_in, bank.w_out)
            .backward(upstream);
    };
    auto run_dense = [&] {
        moelab::core::CudaAutocastScope autocast(cuda && o.bf16);
        const at::Tensor h = hidden.clone().requires_grad_();
        dense.forward(h).backward(upstream);
    };
    auto run_naive = [&] {
        moelab::core::CudaAutocastScope autocast(cuda && o.bf16);
        const at::Tensor h = hidden.clone().requires_grad_();
        const at::Tensor x = norm->forward(h);
        auto [indices, weights] = route(x);
        at::Tensor y = h;
        for (std::int64_t e = 0; e < o.experts; ++e) {
            const at::Tensor hit = (indices == e);  // (tokens, k)
            const at::Tensor token = at::nonzero(hit.any(-1)).squeeze(1);
            if (token.numel() == 0) continue;
            const at::Tensor gate = (weights * hit).sum(-1).index_select(0, token);
            const at::Tensor out = moelab::kernels::reference::swiglu(x.index_select(0, token),
                                                                      bank.w_in[e], bank.w_out[e]);
            y = y.index_add(0, token, out * gate.unsqueeze(1));
        }
        y.backward(upstream);
    };
    // Gradients accumulate across rounds; that costs the same in every variant.

    const auto settings = moelab::core::current_threads();
    std::printf(
        "moe block benchmark on %s%s: tokens=%lld d_model=%lld d_ff=%lld experts=%lld "
        "top-%lld, forward+backward, %d rounds\n",
        o.device.c_str(), cuda && o.bf16 ? " (bf16 autocast)" : "",
        static_cast<long long>(o.tokens), static_cast<long long>(o.d_model),
        static_cast<long long>(o.d_ff), static_cast<long long>(o.experts),
        static_cast<long long>(o.k), o.rounds);
    if (cuda) {
        std::printf("dense peer: cuBLAS through LibTorch\n");
    } else {
        std::printf("threads: intra-op %d, BLAS %d (cores %d); BLAS %s\n", settings.intra_op,
                    settings.blas, cores, moelab::core::probe_blas().description().c_str());
    }
    std::printf("dense baseline: SwiGLU d_ff=%lld (= k x d_ff, equal active FLOPs); kernel %s\n",
                static_cast<long long>(o.k * o.d_ff), o.kernel.c_str());

    // The machine's GEMM peak, in this process with these threads.
    const at::TensorOptions gemm_options =
        at::TensorOptions().device(device).dtype(cuda && o.bf16 ? at::kBFloat16 : at::kFloat);
    const double peak = gemm_gflops(2048, 2048, 2048, gemm_options, cuda, 5);
    const std::int64_t expert_rows = std::max<std::int64_t>(1, o.tokens * o.k / o.experts);
    const double at_shape = gemm_gflops(expert_rows, o.d_model, 2 * o.d_ff, gemm_options, cuda, 5);

    if (!o.only.empty()) {
        const std::function<void()> run = o.only == "moe"       ? std::function<void()>(run_moe)
                                          : o.only == "experts" ? std::function<void()>(run_experts)
                                          : o.only == "dense"   ? std::function<void()>(run_dense)
                                                                : std::function<void()>(run_naive);
        std::vector<double> times;
        for (int r = 0; r < o.rounds + 1; ++r) times.push_back(seconds(run, cuda));
        times.erase(times.begin());  // warm-up
        std::printf("%s only: median %.1f ms\n", o.only.c_str(), 1e3 * median(times));
        return 0;
    }

    // Warm-up, then interleaved rounds.
    run_moe();
    run_experts();
    run_dense();
    run_naive();
    std::vector<double> moe, experts, dense_t, naive;
    for (int r = 0; r < o.rounds; ++r) {
        moe.push_back(seconds(run_moe, cuda));
        experts.push_back(seconds(run_experts, cuda));
        dense_t.push_back(seconds(run_dense, cuda));
        naive.push_back(seconds(run_naive, cuda));
    }
    const double m = median(moe), x = median(experts), d = median(dense_t), n = median(naive);
    std::printf("%-8s %10s\n", "variant", "median ms");
    std::printf("%-8s %10.1f\n", "moe", 1e3 * m);
    std::printf("%-8s %10.1f   (the expert kernel alone)\n", "experts", 1e3 * x);
    std::printf("%-8s %10.1f\n", "dense", 1e3 * d);
    std::printf("%-8s %10.1f\n", "naive", 1e3 * n);
    std::printf("ratio moe/dense = %.3f\n", m / d);
    std::printf("ratio naive/moe = %.3f\n", n / m);
    const double flops = 18.0 * o.tokens * o.k * o.d_model * o.d_ff;
    const double moe_gflops = flops / m / 1e9, dense_gflops = flops / d / 1e9,
                 experts_gflops = flops / x / 1e9;
    std::printf(
        "GEMM peak (2048^3): %.1f GFLOP/s; at one expert's shape (%lld x %lld x %lld): "
        "%.1f GFLOP/s\n",
        peak, static_cast<long long>(expert_rows), static_cast<long long>(o.d_model),
        static_cast<long long>(2 * o.d_ff), at_shape);
    std::printf(
        "achieved: moe layer %.1f GFLOP/s (%.0f%% of peak), expert kernel alone %.1f GFLOP/s "
        "(%.0f%% of peak), dense %.1f GFLOP/s (%.0f%% of peak)\n",
        moe_gflops, 100 * moe_gflops / peak, experts_gflops, 100 * experts_gflops / peak,
        dense_gflops, 100 * dense_gflops / peak);
    std::printf(
        "{\"moe_ms\": %.3f, \"dense_ms\": %.3f, \"naive_ms\": %.3f, \"moe_over_dense\": "
        "%.4f, \"naive_over_moe\": %.4f, \"gemm_peak_gflops\": %.2f, "
        "\"gemm_at_expert_shape_gflops\": %.2f, \"moe_gflops\": %.2f, \"dense_gflops\": %.2f, "
        "\"moe_fraction_of_peak\": %.4f, \"experts_ms\": %.3f, \"experts_gflops\": %.2f, "
        "\"experts_fraction_of_peak\": %.4f}\n",
        1e3 * m, 1e3 * d, 1e3 * n, m / d, n / m, peak, at_shape, moe_gflops, dense_gflops,
        moe_gflops / peak, 1e3 * x, experts_gflops, experts_gflops / peak);
    return 0;
}
