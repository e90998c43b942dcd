// conv2d with an AVX-512F micro-kernel: 12 rows x 32 columns (two zmm) of C in 24 registers,
// each step one row of B (two vector loads) and 12 broadcasts of A. Compiled with -mavx512f.
#include <immintrin.h>

#include "kernels/conv2d/conv2d_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

struct UkernelAvx512 {
  using T = float;
  static constexpr int MR = 12, NR = 32;

  template <int M>
  static void run(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int n,
                  bool accumulate) {
    if (n > 16) {
      body<M, 2>(kc, a, b, ldb, c, ldc, n, accumulate);
    } else {
      body<M, 1>(kc, a, b, ldb, c, ldc, n, accumulate);
    }
  }

  // NV vectors of 16 columns; masks keep every load and store inside the n real columns,
  // since NumPy buffers have no slack past their end.
  template <int M, int NV>
  static void body(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int n,
                   bool accumulate) {
    __mmask16 mask[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const int cols = n - 16 * v;
      mask[v] = cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
    }
    __m512 acc[M][NV];
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v)
        acc[i][v] = accumulate ? _mm512_maskz_loadu_ps(mask[v], c + i * ldc + 16 * v) : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; ++k, a += M, b += ldb) {
      __m512 bv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
#pragma GCC unroll 12
      for (int i = 0; i < M; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
    }
  }
};

}  // namespace

void conv2d_fwd__avx512(const ConvShape& s, const float* src, const float* wei, const float* bias, float* dst) {
  conv2d_fwd<UkernelAvx512>(s, src, wei, bias, dst);
}
void conv2d_bwd_data__avx512(const ConvShape& s, const float* diff_dst, const float* wei, float* diff_src) {
  conv2d_bwd_data<UkernelAvx512>(s, diff_dst, wei, diff_src);
}
void conv2d_bwd_weights__avx512(const ConvShape& s, const float* diff_dst, const float* src, float* diff_wei,
                                float* diff_bias) {
  conv2d_bwd_weights<UkernelAvx512>(s, diff_dst, src, diff_wei, diff_bias);
}

}  // namespace convforge
