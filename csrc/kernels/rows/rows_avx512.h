// Row primitives (see rows_ref.h) with AVX-512F: 16 floats per vector, masked tails that never
// touch memory past the row. Sums widen each vector to two vectors of doubles and accumulate
// there, in a fixed lane order.
#pragma once

#include "common/avx512.h"

#include <cmath>
#include <cstdint>

#include "common/alignment.h"
#include "kernels/rows/bn_affine.h"

namespace convforge {
namespace {

struct RowsAvx512 {
  static __mmask16 tail(int64_t left) {
    return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
  }
  static __m512d lo(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
  static __m512d hi(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }

  static double sum(const float* x, int64_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
      a0 = _mm512_add_pd(a0, lo(v0));
      a1 = _mm512_add_pd(a1, hi(v0));
      a2 = _mm512_add_pd(a2, lo(v1));
      a3 = _mm512_add_pd(a3, hi(v1));
    }
    for (; i < n; i += 16) {  // masked lanes load as 0
      const __m512 v = _mm512_maskz_loadu_ps(tail(n - i), x + i);
      a0 = _mm512_add_pd(a0, lo(v));
      a1 = _mm512_add_pd(a1, hi(v));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
  }

  // sum((x - shift)^2) for a shift near the row's mean (RowMoments, bn_affine.h): float lanes,
  // folded into double every kMomentChunk values so that no lane adds more than 8 of them
  // (relative error ~5e-7 at worst, against float32 data's own 6e-8 per value). The double
  // form it replaced (before 2026-12-04) cost 7 vector operations per 16 values in a second
  // pass over the channel from L2; this costs 2, from L1 (the row's sum was just taken).
  static constexpr int64_t kMomentChunk = 512;
  static double sq_dev(const float* x, int64_t n, float shift) {
    const __m512 vs = _mm512_set1_ps(shift);
    __m512d acc = _mm512_setzero_pd();
    for (int64_t i = 0; i < n;) {
      __m512 q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps(), q2 = _mm512_setzero_ps(), q3 = _mm512_setzero_ps();
      const int64_t end = i + kMomentChunk < n ? i + kMomentChunk : n;
      for (; i + 64 <= end; i += 64) {
        const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vs);
        const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vs);
        const __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vs);
        const __m512 d3 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vs);
        q0 = _mm512_fmadd_ps(d0, d0, q0);
        q1 = _mm512_fmadd_ps(d1, d1, q1);
        q2 = _mm512_fmadd_ps(d2, d2, q2);
        q3 = _mm512_fmadd_ps(d3, d3, q3);
      }
      for (; i < end; i += 16) {  // lanes past the row: 0, not shift^2
        const __mmask16 k = tail(end - i);
        const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), vs);
        q0 = _mm512_fmadd_ps(d, d, q0);
      }
      const __m512 q01 = _mm512_add_ps(q0, q1), q23 = _mm512_add_ps(q2, q3);
      acc = _mm512_add_pd(acc, _mm512_add_pd(_mm512_add_pd(lo(q01), hi(q01)), _mm512_add_pd(lo(q23), hi(q23))));
    }
    return _mm512_reduce_add_pd(acc);
  }

  // Lane-wise forms of sum and sq_dev for short rows (BnForwardBlock::short_row_moments): s[l] (q[l])
  // += the values (squared deviations from shift) at positions i = l (mod 16), kSumLanes doubles,
  // summed by the caller once per channel instead of once per row. The squares in float lanes,
  // folded into the doubles every kLaneChunk values: no lane adds more than 8 of them, sq_dev's
  // bound (sum_dy_dy_dev's too).
  static constexpr int64_t kLaneChunk = 128;
  static void sum_lanes(const float* x, int64_t n, double* s) {
    __m512d a0 = _mm512_loadu_pd(s), a1 = _mm512_loadu_pd(s + 8);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      a0 = _mm512_add_pd(a0, lo(v));
      a1 = _mm512_add_pd(a1, hi(v));
    }
    if (i < n) {  // masked lanes load as 0
      const __m512 v = _mm512_maskz_loadu_ps(tail(n - i), x + i);
      a0 = _mm512_add_pd(a0, lo(v));
      a1 = _mm512_add_pd(a1, hi(v));
    }
    _mm512_storeu_pd(s, a0), _mm512_storeu_pd(s + 8, a1);
  }
  static void sq_dev_lanes(const float* x, int64_t n, float shift, double* q) {
    const __m512 vs = _mm512_set1_ps(shift);
    __m512d a0 = _mm512_loadu_pd(q), a1 = _mm512_loadu_pd(q + 8);
    for (int64_t i = 0; i < n;) {
      const int64_t end = i + kLaneChunk < n ? i + kLaneChunk : n;
      __m512 f = _mm512_setzero_ps();
      for (; i + 16 <= end; i += 16) {
        const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vs);
        f = _mm512_fmadd_ps(d, d, f);
      }
      if (i < end) {  // lanes past the row: 0, not shift^2
        const __mmask16 k = tail(end - i);
        const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), vs);
        f = _mm512_fmadd_ps(d, d, f);
        i = end;
      }
      a0 = _mm512_add_pd(a0, lo(f));
      a1 = _mm512_add_pd(a1, hi(f));
    }
    _mm512_storeu_pd(q, a0), _mm512_storeu_pd(q + 8, a1);
  }

  // Runs of short rows (BnForwardBlock): a block's rows of one image are one contiguous run
  // (NCHW), taken whole instead of row by row, with a value per position of the run where a row
  // would have a scalar (its channel's shift, mean, scale). A 7x7 map's rows are 49 values: per
  // row, a call, three full vectors and a masked one, and the accumulators' loads and stores; in
  // runs of 8 rows, 25 vectors and nothing per row. Position arrays (d, shift, m, a, b) hold
  // whole vectors: at least n rounded up to 16 values.
  // d[i] += sum over runs j < runs of x[j * stride + i], i < n: a chunk of at most kRunChunk
  // runs (images), summed position by position in float lanes in run order, then widened into
  // the doubles, so that no position adds more than 8 values in float (sq_dev's bound). The
  // runs go inner: a sum across runs kept in a position array through memory, a vector stored
  // by one run and loaded by the next, ran at half the speed of the rows it replaced.
  static constexpr int64_t kRunChunk = 8;
  static void run_sums(const float* x, int64_t stride, int64_t runs, int64_t n, double* d) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail(n - i);
      __m512 f = _mm512_maskz_loadu_ps(k, x + i);
      for (int64_t j = 1; j < runs; ++j) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(k, x + j * stride + i));
      _mm512_storeu_pd(d + i, _mm512_add_pd(_mm512_loadu_pd(d + i), lo(f)));
      _mm512_storeu_pd(d + i + 8, _mm512_add_pd(_mm512_loadu_pd(d + i + 8), hi(f)));
    }
  }
  // d[i] += sum over runs j of (x[j * stride + i] - shift[i])^2, as run_sums (0 past n, not shift^2).
  static void run_sq_devs(const float* x, int64_t stride, int64_t runs, int64_t n, const float* shift, double* d) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail(n - i);
      const __m512 vs = _mm512_loadu_ps(shift + i);
      __m512 f = _mm512_setzero_ps();
      for (int64_t j = 0; j < runs; ++j) {
        const __m512 v = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + j * stride + i), vs);
        f = _mm512_fmadd_ps(v, v, f);
      }
      _mm512_storeu_pd(d + i, _mm512_add_pd(_mm512_loadu_pd(d + i), lo(f)));
      _mm512_storeu_pd(d + i + 8, _mm512_add_pd(_mm512_loadu_pd(d + i + 8), hi(f)));
    }
  }
  // y[i] = (x[i] - m[i]) * a[i] + b[i], i < n, as scale_shift computes each value (kRelu: as there)
  template <bool kRelu>
  static void run_scale_shift(const float* x, int64_t n, const float* m, const float* a, const float* b, float* y) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, post<kRelu>(pre(_mm512_loadu_ps(x + i), _mm512_loadu_ps(m + i), _mm512_loadu_ps(a + i),
                                             _mm512_loadu_ps(b + i))));
    if (i < n) {
      const __mmask16 k = tail(n - i);
      _mm512_mask_storeu_ps(y + i, k, post<kRelu>(pre(_mm512_maskz_loadu_ps(k, x + i), _mm512_loadu_ps(m + i),
                                                      _mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i))));
    }
  }

  // The backward's sums over runs (batchnorm_bwd_image_runs), as run_sums: for runs j < runs,
  // s_dy[i] += g and s_dev[i] += g * (x - m[i]), g = dy[j * stride + i] (kRelu: 0 where the fused
  // ReLU's input pre(x, zm[i], za[i], zb[i]) is not > 0), as sum_dy_dy_dev takes each value.
  template <bool kRelu>
  static void run_dy_sums(const float* dy, const float* x, int64_t stride, int64_t runs, int64_t n, const float* m,
                          const float* zm, const float* za, const float* zb, double* s_dy, double* s_dev) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail(n - i);
      const __m512 vm = _mm512_loadu_ps(m + i);
      __m512 gf = _mm512_setzero_ps(), pf = _mm512_setzero_ps();
      for (int64_t j = 0; j < runs; ++j) {
        const __m512 v = _mm512_maskz_loadu_ps(k, x + j * stride + i);
        __mmask16 kg = k;
        if constexpr (kRelu)
          kg = _mm512_mask_cmp_ps_mask(
              k, pre(v, _mm512_loadu_ps(zm + i), _mm512_loadu_ps(za + i), _mm512_loadu_ps(zb + i)), _mm512_setzero_ps(),
              _CMP_GT_OQ);
        const __m512 g = _mm512_maskz_loadu_ps(kg, dy + j * stride + i);
        gf = _mm512_add_ps(gf, g);
        pf = _mm512_fmadd_ps(g, _mm512_sub_ps(v, vm), pf);
      }
      _mm512_storeu_pd(s_dy + i, _mm512_add_pd(_mm512_loadu_pd(s_dy + i), lo(gf)));
      _mm512_storeu_pd(s_dy + i + 8, _mm512_add_pd(_mm512_loadu_pd(s_dy + i + 8), hi(gf)));
      _mm512_storeu_pd(s_dev + i, _mm512_add_pd(_mm512_loadu_pd(s_dev + i), lo(pf)));
      _mm512_storeu_pd(s_dev + i + 8, _mm512_add_pd(_mm512_loadu_pd(s_dev + i + 8), hi(pf)));
    }
  }
  // dx[i] = c1[i] * g + (c2[i] * (x[i] - m[i]) + c3[i]), i < n, g as run_dy_sums: bn_backward's
  // expression with per-position constants.
  template <bool kRelu>
  static void run_bn_backward(const float* dy, const float* x, int64_t n, const float* m, const float* c1,
                              const float* c2, const float* c3, const float* zm, const float* za, const float* zb,
                              float* dx) {
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 k = tail(n - i);
      const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
      const __m512 r = _mm512_fmadd_ps(_mm512_loadu_ps(c2 + i), _mm512_sub_ps(xv, _mm512_loadu_ps(m + i)),
                                       _mm512_loadu_ps(c3 + i));
      __mmask16 kg = k;
      if constexpr (kRelu)
        kg = _mm512_mask_cmp_ps_mask(
            k, pre(xv, _mm512_loadu_ps(zm + i), _mm512_loadu_ps(za + i), _mm512_loadu_ps(zb + i)), _mm512_setzero_ps(),
            _CMP_GT_OQ);
      _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(_mm512_loadu_ps(c1 + i), _mm512_maskz_loadu_ps(kg, dy + i), r));
    }
  }

  // The first maximum of x[0..n) and its index, as global max pooling's scan defines it (a NaN
  // if there is one, the first; otherwise the first element equal to the largest, -0 and +0
  // equal): the largest by vector maxima, then its first position by comparisons. A row with a
  // NaN (not the common case) goes through the scan itself. n >= 1.
  static float first_max(const float* x, int64_t n, int64_t* arg) {
    const __m512 lowest = _mm512_set1_ps(-__builtin_inff());
    __m512 m = lowest;
    __mmask16 nan = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __m512 v = _mm512_mask_loadu_ps(lowest, tail(n - i), x + i);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      m = _mm512_max_ps(m, v);
    }
    if (nan) {
      int64_t i = 0;
      while (x[i] == x[i]) ++i;  // the first NaN: the scan keeps it (x[0] included)
      *arg = i;
      return x[i];
    }
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(m));
    for (int64_t i = 0; i < n; i += 16) {  // bounded: some element equals top (it is one of them)
      const __mmask16 k = _mm512_mask_cmp_ps_mask(tail(n - i), _mm512_maskz_loadu_ps(tail(n - i), x + i), top, _CMP_EQ_OQ);
      if (k) {
        *arg = i + __builtin_ctz(static_cast<unsigned>(k));
        return x[*arg];
      }
    }
    *arg = 0;  // not reached
    return x[0];
  }
  // even[q] = x[2 q], odd[q] = x[2 q + 1] for the n values of x: a row split into its two stride
  // phases (depthwise_impl.h's StridePhases at stride 2).
  static void deinterleave2(const float* x, int64_t n, float* even, float* odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
      _mm512_storeu_ps(even + i / 2, _mm512_permutex2var_ps(a, ie, b));
      _mm512_storeu_ps(odd + i / 2, _mm512_permutex2var_ps(a, io, b));
    }
    if (i < n) {  // the last 1-31 values, masked (one by one, a 56-value row's 24 cost its forward 13%)
      const int64_t left = n - i;
      const __m512 a = _mm512_maskz_loadu_ps(tail(left), x + i);
      const __m512 b = _mm512_maskz_loadu_ps(left > 16 ? tail(left - 16) : 0, x + i + 16);
      _mm512_mask_storeu_ps(even + i / 2, tail((left + 1) / 2), _mm512_permutex2var_ps(a, ie, b));
      _mm512_mask_storeu_ps(odd + i / 2, tail(left / 2), _mm512_permutex2var_ps(a, io, b));
    }
  }
  // Depthwise convolution rows (depthwise_impl.h). Tap t of a row is a run of input values with
  // a weight w[t]; its columns are [lo[q], hi[q]) for q = t mod kws (the taps of a kernel row go
  // kw by kw), outside which it adds nothing (masked lanes are neither loaded nor changed,
  // whatever the weight); run + j may point before or past its row in masked lanes. A null run
  // is a tap outside the image, skipped.
  static __mmask16 range_mask(int64_t a, int64_t b) {  // lanes l with a <= l < b, of 16
    a = a < 0 ? 0 : a, b = b > 16 ? 16 : b;
    if (a >= b) return 0;
    return static_cast<__mmask16>(((1u << b) - 1u) & ~((1u << a) - 1u));
  }
  // R rows at once (independent chains of fused multiply-adds): y[r][j] = init + the sum over
  // taps t in order of w[t] * run[r * taps + t][j], j < n.
  template <int R>
  static void taps_rows(const float* const* run, int taps, int kws, const float* w, const int64_t* lo,
                        const int64_t* hi, int64_t n, float init, float* const* y) {
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
      __m512 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm512_set1_ps(init);
      for (int t = 0, q = 0; t < taps; ++t, q = q + 1 == kws ? 0 : q + 1) {
        const __mmask16 k = range_mask(lo[q] - j0, hi[q] - j0);
        const __m512 wv = _mm512_set1_ps(w[t]);
        for (int r = 0; r < R; ++r)
          if (const float* x = run[r * taps + t]) acc[r] = _mm512_mask3_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, x + j0), acc[r], k);
      }
      for (int r = 0; r < R; ++r) {
        if (j0 + 16 <= n) _mm512_storeu_ps(y[r] + j0, acc[r]);
        else _mm512_mask_storeu_ps(y[r] + j0, tail(n - j0), acc[r]);
      }
    }
  }
  // lanes[t * ld + j] = sum over rows r < rows of dy[r][j] * run[r * taps + t][j] over tap t's
  // columns (0 elsewhere), j < n, rows in order: the weight gradient's products of a few rows per
  // tap and column. A 3x3 kernel's 9 sums stay in registers across the rows.
  template <int KT>
  static void taps_products_block(const float* const* dy, const float* const* run, int rows, int taps, int kws,
                                  const int64_t* lo, const int64_t* hi, int64_t j0, int64_t n, float* lanes, int64_t ld) {
    const __mmask16 kn = tail(n - j0);
    if constexpr (KT > 0) {  // rows outer, the KT sums side by side: independent chains
      __m512 acc[KT];
      __mmask16 k[KT];
      for (int t = 0, q = 0; t < KT; ++t, q = q + 1 == kws ? 0 : q + 1)
        acc[t] = _mm512_setzero_ps(), k[t] = range_mask(lo[q] - j0, hi[q] - j0);
      for (int r = 0; r < rows; ++r) {
        const __m512 g = _mm512_maskz_loadu_ps(kn, dy[r] + j0);
        const float* const* x = run + r * taps;
        for (int t = 0; t < KT; ++t)
          if (x[t]) acc[t] = _mm512_mask3_fmadd_ps(g, _mm512_maskz_loadu_ps(k[t], x[t] + j0), acc[t], k[t]);
      }
      for (int t = 0; t < KT; ++t) _mm512_storeu_ps(lanes + t * ld + j0, acc[t]);
    } else {
      for (int t = 0, q = 0; t < taps; ++t, q = q + 1 == kws ? 0 : q + 1) {
        const __mmask16 k = range_mask(lo[q] - j0, hi[q] - j0);
        __m512 a = _mm512_setzero_ps();
        for (int r = 0; r < rows; ++r)
          if (const float* x = run[r * taps + t])
            a = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(kn, dy[r] + j0), _mm512_maskz_loadu_ps(k, x + j0), a, k);
        _mm512_storeu_ps(lanes + t * ld + j0, a);
      }
    }
  }
  static void taps_products(const float* const* dy, const float* const* run, int rows, int taps, int kws,
                            const int64_t* lo, const int64_t* hi, int64_t n, float* lanes, int64_t ld) {
    for (int64_t j0 = 0; j0 < n; j0 += 16) {  // ld: whole vectors
      if (taps == 9) taps_products_block<9>(dy, run, rows, taps, kws, lo, hi, j0, n, lanes, ld);
      else taps_products_block<0>(dy, run, rows, taps, kws, lo, hi, j0, n, lanes, ld);
    }
  }

  // Lane-wise: s_dy[l] += the dy values at positions i = l (mod 16), s_dy_dev[l] likewise
  // (kSumLanes doubles each); the caller sums the lanes once per channel, not once per row.
  // Within kLaneChunk values in float lanes (x - mean exact where x is near the mean, each
  // product rounded once, at most 8 terms a lane), then folded into the doubles: 2 vector
  // operations per 16 values where widening each to double took 8 (128 x 32 x 14 x 14, one
  // thread: 348 -> 285 us).
  static constexpr int kSumLanes = 16;
  // z = (x - mean) * scale + shift as scale_shift computes it, and the lanes where z > 0.
  static __m512 pre(__m512 x, __m512 vm, __m512 va, __m512 vb) { return _mm512_fmadd_ps(_mm512_sub_ps(x, vm), va, vb); }
  // One value's mask, as mask() takes it (the backward's exact fallback, batchnorm_impl.h).
  static bool passes(const BnAffine<float>* r, float x) { return std::fma(x - r->mean, r->scale, r->shift) > 0.0f; }
  static __mmask16 mask(__mmask16 k, const BnAffine<float>* r, __m512 x) {
    const __m512 z = pre(x, _mm512_set1_ps(r->mean), _mm512_set1_ps(r->scale), _mm512_set1_ps(r->shift));
    return _mm512_mask_cmp_ps_mask(k, z, _mm512_setzero_ps(), _CMP_GT_OQ);
  }
  // kRelu: dy counts only where the fused ReLU's input z(x) > 0 (relu, bn_affine.h).
  template <bool kRelu>
  static void sum_dy_dy_dev(const float* dy, const BnAffine<float>* relu, const float* x, int64_t n, double mean,
                            double* s_dy, double* s_dy_dev) {
    const __m512 m = _mm512_set1_ps(static_cast<float>(mean));  // the channel's mean, a float widened
    __m512d g0 = _mm512_loadu_pd(s_dy), g1 = _mm512_loadu_pd(s_dy + 8);
    __m512d p0 = _mm512_loadu_pd(s_dy_dev), p1 = _mm512_loadu_pd(s_dy_dev + 8);
    for (int64_t i = 0; i < n;) {
      const int64_t end = i + kLaneChunk < n ? i + kLaneChunk : n;
      __m512 gf = _mm512_setzero_ps(), pf = _mm512_setzero_ps();
      for (; i < end; i += 16) {  // masked lanes: dy = 0, so both sums add 0
        __mmask16 k = tail(end - i);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        if constexpr (kRelu) k = mask(k, relu, v);
        const __m512 g = _mm512_maskz_loadu_ps(k, dy + i);
        gf = _mm512_add_ps(gf, g);
        pf = _mm512_fmadd_ps(g, _mm512_sub_ps(v, m), pf);
      }
      g0 = _mm512_add_pd(g0, lo(gf));
      g1 = _mm512_add_pd(g1, hi(gf));
      p0 = _mm512_add_pd(p0, lo(pf));
      p1 = _mm512_add_pd(p1, hi(pf));
    }
    _mm512_storeu_pd(s_dy, g0), _mm512_storeu_pd(s_dy + 8, g1);
    _mm512_storeu_pd(s_dy_dev, p0), _mm512_storeu_pd(s_dy_dev + 8, p1);
  }

  template <bool kRelu>
  static __m512 post(__m512 v) {
    if constexpr (kRelu) return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
    return v;
  }
  // kStream: whole vectors past the caches (stream_ps, after a masked head up to y's next
  // 64-byte line); the caller ends its work item with fence().
  template <bool kStream>
  static void put(float* y, __m512 v) {
    if constexpr (kStream) _mm512_stream_ps(y, v);
    else _mm512_storeu_ps(y, v);
  }
  static void fence() { _mm_sfence(); }  // streaming stores are weakly ordered: publish them

  // y = (x - mean) * a + b; kRelu: max(y, 0) as relu_value (keep y unless y <= 0: NaN kept, -0 -> +0).
  template <bool kRelu, bool kStream = false>
  static void scale_shift(const float* x, int64_t n, float mean, float a, float b, float* y) {
    const __m512 vm = _mm512_set1_ps(mean), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    const auto masked = [&](int64_t i, int64_t count) {
      const __mmask16 k = tail(count);
      _mm512_mask_storeu_ps(y + i, k, post<kRelu>(pre(_mm512_maskz_loadu_ps(k, x + i), vm, va, vb)));
    };
    int64_t i = 0;
    if constexpr (kStream) {
      if (!float_aligned(y)) return scale_shift<kRelu, false>(x, n, mean, a, b, y);
      if ((i = aligned_start<64>(y, 0, n)) > 0) masked(0, i);
    }
    for (; i + 32 <= n; i += 32) {
      const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
      put<kStream>(y + i, post<kRelu>(pre(v0, vm, va, vb)));
      put<kStream>(y + i + 16, post<kRelu>(pre(v1, vm, va, vb)));
    }
    for (; i < n; i += 16) masked(i, n - i);
  }

  // kRelu: as sum_dy_dy_dev; kStream: as scale_shift.
  template <bool kRelu, bool kStream = false>
  static void bn_backward(const float* dy, const BnAffine<float>* relu, const float* x, int64_t n, float c1, float c2,
                          float mean, float c3, float* dx) {
    const __m512 v1 = _mm512_set1_ps(c1), v2 = _mm512_set1_ps(c2), vm = _mm512_set1_ps(mean), v3 = _mm512_set1_ps(c3);
    const auto masked = [&](int64_t i, int64_t count) {
      const __mmask16 k = tail(count);
      const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
      const __m512 r = _mm512_fmadd_ps(v2, _mm512_sub_ps(xv, vm), v3);
      __mmask16 kg = k;
      if constexpr (kRelu) kg = mask(k, relu, xv);
      _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(kg, dy + i), r));
    };
    int64_t i = 0;
    if constexpr (kStream) {
      if (!float_aligned(dx)) return bn_backward<kRelu, false>(dy, relu, x, n, c1, c2, mean, c3, dx);
      if ((i = aligned_start<64>(dx, 0, n)) > 0) masked(0, i);
    }
    for (; i + 16 <= n; i += 16) {
      const __m512 xv = _mm512_loadu_ps(x + i);
      const __m512 r = _mm512_fmadd_ps(v2, _mm512_sub_ps(xv, vm), v3);
      __m512 g = _mm512_loadu_ps(dy + i);
      if constexpr (kRelu) g = _mm512_maskz_mov_ps(mask(0xFFFF, relu, xv), g);
      put<kStream>(dx + i, _mm512_fmadd_ps(v1, g, r));
    }
    if (i < n) masked(i, n - i);
  }

  static void fill(float* y, int64_t n, float value) {
    const __m512 v = _mm512_set1_ps(value);
    for (int64_t i = 0; i < n; i += 16) _mm512_mask_storeu_ps(y + i, tail(n - i), v);
  }

  static void axpy(float* y, const float* x, float a, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
      const __mmask16 k = tail(n - i);
      _mm512_mask_storeu_ps(y + i, k,
                            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i)));
    }
  }

  // Float lanes within the row (rows are image rows, tens to hundreds of values), then double.
  static double dot(const float* x, const float* y, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
    }
    for (; i < n; i += 16) {
      const __mmask16 k = tail(n - i);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i), a0);
    }
    return static_cast<double>(_mm512_reduce_add_ps(_mm512_add_ps(a0, a1)));
  }
};

}  // namespace
}  // namespace convforge
