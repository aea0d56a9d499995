#include <cstdlib>

#include <ATen/Context.h>
#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/system/gemm_peak.h"
#include "core/system/threads.h"

namespace moelab::cli {

int measure_gemm_peak(const PeakArgs& args) {
    if (!(args.seconds >= 0 && args.seconds <= 3600)) {
        throw UsageError(fmt::format("--seconds: expected 0 to 3600, got {}", args.seconds));
    }
    const bool cuda = args.device == "cuda";
    if (!cuda && args.device != "cpu") {
        throw UsageError(fmt::format("--device: expected cpu or cuda, got '{}'", args.device));
    }
    if (args.dtype != "float32" && args.dtype != "bfloat16") {
        throw UsageError(
            fmt::format("--dtype: expected float32 or bfloat16, got '{}'", args.dtype));
    }
    // Runs compute in bfloat16 only on CUDA (a bfloat16 recipe computes in float32 on the CPU),
    // so no run would ever read a CPU bfloat16 peak.
    if (args.dtype == "bfloat16" && !cuda) {
        throw UsageError(
            "--dtype bfloat16: runs compute in bfloat16 on CUDA only; add --device cuda");
    }
    if (cuda && !at::hasCUDA()) {
        throw UsageError("--device cuda: this build or machine has no CUDA device");
    }
    if (std::getenv("MOELAB_GEMM_PEAK_GFLOPS") != nullptr) {
        throw UsageError(
            "MOELAB_GEMM_PEAK_GFLOPS is set: runs take the peak from it and nothing is measured; "
            "unset it to measure the machine's");
    }
    // The threads a run uses by default, so that the peak lands under the key runs read.
    core::apply_threads(core::recipe_threads(0, 0));
    const core::GemmPeak peak =
        core::gemm_peak(cuda ? at::Device(at::kCUDA, 0) : at::kCPU,
                        args.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat, args.seconds);
    fmt::print("GEMM peak, {}\n", peak.description);
    fmt::print("measured now: best {:.1f} GFLOP/s, median {:.1f}, of {} products in {:.1f} s\n",
               peak.measured_now, peak.measured_median, peak.products, peak.seconds);
    if (peak.cached_before > 0) {
        fmt::print("cached before: {:.1f} GFLOP/s\n", peak.cached_before);
    } else {
        fmt::print("cached before: nothing under this key\n");
    }
    fmt::print("the reference of MFU from now on: {:.1f} GFLOP/s ({})\n", peak.gflops,
               peak.source == "measured" ? fmt::format("this measurement, cached in {}",
                                                       core::gemm_peak_cache_file().string())
                                         : peak.source);
    return kExitOk;
}

}  // namespace moelab::cli
