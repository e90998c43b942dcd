// Peak-throughput probe: CHAINS independent chains of vector FMAs, enough to cover the FMA
// latency times the number of FMA pipes on current x86 cores, so the loop runs at the machine's
// peak; few enough that the chains and two constants stay in registers (16 ymm, 32 zmm).
// Benchmarks divide their GFLOP/s by what this measures. Internal linkage (see gemm/ukernel.h).
#pragma once

#include <cstdint>

namespace convforge {
namespace {

// Every chain starts from a different value: identical chains could be merged by the compiler
// into one, and the probe would report several times the real peak.
template <int CHAINS, class V, class Set1, class Fma, class Add>
float fma_chains(int64_t iters, Set1 set1, Fma fma, Add add, float (*reduce)(V)) {
  V acc[CHAINS];
  const V mul = set1(0.999f), seed = set1(1e-3f);
#pragma GCC unroll 16
  for (int i = 0; i < CHAINS; ++i) acc[i] = set1(1.0f + 0.125f * static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; ++i) acc[i] = fma(acc[i], mul, seed);
  }
  V total = acc[0];
#pragma GCC unroll 15
  for (int i = 1; i < CHAINS; ++i) total = add(total, acc[i]);
  return reduce(total);
}

}  // namespace
}  // namespace convforge
