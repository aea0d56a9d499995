#pragma once

// Since 5.6.1. MOELAB_SDK_VECTORIZE marks a function whose loops over float rows should become
// vector code at -O2, the optimisation level of release builds.
//
// At -O2, GCC 12 vectorizes a loop only where the vector code replaces the scalar loop entirely
// (its "very cheap" cost model): a loop over a row of runtime length, which needs a scalar
// remainder, stays scalar. The RMSNorm backward's loops ran 3.6x slower for it (0.67 ms instead
// of 0.19 ms for 2048 rows of 256 on one core). The attribute gives the marked function the cost
// model of -O3 only; Clang vectorizes such loops at -O2 already and has no such attribute. The
// values do not change: the loops are elementwise, and a vector lane computes what the scalar
// iteration did.

#if defined(__GNUC__) && !defined(__clang__)
#define MOELAB_SDK_VECTORIZE __attribute__((optimize("vect-cost-model=dynamic")))
#else
#define MOELAB_SDK_VECTORIZE
#endif
