// Row primitives (see rows_ref.h) with AVX2+FMA: 8 floats per vector. Elementwise tails are
// masked loads/stores (never past the row); the forward's row reductions end in scalar double.
#pragma once

#include <immintrin.h>

#include <cmath>
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

  // Runs of short rows (BnForwardBlock, batchnorm_bwd_image_runs): RowsAvx512's run primitives
  // in vectors of 8, the same sums in the same order per position (runs in float lanes, at most
  // kRunChunk of them, then widened into the doubles) and the same expressions for outputs, so
  // that the forward's outputs and the backward's recomputed ReLU mask agree bit for bit. Full
  // vectors load plainly; only a run's last vector is masked. Row by row, a BatchNormalization
  // over a Dense layer's (N, F) features here made a call and a scalar tail per value: 128 x 512
  // took 0.80 / 0.84 ms forward / backward on one thread, 20x RowsAvx512's runs and 3x the
  // portable rows' plain loops (2026-12-05).
  static constexpr int64_t kRunChunk = 8;
  static __m256 zeroed(__m256 v, __m256i k) { return _mm256_and_ps(v, _mm256_castsi256_ps(k)); }
  static void add_widened(double* d, __m256 f) {
    _mm256_storeu_pd(d, _mm256_add_pd(_mm256_loadu_pd(d), lo(f)));
    _mm256_storeu_pd(d + 4, _mm256_add_pd(_mm256_loadu_pd(d + 4), hi(f)));
  }
  // d[i] += sum over runs j < runs of x[j * stride + i], i < n (d holds whole vectors).
  static void run_sums(const float* x, int64_t stride, int64_t runs, int64_t n, double* d) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      __m256 f = _mm256_loadu_ps(x + i);
      for (int64_t j = 1; j < runs; ++j) f = _mm256_add_ps(f, _mm256_loadu_ps(x + j * stride + i));
      add_widened(d + i, f);
    }
    if (i < n) {  // masked lanes load as 0
      const __m256i k = tail(n - i);
      __m256 f = _mm256_maskload_ps(x + i, k);
      for (int64_t j = 1; j < runs; ++j) f = _mm256_add_ps(f, _mm256_maskload_ps(x + j * stride + i, k));
      add_widened(d + i, f);
    }
  }
  // d[i] += sum over runs j of (x[j * stride + i] - shift[i])^2, as run_sums (0 past n, not shift^2).
  static void run_sq_devs(const float* x, int64_t stride, int64_t runs, int64_t n, const float* shift, double* d) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 vs = _mm256_loadu_ps(shift + i);
      __m256 f = _mm256_setzero_ps();
      for (int64_t j = 0; j < runs; ++j) {
        const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + j * stride + i), vs);
        f = _mm256_fmadd_ps(v, v, f);
      }
      add_widened(d + i, f);
    }
    if (i < n) {
      const __m256i k = tail(n - i);
      const __m256 vs = _mm256_loadu_ps(shift + i);
      __m256 f = _mm256_setzero_ps();
      for (int64_t j = 0; j < runs; ++j) {
        const __m256 v = zeroed(_mm256_sub_ps(_mm256_maskload_ps(x + j * stride + i, k), vs), k);
        f = _mm256_fmadd_ps(v, v, f);
      }
      add_widened(d + i, f);
    }
  }
  // y[i] = (x[i] - m[i]) * a[i] + b[i], i < n, as scale_shift computes each value (kRelu: as there).
  template <bool kRelu>
  static void run_scale_shift(const float* x, int64_t n, const float* m, const float* a, const float* b, float* y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, post<kRelu>(pre(_mm256_loadu_ps(x + i), _mm256_loadu_ps(m + i), _mm256_loadu_ps(a + i),
                                             _mm256_loadu_ps(b + i))));
    if (i < n) {
      const __m256i k = tail(n - i);
      _mm256_maskstore_ps(y + i, k, post<kRelu>(pre(_mm256_maskload_ps(x + i, k), _mm256_loadu_ps(m + i),
                                                     _mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))));
    }
  }
  // The backward's sums over runs, as RowsAvx512::run_dy_sums: for runs j < runs, s_dy[i] += g
  // and s_dev[i] += g * (x - m[i]), g = dy[j * stride + i] (kRelu: 0 where the fused ReLU's input
  // pre(x, zm[i], za[i], zb[i]) is not > 0).
  template <bool kRelu>
  static void run_dy_sums(const float* dy, const float* x, int64_t stride, int64_t runs, int64_t n, const float* m,
                          const float* zm, const float* za, const float* zb, double* s_dy, double* s_dev) {
    const auto vector = [&](int64_t i, auto load) {
      const __m256 vm = _mm256_loadu_ps(m + i);
      __m256 vzm = vm, vza = vm, vzb = vm;
      if constexpr (kRelu) vzm = _mm256_loadu_ps(zm + i), vza = _mm256_loadu_ps(za + i), vzb = _mm256_loadu_ps(zb + i);
      __m256 gf = _mm256_setzero_ps(), pf = _mm256_setzero_ps();
      for (int64_t j = 0; j < runs; ++j) {
        const __m256 v = load(x + j * stride + i);
        __m256 g = load(dy + j * stride + i);
        if constexpr (kRelu) g = _mm256_and_ps(g, _mm256_cmp_ps(pre(v, vzm, vza, vzb), _mm256_setzero_ps(), _CMP_GT_OQ));
        gf = _mm256_add_ps(gf, g);
        pf = _mm256_fmadd_ps(g, _mm256_sub_ps(v, vm), pf);
      }
      add_widened(s_dy + i, gf);
      add_widened(s_dev + i, pf);
    };
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vector(i, [](const float* p) { return _mm256_loadu_ps(p); });
    if (i < n) {  // masked lanes load as 0: g = 0 there
      const __m256i k = tail(n - i);
      vector(i, [k](const float* p) { return _mm256_maskload_ps(p, k); });
    }
  }
  // dx[i] = c1[i] * g + (c2[i] * (x[i] - m[i]) + c3[i]), i < n, g as run_dy_sums: bn_backward's
  // expression with per-position constants.
  template <bool kRelu>
  static void run_bn_backward(const float* dy, const float* x, int64_t n, const float* m, const float* c1,
                              const float* c2, const float* c3, const float* zm, const float* za, const float* zb,
                              float* dx) {
    const auto value = [&](int64_t i, __m256 xv, __m256 g) {
      const __m256 r = _mm256_fmadd_ps(_mm256_loadu_ps(c2 + i), _mm256_sub_ps(xv, _mm256_loadu_ps(m + i)),
                                       _mm256_loadu_ps(c3 + i));
      if constexpr (kRelu)
        g = _mm256_and_ps(g, _mm256_cmp_ps(pre(xv, _mm256_loadu_ps(zm + i), _mm256_loadu_ps(za + i),
                                                   _mm256_loadu_ps(zb + i)),
                                               _mm256_setzero_ps(), _CMP_GT_OQ));
      return _mm256_fmadd_ps(_mm256_loadu_ps(c1 + i), g, r);
    };
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dx + i, value(i, _mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i)));
    if (i < n) {
      const __m256i k = tail(n - i);
      _mm256_maskstore_ps(dx + i, k, value(i, _mm256_maskload_ps(x + i, k), _mm256_maskload_ps(dy + i, k)));
    }
  }
  // z = (x - mean) * scale + shift as scale_shift computes it, and the mask z > 0.
  static __m256 pre(__m256 x, __m256 vm, __m256 va, __m256 vb) { return _mm256_fmadd_ps(_mm256_sub_ps(x, vm), va, vb); }
  // One value's mask, as mask() takes it (the backward's exact fallback, batchnorm_impl.h).
  static bool passes(const BnAffine<float>* r, float x) { return std::fma(x - r->mean, r->scale, r->shift) > 0.0f; }
  static __m256 mask(const BnAffine<float>* r, __m256 x) {
    const __m256 z = pre(x, _mm256_set1_ps(r->mean), _mm256_set1_ps(r->scale), _mm256_set1_ps(r->shift));
    return _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ);
  }
  // kRelu: dy counts only where the fused ReLU's input z(x) > 0 (relu, bn_affine.h).
  // Within kDyChunk values in float lanes (x - mean exact where x is near the mean, each product
  // rounded once, at most 8 terms a lane: RowsAvx512's bound), then folded into the doubles:
  // widening every value to double took 4 vector operations more per 8 values (128 x 32 x 14 x 14,
  // one thread, AMD EPYC under the AVX2 cap: 754 -> 700 us, the rest of that backward's time
  // being bn_backward's masked stores, below).
  static constexpr int64_t kDyChunk = 64;
  template <bool kRelu>
  static void sum_dy_dy_dev(const float* dy, const BnAffine<float>* relu, const float* x, int64_t n, double mean,
                            double* s_dy, double* s_dy_dev) {
    const __m256 m = _mm256_set1_ps(static_cast<float>(mean));  // the channel's mean, a float widened
    __m256d g0 = _mm256_loadu_pd(s_dy), g1 = _mm256_loadu_pd(s_dy + 4);
    __m256d p0 = _mm256_loadu_pd(s_dy_dev), p1 = _mm256_loadu_pd(s_dy_dev + 4);
    __m256 gf, pf;
    const auto add = [&](__m256 v, __m256 g) {
      if constexpr (kRelu) g = _mm256_and_ps(g, mask(relu, v));
      gf = _mm256_add_ps(gf, g);
      pf = _mm256_fmadd_ps(g, _mm256_sub_ps(v, m), pf);
    };
    for (int64_t i = 0; i < n;) {
      const int64_t end = i + kDyChunk < n ? i + kDyChunk : n;
      gf = _mm256_setzero_ps(), pf = _mm256_setzero_ps();
      for (; i + 8 <= end; i += 8) add(_mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i));
      if (i < end) {  // masked lanes load as 0: dy = 0 there, so both sums add 0
        const __m256i k = tail(end - i);
        add(_mm256_maskload_ps(x + i, k), _mm256_maskload_ps(dy + i, k));
        i = end;
      }
      g0 = _mm256_add_pd(g0, lo(gf));
      g1 = _mm256_add_pd(g1, hi(gf));
      p0 = _mm256_add_pd(p0, lo(pf));
      p1 = _mm256_add_pd(p1, hi(pf));
    }
    _mm256_storeu_pd(s_dy, g0), _mm256_storeu_pd(s_dy + 4, g1);
    _mm256_storeu_pd(s_dy_dev, p0), _mm256_storeu_pd(s_dy_dev + 4, p1);
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

  // kRelu: as sum_dy_dy_dev. Whole vectors load and store plainly: vmaskmovps stores are slow
  // on AMD cores (microcoded), and masked throughout, this loop took 36% of a 128 x 32 x 14 x 14
  // backward there.
  template <bool kRelu, bool kStream = false>
  static void bn_backward(const float* dy, const BnAffine<float>* relu, const float* x, int64_t n, float c1, float c2,
                          float mean, float c3, float* dx) {
    const __m256 v1 = _mm256_set1_ps(c1), v2 = _mm256_set1_ps(c2), vm = _mm256_set1_ps(mean), v3 = _mm256_set1_ps(c3);
    const auto value = [&](__m256 xv, __m256 g) {
      const __m256 r = _mm256_fmadd_ps(v2, _mm256_sub_ps(xv, vm), v3);
      if constexpr (kRelu) g = _mm256_and_ps(g, mask(relu, xv));
      return _mm256_fmadd_ps(v1, g, r);
    };
    const auto masked = [&](int64_t i, int64_t count) {
      const __m256i k = tail(count);
      _mm256_maskstore_ps(dx + i, k, value(_mm256_maskload_ps(x + i, k), _mm256_maskload_ps(dy + i, k)));
    };
    int64_t i = 0;
    if constexpr (kStream) {
      if (!float_aligned(dx)) return bn_backward<kRelu, false>(dy, relu, x, n, c1, c2, mean, c3, dx);
      if ((i = aligned_start<32>(dx, 0, n)) > 0) masked(0, i);
    }
    for (; i + 8 <= n; i += 8) put<kStream>(dx + i, value(_mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i)));
    if (i < n) masked(i, n - i);
  }

  // The first maximum of x[0..n) and its index, as RowsAvx512::first_max. n >= 1.
  static float first_max(const float* x, int64_t n, int64_t* arg) {
    const __m256 lowest = _mm256_set1_ps(-__builtin_inff());
    __m256 m = lowest, nan = _mm256_setzero_ps();
    const auto load = [&](int64_t i) {  // lanes past n: -inf
      if (i + 8 <= n) return _mm256_loadu_ps(x + i);
      const __m256i k = tail(n - i);
      return _mm256_blendv_ps(lowest, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
    };
    for (int64_t i = 0; i < n; i += 8) {
      const __m256 v = load(i);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      m = _mm256_max_ps(m, v);
    }
    if (_mm256_movemask_ps(nan)) {
      int64_t i = 0;
      while (x[i] == x[i]) ++i;  // the first NaN: the scan keeps it (x[0] included)
      *arg = i;
      return x[i];
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const __m256 top = _mm256_set1_ps(_mm_cvtss_f32(h));
    for (int64_t i = 0; i < n; i += 8) {  // bounded: some element equals top (it is one of them)
      const int k = _mm256_movemask_ps(_mm256_cmp_ps(load(i), top, _CMP_EQ_OQ));
      if (k) {
        *arg = i + __builtin_ctz(static_cast<unsigned>(k));
        return x[*arg];
      }
    }
    *arg = 0;  // not reached
    return x[0];
  }
  // even[q] = x[2 q], odd[q] = x[2 q + 1] for the n values of x (as RowsAvx512's).
  static void deinterleave2(const float* x, int64_t n, float* even, float* odd) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
      _mm256_storeu_ps(even + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8)));
      _mm256_storeu_ps(odd + i / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8)));
    }
    if (i < n) {  // the last 1-15 values: masked
      const int64_t left = n - i;
      const __m256 a = _mm256_maskload_ps(x + i, tail(left)), b = _mm256_maskload_ps(x + i + 8, tail(left > 8 ? left - 8 : 0));
      _mm256_maskstore_ps(even + i / 2, tail((left + 1) / 2),
                          _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8)));
      _mm256_maskstore_ps(odd + i / 2, tail(left / 2),
                          _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8)));
    }
  }
  // Depthwise convolution rows (depthwise_impl.h), as RowsAvx512's: a tap adds nothing outside
  // its columns (blended, not multiplied by a zero).
  static __m256i range_mask(int64_t a, int64_t b) {  // lanes l with a <= l < b, of 8
    const __m256i l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i ge = _mm256_cmpgt_epi32(l, _mm256_set1_epi32(static_cast<int>(a < -1 ? -1 : (a > 8 ? 8 : a)) - 1));
    const __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(b < 0 ? 0 : (b > 8 ? 8 : b))), l);
    return _mm256_and_si256(ge, lt);
  }
  template <int R>
  static void taps_rows(const float* const* run, int taps, int kws, const float* w, const int64_t* lo,
                        const int64_t* hi, int64_t n, float init, float* const* y) {
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
      __m256 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm256_set1_ps(init);
      for (int t = 0, q = 0; t < taps; ++t, q = q + 1 == kws ? 0 : q + 1) {
        const __m256i k = range_mask(lo[q] - j0, hi[q] - j0);
        const __m256 wv = _mm256_set1_ps(w[t]);
        for (int r = 0; r < R; ++r)
          if (const float* x = run[r * taps + t])
            acc[r] = _mm256_blendv_ps(acc[r], _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + j0, k), acc[r]),
                                      _mm256_castsi256_ps(k));
      }
      for (int r = 0; r < R; ++r) {
        if (j0 + 8 <= n) _mm256_storeu_ps(y[r] + j0, acc[r]);
        else _mm256_maskstore_ps(y[r] + j0, tail(n - j0), acc[r]);
      }
    }
  }
  template <int KT>
  static void taps_products_block(const float* const* dy, const float* const* run, int rows, int taps, int kws,
                                  const int64_t* lo, const int64_t* hi, int64_t j0, int64_t n, float* lanes, int64_t ld) {
    const __m256i kn = tail(n - j0);
    if constexpr (KT > 0) {  // rows outer, the KT sums side by side: independent chains
      __m256 acc[KT];
      __m256i k[KT];
      for (int t = 0, q = 0; t < KT; ++t, q = q + 1 == kws ? 0 : q + 1)
        acc[t] = _mm256_setzero_ps(), k[t] = range_mask(lo[q] - j0, hi[q] - j0);
      for (int r = 0; r < rows; ++r) {
        const __m256 g = _mm256_maskload_ps(dy[r] + j0, kn);
        const float* const* x = run + r * taps;
        for (int t = 0; t < KT; ++t)
          if (x[t])
            acc[t] = _mm256_blendv_ps(acc[t], _mm256_fmadd_ps(g, _mm256_maskload_ps(x[t] + j0, k[t]), acc[t]),
                                      _mm256_castsi256_ps(k[t]));
      }
      for (int t = 0; t < KT; ++t) _mm256_storeu_ps(lanes + t * ld + j0, acc[t]);
    } else {
      for (int t = 0, q = 0; t < taps; ++t, q = q + 1 == kws ? 0 : q + 1) {
        const __m256i k = range_mask(lo[q] - j0, hi[q] - j0);
        __m256 a = _mm256_setzero_ps();
        for (int r = 0; r < rows; ++r)
          if (const float* x = run[r * taps + t])
            a = _mm256_blendv_ps(a, _mm256_fmadd_ps(_mm256_maskload_ps(dy[r] + j0, kn), _mm256_maskload_ps(x + j0, k), a),
                                 _mm256_castsi256_ps(k));
        _mm256_storeu_ps(lanes + t * ld + j0, a);
      }
    }
  }
  static void taps_products(const float* const* dy, const float* const* run, int rows, int taps, int kws,
                            const int64_t* lo, const int64_t* hi, int64_t n, float* lanes, int64_t ld) {
    for (int64_t j0 = 0; j0 < n; j0 += 8) {  // ld: whole vectors
      if (taps == 9) taps_products_block<9>(dy, run, rows, taps, kws, lo, hi, j0, n, lanes, ld);
      else taps_products_block<0>(dy, run, rows, taps, kws, lo, hi, j0, n, lanes, ld);
    }
  }

  static void fill(float* y, int64_t n, float value) {
    const __m256 v = _mm256_set1_ps(value);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, v);
    if (i < n) _mm256_maskstore_ps(y + i, tail(n - i), v);
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
