#include "kernels/kernels.h"
#include "kernels/probe/fma_probe_impl.h"

namespace convforge {

// Scalar multiply-adds (the portable build has no FMA instruction): counts as 2 flops each.
float fma_probe__ref(int64_t iters) {
  return fma_chains<kProbeChainsRef, float>(
      iters, [](float v) { return v; }, [](float a, float b, float c) { return a * b + c; },
      [](float a, float b) { return a + b; }, [](float v) { return v; });
}

}  // namespace convforge
