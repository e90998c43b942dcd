// Row primitives (see rows_ref.h) with AVX2+FMA: 8 floats per vector. Elementwise tails are
// masked loads/stores (never past the row); reduction tails run in scalar double.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "common/alignment.h"
#include "kernels/rows/bn_affine.h"

namespace convforge {
namespace {

struct RowsAvx2 {
  static __m256i tail(int64_t left) {
    alignas(64) static const int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - (left >= 8 ? 8 : left)));
  }
  static __m256d lo(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
  static __m256d hi(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
  static double hsum(__m256d v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }

  static double sum(const float* x, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
      a0 = _mm256_add_pd(a0, lo(v0));
      a1 = _mm256_add_pd(a1, hi(v0));
      a2 = _mm256_add_pd(a2, lo(v1));
      a3 = _mm256_add_pd(a3, hi(v1));
    }
    double s = hsum(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < n; ++i) s += static_cast<double>(x[i]);
    return s;
  }

  // sum((x - shift)^2) for a shift near the row's mean (RowMoments, bn_affine.h): float lanes,
  // folded into double every kMomentChunk values so that no lane adds more than 16 of them
  // (relative error ~1e-6 at worst, against float32 data's own 6e-8 per value). The double
  // form it replaced (before 2026-12-04) cost 7 vector operations per 8 values in a second
  // pass over the channel from L2; this costs 2, from L1 (the row's sum was just taken).
  static constexpr int64_t kMomentChunk = 512;
  static double sq_dev(const float* x, int64_t n, float shift) {
    const __m256 vs = _mm256_set1_ps(shift);
    __m256d acc = _mm256_setzero_pd();
    int64_t i = 0;
    while (i + 32 <= n) {
      __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps(), q2 = _mm256_setzero_ps(), q3 = _mm256_setzero_ps();
      const int64_t end = i + kMomentChunk < n ? i + kMomentChunk : n;
      for (; i + 32 <= end; i += 32) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vs), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vs);
        const __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 16), vs);
        const __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 24), vs);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
        q1 = _mm256_fmadd_ps(d1, d1, q1);
        q2 = _mm256_fmadd_ps(d2, d2, q2);
        q3 = _mm256_fmadd_ps(d3, d3, q3);
      }
      const __m256 q01 = _mm256_add_ps(q0, q1), q23 = _mm256_add_ps(q2, q3);
      acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_add_pd(lo(q01), hi(q01)), _mm256_add_pd(lo(q23), hi(q23))));
    }
    double q = hsum(acc);
    for (; i < n; ++i) {
      const double d = static_cast<double>(x[i] - shift);
      q += d * d;
    }
    return q;
  }

  // Lane-wise forms of sum and sq_dev for short rows (BnForwardBlock::short_row_moments): s[l] (q[l])
  // += the values (squared deviations from shift) at positions i = l (mod 8), kSumLanes doubles,
  // summed by the caller once per channel instead of once per row. The squares in float lanes,
  // folded into the doubles every kLaneChunk values: no lane adds more than 16 of them, sq_dev's
  // bound; tails in scalar double.
  static constexpr int64_t kLaneChunk = 128;
  static void sum_lanes(const float* x, int64_t n, double* s) {
    __m256d a0 = _mm256_loadu_pd(s), a1 = _mm256_loadu_pd(s + 4);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      a0 = _mm256_add_pd(a0, lo(v));
      a1 = _mm256_add_pd(a1, hi(v));
    }
    _mm256_storeu_pd(s, a0), _mm256_storeu_pd(s + 4, a1);
    for (int l = 0; i < n; ++i, ++l) s[l] += static_cast<double>(x[i]);
  }
  static void sq_dev_lanes(const float* x, int64_t n, float shift, double* q) {
    const __m256 vs = _mm256_set1_ps(shift);
    __m256d a0 = _mm256_loadu_pd(q), a1 = _mm256_loadu_pd(q + 4);
    int64_t i = 0;
    while (i + 8 <= n) {
      const int64_t end = i + kLaneChunk < n ? i + kLaneChunk : n;
      __m256 f = _mm256_setzero_ps();
      for (; i + 8 <= end; i += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vs);
        f = _mm256_fmadd_ps(d, d, f);
      }
      a0 = _mm256_add_pd(a0, lo(f));
      a1 = _mm256_add_pd(a1, hi(f));
    }
    _mm256_storeu_pd(q, a0), _mm256_storeu_pd(q + 4, a1);
    for (int l = 0; i < n; ++i, ++l) {
      const double d = static_cast<double>(x[i] - shift);
      q[l] += d * d;
    }
  }

  // Lane-wise: s_dy[l] += the dy values at positions i = l (mod 8), s_dy_dev[l] likewise
  // (kSumLanes doubles each); the caller sums the lanes once per channel, not once per row.
  static constexpr int kSumLanes = 8;
  static constexpr bool kRuns = false;  // no run primitives (rows_avx512.h has them)
  // z = (x - mean) * scale + shift as scale_shift computes it, and the mask z > 0.
  static __m256 pre(__m256 x, __m256 vm, __m256 va, __m256 vb) { return _mm256_fmadd_ps(_mm256_sub_ps(x, vm), va, vb); }
  static __m256 mask(const BnAffine<float>* r, __m256 x) {
    const __m256 z = pre(x, _mm256_set1_ps(r->mean), _mm256_set1_ps(r->scale), _mm256_set1_ps(r->shift));
    return _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ);
  }
  // kRelu: dy counts only where the fused ReLU's input z(x) > 0 (relu, bn_affine.h).
  template <bool kRelu>
  static void sum_dy_dy_dev(const float* dy, const BnAffine<float>* relu, const float* x, int64_t n, double mean,
                            double* s_dy, double* s_dy_dev) {
    const __m256d m = _mm256_set1_pd(mean);
    __m256d g0 = _mm256_loadu_pd(s_dy), g1 = _mm256_loadu_pd(s_dy + 4);
    __m256d p0 = _mm256_loadu_pd(s_dy_dev), p1 = _mm256_loadu_pd(s_dy_dev + 4);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      __m256 g = _mm256_loadu_ps(dy + i);
      const __m256 v = _mm256_loadu_ps(x + i);
      if constexpr (kRelu) g = _mm256_and_ps(g, mask(relu, v));
      const __m256d glo = lo(g), ghi = hi(g);
      g0 = _mm256_add_pd(g0, glo);
      g1 = _mm256_add_pd(g1, ghi);
      p0 = _mm256_fmadd_pd(glo, _mm256_sub_pd(lo(v), m), p0);
      p1 = _mm256_fmadd_pd(ghi, _mm256_sub_pd(hi(v), m), p1);
    }
    _mm256_storeu_pd(s_dy, g0), _mm256_storeu_pd(s_dy + 4, g1);
    _mm256_storeu_pd(s_dy_dev, p0), _mm256_storeu_pd(s_dy_dev + 4, p1);
    for (int l = 0; i < n; ++i, ++l) {
      const double g = !kRelu || scalar_passes(relu, x[i]) ? static_cast<double>(dy[i]) : 0.0;
      s_dy[l] += g;
      s_dy_dev[l] += g * (static_cast<double>(x[i]) - mean);
    }
  }

  // The scalar tails' mask: z through the same fused multiply-add as the vector lanes.
  static bool scalar_passes(const BnAffine<float>* r, float x) {
    const __m128 z = _mm_fmadd_ss(_mm_sub_ss(_mm_set_ss(x), _mm_set_ss(r->mean)), _mm_set_ss(r->scale),
                                  _mm_set_ss(r->shift));
    return _mm_cvtss_f32(z) > 0.0f;
  }
  template <bool kRelu>
  static __m256 post(__m256 v) {
    if constexpr (kRelu) return _mm256_and_ps(v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLE_UQ));
    return v;
  }
  // kStream: whole vectors past the caches (stream_ps, after a masked head up to y's next
  // 32-byte boundary); the caller ends its work item with fence().
  template <bool kStream>
  static void put(float* y, __m256 v) {
    if constexpr (kStream) _mm256_stream_ps(y, v);
    else _mm256_storeu_ps(y, v);
  }
  static void fence() { _mm_sfence(); }  // streaming stores are weakly ordered: publish them

  // y = (x - mean) * a + b; kRelu: max(y, 0) as relu_value (keep y unless y <= 0: NaN kept, -0 -> +0).
  template <bool kRelu, bool kStream = false>
  static void scale_shift(const float* x, int64_t n, float mean, float a, float b, float* y) {
    const __m256 vm = _mm256_set1_ps(mean), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    const auto masked = [&](int64_t i, int64_t count) {
      const __m256i k = tail(count);
      _mm256_maskstore_ps(y + i, k, post<kRelu>(pre(_mm256_maskload_ps(x + i, k), vm, va, vb)));
    };
    int64_t i = 0;
    if constexpr (kStream) {
      if (!float_aligned(y)) return scale_shift<kRelu, false>(x, n, mean, a, b, y);
      if ((i = aligned_start<32>(y, 0, n)) > 0) masked(0, i);
    }
    for (; i + 16 <= n; i += 16) {
      const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
      put<kStream>(y + i, post<kRelu>(pre(v0, vm, va, vb)));
      put<kStream>(y + i + 8, post<kRelu>(pre(v1, vm, va, vb)));
    }
    for (; i < n; i += 8) masked(i, n - i);
  }

  // kRelu: as sum_dy_dy_dev.
  template <bool kRelu, bool kStream = false>
  static void bn_backward(const float* dy, const BnAffine<float>* relu, const float* x, int64_t n, float c1, float c2,
                          float mean, float c3, float* dx) {
    const __m256 v1 = _mm256_set1_ps(c1), v2 = _mm256_set1_ps(c2), vm = _mm256_set1_ps(mean), v3 = _mm256_set1_ps(c3);
    const auto value = [&](int64_t i, __m256i k) {
      const __m256 xv = _mm256_maskload_ps(x + i, k);
      const __m256 r = _mm256_fmadd_ps(v2, _mm256_sub_ps(xv, vm), v3);
      __m256 g = _mm256_maskload_ps(dy + i, k);
      if constexpr (kRelu) g = _mm256_and_ps(g, mask(relu, xv));
      return _mm256_fmadd_ps(v1, g, r);
    };
    int64_t i = 0;
    if constexpr (kStream) {
      if (!float_aligned(dx)) return bn_backward<kRelu, false>(dy, relu, x, n, c1, c2, mean, c3, dx);
      if ((i = aligned_start<32>(dx, 0, n)) > 0) _mm256_maskstore_ps(dx, tail(i), value(0, tail(i)));
      const __m256i all = tail(8);
      for (; i + 8 <= n; i += 8) put<kStream>(dx + i, value(i, all));
    }
    for (; i < n; i += 8) {
      const __m256i k = tail(n - i);
      _mm256_maskstore_ps(dx + i, k, value(i, k));
    }
  }

  static void fill(float* y, int64_t n, float value) {
    const __m256 v = _mm256_set1_ps(value);
    for (int64_t i = 0; i < n; i += 8) _mm256_maskstore_ps(y + i, tail(n - i), v);
  }

  static void axpy(float* y, const float* x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
      const __m256i k = tail(n - i);
      _mm256_maskstore_ps(y + i, k, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, k), _mm256_maskload_ps(y + i, k)));
    }
  }

  static double dot(const float* x, const float* y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i < n; i += 8) {
      const __m256i k = tail(n - i);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, k), _mm256_maskload_ps(y + i, k), a0);
    }
    const __m256 s8 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return static_cast<double>(_mm_cvtss_f32(s));
  }
};

}  // namespace
}  // namespace convforge
