#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/probe/fma_probe_impl.h"

namespace convforge {

float fma_probe__avx2(int64_t iters) {
  return fma_chains<kProbeChainsAvx2, __m256>(
      iters, [](float v) { return _mm256_set1_ps(v); },
      [](__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); },
      [](__m256 a, __m256 b) { return _mm256_add_ps(a, b); },
      [](__m256 v) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, v);
        float sum = 0;
        for (float x : lanes) sum += x;
        return sum;
      });
}

}  // namespace convforge
