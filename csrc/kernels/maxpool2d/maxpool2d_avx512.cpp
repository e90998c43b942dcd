// Max-pooling with AVX-512F for the classic 2x2 window, stride 2, no padding (every CNN's
// pooling layer); any other geometry runs the portable kernel. 16 outputs per step: the even
// and odd columns of two input rows are split with one permute each, then the four window
// candidates are folded in row-major order with exactly the reference rules (strictly greater
// wins, so the first maximum keeps ties; a NaN beats a non-NaN, so the first NaN wins).
#include "common/avx512.h"

#include "common/parallel.h"
#include "kernels/kernels.h"
#include "kernels/maxpool2d/maxpool2d_impl.h"

namespace convforge {
namespace {

struct Avx512Pool {
  // Takes candidate v (window position pos) over the running (best, at) where it wins.
  static inline void fold(__m512 v, int pos, __m512& best, __m512i& at) {
    const __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    const __mmask16 nan_wins =
        _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
    const __mmask16 take = greater | nan_wins;
    best = _mm512_mask_mov_ps(best, take, v);
    at = _mm512_mask_mov_epi32(at, take, _mm512_set1_epi32(pos));
  }

  // The 16 windows whose columns are split over (lo, hi) lanes of the two input rows (x0, x1):
  // the even and odd columns of each row by one permute each, the four candidates folded in
  // row-major order. `at`: the winner's window position (0-3).
  static inline void windows(__m512 x0l, __m512 x0h, __m512 x1l, __m512 x1h, __m512& best, __m512i& at) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    best = _mm512_permutex2var_ps(x0l, even, x0h);
    at = _mm512_setzero_si512();
    fold(_mm512_permutex2var_ps(x0l, odd, x0h), 1, best, at);
    fold(_mm512_permutex2var_ps(x1l, even, x1h), 2, best, at);
    fold(_mm512_permutex2var_ps(x1l, odd, x1h), 3, best, at);
  }

  // Outputs [o0, o0 + n) of one output row, n <= 16; rows r0, r1 of the input plane.
  static inline void step(const float* r0, const float* r1, int64_t iw, int64_t in_row0, int64_t o0, int n, float* y,
                          int64_t* idx) {
    const __mmask16 m_out = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
    // Input columns [2*o0, 2*o0 + 2n) in two vectors.
    const int cols = 2 * n;
    const __mmask16 m_lo = cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
    const __mmask16 m_hi = cols <= 16 ? 0 : (cols >= 32 ? static_cast<__mmask16>(0xFFFF)
                                                         : static_cast<__mmask16>((1u << (cols - 16)) - 1u));
    const float* a0 = r0 + 2 * o0;
    const float* a1 = r1 + 2 * o0;
    const __m512 x0l = _mm512_maskz_loadu_ps(m_lo, a0), x0h = _mm512_maskz_loadu_ps(m_hi, a0 + 16);
    const __m512 x1l = _mm512_maskz_loadu_ps(m_lo, a1), x1h = _mm512_maskz_loadu_ps(m_hi, a1 + 16);
    __m512 best;
    __m512i at;
    windows(x0l, x0h, x1l, x1h, best, at);
    _mm512_mask_storeu_ps(y + o0, m_out, best);
    if (idx == nullptr) return;
    // Window position p -> flat index base + (p >> 1) * iw + (p & 1), base = in_row0 + 2*o.
    const __m512i o = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(o0)),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i local = _mm512_add_epi32(
        _mm512_add_epi32(_mm512_slli_epi32(o, 1), _mm512_and_si512(at, _mm512_set1_epi32(1))),
        _mm512_mullo_epi32(_mm512_srli_epi32(at, 1), _mm512_set1_epi32(static_cast<int>(iw))));
    const __m512i base = _mm512_set1_epi64(in_row0);
    const __m512i lo = _mm512_add_epi64(base, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(local)));
    const __m512i hi =
        _mm512_add_epi64(base, _mm512_cvtepi32_epi64(_mm256_castpd_si256(_mm512_extractf64x4_pd(_mm512_castsi512_pd(local), 1))));
    _mm512_mask_storeu_epi64(idx + o0, static_cast<__mmask8>(m_out & 0xFF), lo);
    _mm512_mask_storeu_epi64(idx + o0 + 8, static_cast<__mmask8>(m_out >> 8), hi);
  }

  // Two output rows of n <= 8 outputs at once (LeNet's 10x10 -> 5x5: a row per step spent a
  // step's fixed cost on 5 outputs). Output row A's input rows fill the low 16 lanes, row B's
  // the high 16, so the even/odd permutes give A's outputs in lanes 0-7 and B's in 8-15; each
  // lane folds its window's four candidates in the same order as step.
  static inline void step_two_rows(const float* a0, const float* a1, const float* b0, const float* b1, int64_t iw,
                                   int64_t in_row_a, int n, float* ya, float* yb, int64_t* ia, int64_t* ib) {
    const __mmask16 m_in = static_cast<__mmask16>((1u << (2 * n)) - 1u);
    const __mmask8 m_out = static_cast<__mmask8>((1u << n) - 1u);
    const __m512 x0l = _mm512_maskz_loadu_ps(m_in, a0), x0h = _mm512_maskz_loadu_ps(m_in, b0);
    const __m512 x1l = _mm512_maskz_loadu_ps(m_in, a1), x1h = _mm512_maskz_loadu_ps(m_in, b1);
    __m512 best;
    __m512i at;
    windows(x0l, x0h, x1l, x1h, best, at);
    _mm512_mask_storeu_ps(ya, m_out, best);
    _mm512_mask_storeu_ps(yb, m_out, _mm512_shuffle_f32x4(best, best, _MM_SHUFFLE(3, 2, 3, 2)));  // B's half down
    if (ia == nullptr) return;
    // Lane l of either half: output column o = l % 8, flat index row0 + 2*o + (p & 1) + (p >> 1) * iw,
    // row0 = in_row_a for A and in_row_a + 2*iw for B.
    const __m512i o = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i local = _mm512_add_epi32(
        _mm512_add_epi32(_mm512_slli_epi32(o, 1), _mm512_and_si512(at, _mm512_set1_epi32(1))),
        _mm512_mullo_epi32(_mm512_srli_epi32(at, 1), _mm512_set1_epi32(static_cast<int>(iw))));
    const __m512i lo = _mm512_add_epi64(_mm512_set1_epi64(in_row_a), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(local)));
    const __m512i hi = _mm512_add_epi64(
        _mm512_set1_epi64(in_row_a + 2 * iw),
        _mm512_cvtepi32_epi64(_mm256_castpd_si256(_mm512_extractf64x4_pd(_mm512_castsi512_pd(local), 1))));
    _mm512_mask_storeu_epi64(ia, m_out, lo);
    _mm512_mask_storeu_epi64(ib, m_out, hi);
  }
};

