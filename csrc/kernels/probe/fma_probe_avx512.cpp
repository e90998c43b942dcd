#include "common/avx512.h"

#include "kernels/kernels.h"
#include "kernels/probe/fma_probe_impl.h"

namespace convforge {

float fma_probe__avx512(int64_t iters) {
  return fma_chains<kProbeChainsAvx512, __m512>(
      iters, [](float v) { return _mm512_set1_ps(v); },
      [](__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); },
      [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); },
      [](__m512 v) {
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, v);
        float sum = 0;
        for (float x : lanes) sum += x;
        return sum;
      });
}

}  // namespace convforge
