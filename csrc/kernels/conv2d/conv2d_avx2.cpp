// conv2d with an AVX2+FMA micro-kernel: 6 rows x 16 columns (two ymm) of C in 12 registers.
// Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include "kernels/conv2d/conv2d_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

// Sliding window of 8 lanes over this table gives a load/store mask for 0..8 columns.
alignas(64) const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

struct UkernelAvx2 {
  using T = float;
  static constexpr int MR = 6, NR = 16;

  template <int M>
  static void run(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int n,
                  bool accumulate) {
    if (n > 8) {
      body<M, 2>(kc, a, b, ldb, c, ldc, n, accumulate);
    } else {
      body<M, 1>(kc, a, b, ldb, c, ldc, n, accumulate);
    }
  }

  template <int M, int NV>
  static void body(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int n,
                   bool accumulate) {
    __m256i mask[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const int cols = n - 8 * v;
      mask[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - (cols >= 8 ? 8 : cols)));
    }
    __m256 acc[M][NV];
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v)
        acc[i][v] = accumulate ? _mm256_maskload_ps(c + i * ldc + 8 * v, mask[v]) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; ++k, a += M, b += ldb) {
      __m256 bv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) bv[v] = _mm256_maskload_ps(b + 8 * v, mask[v]);
#pragma GCC unroll 6
      for (int i = 0; i < M; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) _mm256_maskstore_ps(c + i * ldc + 8 * v, mask[v], acc[i][v]);
    }
  }
};

}  // namespace

void conv2d_fwd__avx2(const ConvShape& s, const float* src, const float* wei, const float* bias, float* dst) {
  conv2d_fwd<UkernelAvx2>(s, src, wei, bias, dst);
}
void conv2d_bwd_data__avx2(const ConvShape& s, const float* diff_dst, const float* wei, float* diff_src) {
  conv2d_bwd_data<UkernelAvx2>(s, diff_dst, wei, diff_src);
}
void conv2d_bwd_weights__avx2(const ConvShape& s, const float* diff_dst, const float* src, float* diff_wei,
                              float* diff_bias) {
  conv2d_bwd_weights<UkernelAvx2>(s, diff_dst, src, diff_wei, diff_bias);
}

}  // namespace convforge