// Narrow planes (up to 8 outputs a row): two output rows per step, the last odd row alone.
void maxpool_2x2_narrow_planes(const PoolShape& s, const float* src, float* dst, int64_t* workspace) {
  const int64_t planes = s.mb * s.c, in_plane = s.ih * s.iw, out_plane = s.oh * s.ow;
  const int n = static_cast<int>(s.ow);
  parallel_for_grains(plan_threads(planes, pool_work(s, 4, workspace != nullptr)), planes, planes_per_item(in_plane),
                      [&](int64_t p0, int64_t p1, int) {
    for (int64_t plane = p0; plane < p1; ++plane) {
      const float* x = src + plane * in_plane;
      float* y = dst + plane * out_plane;
      int64_t* idx = workspace != nullptr ? workspace + plane * out_plane : nullptr;
      int64_t oh = 0;
      for (; oh + 1 < s.oh; oh += 2) {
        const float* r = x + 2 * oh * s.iw;
        Avx512Pool::step_two_rows(r, r + s.iw, r + 2 * s.iw, r + 3 * s.iw, s.iw, 2 * oh * s.iw, n, y + oh * s.ow,
                                  y + (oh + 1) * s.ow, idx != nullptr ? idx + oh * s.ow : nullptr,
                                  idx != nullptr ? idx + (oh + 1) * s.ow : nullptr);
      }
      if (oh < s.oh) {
        const float* r0 = x + 2 * oh * s.iw;
        Avx512Pool::step(r0, r0 + s.iw, s.iw, 2 * oh * s.iw, 0, n, y + oh * s.ow, idx != nullptr ? idx + oh * s.ow : nullptr);
      }
    }
  });
}

}  // namespace

void maxpool2d_fwd__avx512(const PoolShape& s, const float* src, float* dst, int64_t* workspace) {
  // Only for problems maxpool2d_2x2_s2_applies to (the dispatch table asks it first).
  if (s.ow <= 8) {
    maxpool_2x2_narrow_planes(s, src, dst, workspace);
  } else {
    maxpool_2x2_planes<Avx512Pool, 16>(s, src, dst, workspace);
  }
}

}  // namespace convforge
