// Max-pooling with AVX2 for the 2x2 window, stride 2, no padding; any other geometry runs the
// portable kernel. 8 outputs per step, with the same folding rules as the AVX-512 kernel
// (strictly greater wins; a NaN beats a non-NaN).
#include <immintrin.h>

#include "common/parallel.h"
#include "kernels/kernels.h"
#include "kernels/maxpool2d/maxpool2d_impl.h"

namespace convforge {
namespace {

alignas(64) const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

inline __m256i lanes_mask(int lanes) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - (lanes >= 8 ? 8 : (lanes < 0 ? 0 : lanes))));
}

struct Avx2Pool {
  static inline void fold(__m256 v, int pos, __m256& best, __m256i& at) {
    const __m256 greater = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
    const __m256 nan_wins = _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q));
    const __m256 take = _mm256_or_ps(greater, nan_wins);
    best = _mm256_blendv_ps(best, v, take);
    at = _mm256_blendv_epi8(at, _mm256_set1_epi32(pos), _mm256_castps_si256(take));
  }

  // (even, odd) columns of 16 consecutive floats in two vectors, in order.
  static inline void split(__m256 lo, __m256 hi, __m256& even, __m256& odd) {
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  }

  // A full step (8 outputs) loads and stores plainly: vmaskmovps stores are microcoded on AMD
  // cores, and masked throughout, this kernel ran at half the AVX-512 one's rate there.
  static inline void step(const float* r0, const float* r1, int64_t iw, int64_t in_row0, int64_t o0, int n, float* y,
                          int64_t* idx) {
    if (n == 8) step_of<true>(r0, r1, iw, in_row0, o0, n, y, idx);
    else step_of<false>(r0, r1, iw, in_row0, o0, n, y, idx);
  }
  template <bool full>
  static inline void step_of(const float* r0, const float* r1, int64_t iw, int64_t in_row0, int64_t o0, int n, float* y,
                             int64_t* idx) {
    const int cols = 2 * n;
    const __m256i m_lo = lanes_mask(cols), m_hi = lanes_mask(cols - 8);
    const auto load = [](const float* p, __m256i m) { return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m); };
    const float* a0 = r0 + 2 * o0;
    const float* a1 = r1 + 2 * o0;
    __m256 e0, o0v, e1, o1;
    split(load(a0, m_lo), load(a0 + 8, m_hi), e0, o0v);
    split(load(a1, m_lo), load(a1 + 8, m_hi), e1, o1);
    __m256 best = e0;
    __m256i at = _mm256_setzero_si256();
    fold(o0v, 1, best, at);
    fold(e1, 2, best, at);
    fold(o1, 3, best, at);
    if constexpr (full) _mm256_storeu_ps(y + o0, best);
    else _mm256_maskstore_ps(y + o0, lanes_mask(n), best);
    if (idx == nullptr) return;
    const __m256i o = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(o0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i local = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_slli_epi32(o, 1), _mm256_and_si256(at, _mm256_set1_epi32(1))),
        _mm256_mullo_epi32(_mm256_srli_epi32(at, 1), _mm256_set1_epi32(static_cast<int>(iw))));
    const __m256i base = _mm256_set1_epi64x(in_row0);
    const __m256i lo = _mm256_add_epi64(base, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(local)));
    const __m256i hi = _mm256_add_epi64(base, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(local, 1)));
    if constexpr (full) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + o0), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + o0 + 4), hi);
      return;
    }
    // 64-bit lane masks: lane i of 4 is live if i < n (first half) or i + 4 < n (second half).
    const __m256i m64_lo = _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMaskTable + 8 - (n >= 4 ? 4 : n))));
    const int n_hi = n - 4 < 0 ? 0 : (n - 4 > 4 ? 4 : n - 4);
    const __m256i m64_hi = _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMaskTable + 8 - n_hi)));
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(idx + o0), m64_lo, lo);
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(idx + o0 + 4), m64_hi, hi);
  }
};

}  // namespace

void maxpool2d_fwd__avx2(const PoolShape& s, const float* src, float* dst, int64_t* workspace) {
  // Only for problems maxpool2d_2x2_s2_applies to (the dispatch table asks it first).
  maxpool_2x2_planes<Avx2Pool, 8>(s, src, dst, workspace);
}

}  // namespace convforge
