// ReLU with AVX2: 4 vectors per step, then one masked vector for the tail.
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/relu/relu_impl.h"

namespace convforge {
namespace {

alignas(64) const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

// x where x > 0 or x is NaN (_CMP_NLE_UQ is true for unordered), else +0.
inline __m256 relu_vec(__m256 x) { return _mm256_and_ps(x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NLE_UQ)); }
inline __m256 relu_grad_vec(__m256 dy, __m256 x) {
  return _mm256_and_ps(dy, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
}
inline __m256i tail_mask(int64_t left) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - (left >= 8 ? 8 : left)));
}

// One block [b, e) of each pass, its pointers as parameters (see relu_blocks).
void relu_fwd_block(int64_t b, int64_t e, const float* src, float* dst) {
  int64_t i = b;
  if (const int64_t a = aligned_start<32>(dst, b, e); a > i) {  // masked head, as in relu_fwd__avx512
    const __m256i m = tail_mask(a - i);
    _mm256_maskstore_ps(dst + i, m, relu_vec(_mm256_maskload_ps(src + i, m)));
    i = a;
  }
  for (; i + 32 <= e; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(src + i), x1 = _mm256_loadu_ps(src + i + 8);
    const __m256 x2 = _mm256_loadu_ps(src + i + 16), x3 = _mm256_loadu_ps(src + i + 24);
    _mm256_storeu_ps(dst + i, relu_vec(x0));
    _mm256_storeu_ps(dst + i + 8, relu_vec(x1));
    _mm256_storeu_ps(dst + i + 16, relu_vec(x2));
    _mm256_storeu_ps(dst + i + 24, relu_vec(x3));
  }
  for (; i < e; i += 8) {
    const __m256i m = tail_mask(e - i);
    _mm256_maskstore_ps(dst + i, m, relu_vec(_mm256_maskload_ps(src + i, m)));
  }
}

void relu_bwd_block(int64_t b, int64_t e, const float* diff_dst, const float* src, float* diff_src) {
  int64_t i = b;
  if (const int64_t a = aligned_start<32>(diff_src, b, e); a > i) {
    const __m256i m = tail_mask(a - i);
    _mm256_maskstore_ps(diff_src + i, m,
                        relu_grad_vec(_mm256_maskload_ps(diff_dst + i, m), _mm256_maskload_ps(src + i, m)));
    i = a;
  }
  for (; i + 16 <= e; i += 16) {
    const __m256 g0 = relu_grad_vec(_mm256_loadu_ps(diff_dst + i), _mm256_loadu_ps(src + i));
    const __m256 g1 = relu_grad_vec(_mm256_loadu_ps(diff_dst + i + 8), _mm256_loadu_ps(src + i + 8));
    _mm256_storeu_ps(diff_src + i, g0);
    _mm256_storeu_ps(diff_src + i + 8, g1);
  }
  for (; i < e; i += 8) {
    const __m256i m = tail_mask(e - i);
    _mm256_maskstore_ps(diff_src + i, m, relu_grad_vec(_mm256_maskload_ps(diff_dst + i, m), _mm256_maskload_ps(src + i, m)));
  }
}

}  // namespace

void relu_fwd__avx2(int64_t n, const float* src, float* dst) {
  relu_blocks(n, 8.0, [&](int64_t b, int64_t e) { relu_fwd_block(b, e, src, dst); });
}

void relu_bwd__avx2(int64_t n, const float* diff_dst, const float* src, float* diff_src) {
  relu_blocks(n, 12.0, [&](int64_t b, int64_t e) { relu_bwd_block(b, e, diff_dst, src, diff_src); });
}

}  // namespace convforge
