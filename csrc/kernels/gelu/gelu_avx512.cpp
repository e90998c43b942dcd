// GELU and its gradient on float32 with AVX-512F: gelu_impl.h's evaluation on 8 doubles at a
// time, 16 floats per step (two halves).
#include "common/avx512.h"

#include <cstdint>

#include "kernels/gelu/gelu_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

struct Avx512Ops {
  using D = __m512d;
  static D set(double v) { return _mm512_set1_pd(v); }
  static D add(D a, D b) { return _mm512_add_pd(a, b); }
  static D sub(D a, D b) { return _mm512_sub_pd(a, b); }
  static D mul(D a, D b) { return _mm512_mul_pd(a, b); }
  static D div(D a, D b) { return _mm512_div_pd(a, b); }
  static D abs(D a) { return _mm512_abs_pd(a); }
  static D min_bound(D a, double bound) {  // a where a < bound (ordered), else bound: NaN -> bound
    const D b = set(bound);
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, b, _CMP_LT_OQ), b, a);
  }
  static D zero_where_above(D v, D a, double bound) {
    return _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(a, set(bound), _CMP_GT_OQ), _mm512_setzero_pd());
  }
  static D select_nonnegative(D x, D if_yes, D if_no) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GE_OQ), if_no, if_yes);
  }
  static D pow2_of_rounded(D k) {
    const __m512i bits = _mm512_add_epi64(_mm512_castpd_si512(k), _mm512_set1_epi64(1023));
    return _mm512_castsi512_pd(_mm512_slli_epi64(bits, 52));
  }
};

inline __m256 lower_half(__m512 v) { return _mm512_castps512_ps256(v); }
inline __m256 upper_half(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
inline __m512 join(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}

// 16 floats a step, as two vectors of 8 doubles.
struct Avx512Lanes {
  static constexpr int kFloats = 16;
  static void gelu(const float* src, float* dst) {
    const __m512 x = _mm512_loadu_ps(src);
    const __m256 lo = _mm512_cvtpd_ps(gelu_value<Avx512Ops>(_mm512_cvtps_pd(lower_half(x))));
    const __m256 hi = _mm512_cvtpd_ps(gelu_value<Avx512Ops>(_mm512_cvtps_pd(upper_half(x))));
    _mm512_storeu_ps(dst, join(lo, hi));
  }
  static void gradient(const float* diff_dst, const float* src, float* diff_src) {
    const __m512 dy = _mm512_loadu_ps(diff_dst), x = _mm512_loadu_ps(src);
    const __m256 lo = _mm512_cvtpd_ps(
        gelu_gradient<Avx512Ops>(_mm512_cvtps_pd(lower_half(dy)), _mm512_cvtps_pd(lower_half(x))));
    const __m256 hi = _mm512_cvtpd_ps(
        gelu_gradient<Avx512Ops>(_mm512_cvtps_pd(upper_half(dy)), _mm512_cvtps_pd(upper_half(x))));
    _mm512_storeu_ps(diff_src, join(lo, hi));
  }
};

}  // namespace

void gelu_fwd__avx512(int64_t n, const float* src, float* dst) { gelu_fwd_lanes<Avx512Lanes>(n, src, dst); }

void gelu_bwd__avx512(int64_t n, const float* diff_dst, const float* src, float* diff_src) {
  gelu_bwd_lanes<Avx512Lanes>(n, diff_dst, src, diff_src);
}

}  // namespace convforge
