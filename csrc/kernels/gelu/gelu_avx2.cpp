// GELU and its gradient on float32 with AVX2: gelu_impl.h's evaluation on 4 doubles at a time,
// 8 floats per step (two halves).
#include <immintrin.h>

#include <cstdint>

#include "kernels/gelu/gelu_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

struct Avx2Ops {
  using D = __m256d;
  static D set(double v) { return _mm256_set1_pd(v); }
  static D add(D a, D b) { return _mm256_add_pd(a, b); }
  static D sub(D a, D b) { return _mm256_sub_pd(a, b); }
  static D mul(D a, D b) { return _mm256_mul_pd(a, b); }
  static D div(D a, D b) { return _mm256_div_pd(a, b); }
  static D abs(D a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static D min_bound(D a, double bound) {  // a where a < bound (ordered), else bound: NaN -> bound
    const D b = set(bound);
    return _mm256_blendv_pd(b, a, _mm256_cmp_pd(a, b, _CMP_LT_OQ));
  }
  static D zero_where_above(D v, D a, double bound) {
    return _mm256_blendv_pd(v, _mm256_setzero_pd(), _mm256_cmp_pd(a, set(bound), _CMP_GT_OQ));
  }
  static D select_nonnegative(D x, D if_yes, D if_no) {
    return _mm256_blendv_pd(if_no, if_yes, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ));
  }
  static D pow2_of_rounded(D k) {
    const __m256i bits = _mm256_add_epi64(_mm256_castpd_si256(k), _mm256_set1_epi64x(1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(bits, 52));
  }
};

// 8 floats a step, as two vectors of 4 doubles.
struct Avx2Lanes {
  static constexpr int kFloats = 8;
  static void gelu(const float* src, float* dst) {
    const __m256 x = _mm256_loadu_ps(src);
    const __m128 lo = _mm256_cvtpd_ps(gelu_value<Avx2Ops>(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
    const __m128 hi = _mm256_cvtpd_ps(gelu_value<Avx2Ops>(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
    _mm256_storeu_ps(dst, _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1));
  }
  static void gradient(const float* diff_dst, const float* src, float* diff_src) {
    const __m256 dy = _mm256_loadu_ps(diff_dst), x = _mm256_loadu_ps(src);
    const __m128 lo = _mm256_cvtpd_ps(gelu_gradient<Avx2Ops>(_mm256_cvtps_pd(_mm256_castps256_ps128(dy)),
                                                             _mm256_cvtps_pd(_mm256_castps256_ps128(x))));
    const __m128 hi = _mm256_cvtpd_ps(gelu_gradient<Avx2Ops>(_mm256_cvtps_pd(_mm256_extractf128_ps(dy, 1)),
                                                             _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
    _mm256_storeu_ps(diff_src, _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1));
  }
};

}  // namespace

void gelu_fwd__avx2(int64_t n, const float* src, float* dst) { gelu_fwd_lanes<Avx2Lanes>(n, src, dst); }

void gelu_bwd__avx2(int64_t n, const float* diff_dst, const float* src, float* diff_src) {
  gelu_bwd_lanes<Avx2Lanes>(n, diff_dst, src, diff_src);
}

}  // namespace convforge
