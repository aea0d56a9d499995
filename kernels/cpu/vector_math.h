#pragma once

// Elementwise math for the CPU launchers' fused passes (internal to kernels/cpu), written so that
// the compiler vectorises loops over it, and the macro that compiles such loops once per target.

#include <cstdint>

namespace moelab::kernels::cpu {

// e^x in float, within about 2 ulp of the exact value on [-87, 88] (inputs outside are clamped
// there), written so that the compiler vectorises loops over it: no branches, calls or tables.
// Cody-Waite reduction x = n ln2 + r with ln2 split in two so that n ln2 is exact, the classic
// Cephes degree-6 polynomial for e^r on |r| <= ln2 / 2, and 2^n put together in the exponent bits.
[[gnu::always_inline]] inline float exp_approx(float x) {
    // Plain comparisons and builtins, no calls into the standard library: those would stay
    // compiled for the baseline target and not inline into the AVX2 clones of the callers.
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln2): adding and subtracting 1.5 * 2^23 rounds to an integer in float
    // arithmetic (no fast-math here, so the compiler keeps the two operations).
    constexpr float kRound = 12582912.0f;
    const float n = (x * 1.44269504088896341f + kRound) - kRound;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * __builtin_bit_cast(float, (static_cast<std::int32_t>(n) + 127) << 23);
}

}  // namespace moelab::kernels::cpu

// Float loops are compiled twice, for AVX2 and for the baseline, and the loader picks what the
// machine has (function multiversioning in GCC and Clang): the build stays portable and common
// machines run 8 lanes. Versions are chosen by feature; an `arch=` version would be chosen only on
// that exact CPU model. The functions they inline must be always_inline, so that each clone
// compiles them for its own target.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOELAB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MOELAB_CLONES
#endif
