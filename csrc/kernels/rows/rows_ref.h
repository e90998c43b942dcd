// Row primitives of the per-channel kernels (batchnorm, globalpool, depthwise), portable form:
// plain loops over one contiguous row of n values. rows_avx2.h and rows_avx512.h have the same
// functions with SIMD bodies; the drivers in <op>_impl.h are templates over these structs, so
// every ISA runs the same loop nest. Reductions return double and accumulate in double.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/rows/bn_affine.h"

namespace convforge {
namespace {

template <class T>
struct RowsRef {
  static double sum(const T* x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
    return s;
  }
  // sum((x - shift)^2), in double: a row's squared deviations from a shift near its mean (the
  // batch norm forward's statistics, RowMoments in bn_affine.h).
  static double sq_dev(const T* x, int64_t n, T shift) {
    double q = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(x[i]) - static_cast<double>(shift);
      q += d * d;
    }
    return q;
  }
  // *s += sum(x), *q += sq_dev(x, n, shift): the lane-wise forms (one lane here) the SIMD rows
  // use for short rows, summed per channel instead of reduced per row.
  static void sum_lanes(const T* x, int64_t n, double* s) { *s += sum(x, n); }
  static void sq_dev_lanes(const T* x, int64_t n, T shift, double* q) { *q += sq_dev(x, n, shift); }
  // *s_dy += sum(dy), *s_dy_dev += sum(dy * (x - mean)): one lane (the SIMD forms keep kSumLanes
  // partial sums, lane l taking positions i = l modulo kSumLanes).
  static constexpr int kSumLanes = 1;
  // Runs of short rows (BnForwardBlock, batchnorm_bwd_image_runs), as the SIMD rows' run
  // primitives: per position, the runs (at most kRunChunk) summed in T in run order, then added
  // into the doubles; outputs through pre() as scale_shift, so that the backward's recomputed
  // ReLU mask matches them. Plain loops over chunks of kRunBlock positions, which the compiler
  // vectorises for the build's base ISA (SSE2, NEON): a BatchNormalization over a Dense layer's
  // (N, F) features otherwise paid a call per value here too (128 x 512: 236 / 406 us forward /
  // backward on one thread, against 38 / 45 for the AVX-512 runs).
  static constexpr int64_t kRunChunk = 8;
  static constexpr int64_t kRunBlock = 64;
  static void run_sums(const T* x, int64_t stride, int64_t runs, int64_t n, double* d) {
    T f[kRunBlock];
    for (int64_t i0 = 0; i0 < n; i0 += kRunBlock) {
      const int64_t m = n - i0 < kRunBlock ? n - i0 : kRunBlock;
      for (int64_t i = 0; i < m; ++i) f[i] = x[i0 + i];
      for (int64_t j = 1; j < runs; ++j)
        for (int64_t i = 0; i < m; ++i) f[i] += x[j * stride + i0 + i];
      for (int64_t i = 0; i < m; ++i) d[i0 + i] += static_cast<double>(f[i]);
    }
  }
  static void run_sq_devs(const T* x, int64_t stride, int64_t runs, int64_t n, const T* shift, double* d) {
    T f[kRunBlock];
    for (int64_t i0 = 0; i0 < n; i0 += kRunBlock) {
      const int64_t m = n - i0 < kRunBlock ? n - i0 : kRunBlock;
      for (int64_t i = 0; i < m; ++i) f[i] = T(0);
      for (int64_t j = 0; j < runs; ++j)
        for (int64_t i = 0; i < m; ++i) {
          const T v = x[j * stride + i0 + i] - shift[i0 + i];
          f[i] += v * v;
        }
      for (int64_t i = 0; i < m; ++i) d[i0 + i] += static_cast<double>(f[i]);
    }
  }
  template <bool kRelu>
  static void run_scale_shift(const T* x, int64_t n, const T* m, const T* a, const T* b, T* y) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = pre(x[i], m[i], a[i], b[i]);
      y[i] = !kRelu || !(v <= T(0)) ? v : T(0);
    }
  }
  template <bool kRelu>
  static void run_dy_sums(const T* dy, const T* x, int64_t stride, int64_t runs, int64_t n, const T* m, const T* zm,
                          const T* za, const T* zb, double* s_dy, double* s_dev) {
    T gf[kRunBlock], pf[kRunBlock];
    for (int64_t i0 = 0; i0 < n; i0 += kRunBlock) {
      const int64_t len = n - i0 < kRunBlock ? n - i0 : kRunBlock;
      for (int64_t i = 0; i < len; ++i) gf[i] = pf[i] = T(0);
      for (int64_t j = 0; j < runs; ++j)
        for (int64_t i = 0; i < len; ++i) {
          const int64_t q = i0 + i;
          const T v = x[j * stride + q];
          const T g = kRelu ? kept(dy[j * stride + q], pre(v, zm[q], za[q], zb[q]) > T(0)) : dy[j * stride + q];
          gf[i] += g;
          pf[i] += g * (v - m[q]);
        }
      for (int64_t i = 0; i < len; ++i) s_dy[i0 + i] += static_cast<double>(gf[i]), s_dev[i0 + i] += static_cast<double>(pf[i]);
    }
  }
  template <bool kRelu>
  static void run_bn_backward(const T* dy, const T* x, int64_t n, const T* m, const T* c1, const T* c2, const T* c3,
                              const T* zm, const T* za, const T* zb, T* dx) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = kRelu ? kept(dy[i], pre(x[i], zm[i], za[i], zb[i]) > T(0)) : dy[i];
      dx[i] = c1[i] * g + (c2[i] * (x[i] - m[i]) + c3[i]);
    }
  }
  // kRelu: dy counts only where the fused ReLU's input z(x) > 0 (relu, bn_affine.h).
  template <bool kRelu>
  static void sum_dy_dy_dev(const T* dy, const BnAffine<T>* relu, const T* x, int64_t n, double mean, double* s_dy,
                            double* s_dy_dev) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double g = static_cast<double>(kRelu ? kept(dy[i], passes(relu, x[i])) : dy[i]);
      a += g;
      b += g * (static_cast<double>(x[i]) - mean);
    }
    *s_dy += a;
    *s_dy_dev += b;
  }
  // One expression for the forward and the backward's ReLU mask, so that they round alike.
  static T pre(T x, T mean, T a, T b) { return (x - mean) * a + b; }
  static bool passes(const BnAffine<T>* relu, T x) { return pre(x, relu->mean, relu->scale, relu->shift) > T(0); }
  // v where keep, else +0 (NaN included), without a branch: the fused ReLU's mask is as random as
  // the data, and as a branch it was mispredicted about every other value (128 x 16 x 28 x 28
  // backward with the ReLU fused: 25.4 ms on one thread, 0.83 without it).
  static T kept(T v, bool keep) {
    using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
    Bits b;
    std::memcpy(&b, &v, sizeof b);
    b &= Bits{0} - static_cast<Bits>(keep);
    std::memcpy(&v, &b, sizeof v);
    return v;
  }
  // y = (x - mean) * a + b; kRelu: max(y, 0) as relu_value (keep y unless y <= 0: NaN kept, -0 -> +0).
  template <bool kRelu, bool kStream = false>  // kStream: the SIMD rows' stores past the caches
  static void scale_shift(const T* x, int64_t n, T mean, T a, T b, T* y) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = pre(x[i], mean, a, b);
      y[i] = !kRelu || !(v <= T(0)) ? v : T(0);
    }
  }
  // dx = c1 * dy + c2 * (x - mean) + c3
  template <bool kRelu, bool kStream = false>
  static void bn_backward(const T* dy, const BnAffine<T>* relu, const T* x, int64_t n, T c1, T c2, T mean, T c3,
                          T* dx) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = kRelu ? kept(dy[i], passes(relu, x[i])) : dy[i];
      dx[i] = c1 * g + (c2 * (x[i] - mean) + c3);
    }
  }
  // The first maximum of x[0..n) and its index, global max pooling's rules: a NaN if there is
  // one (the first), else the first element larger than all before it. n >= 1.
  static T first_max(const T* x, int64_t n, int64_t* arg) {
    T best = x[0];
    *arg = 0;
    if (best != best) return best;
    for (int64_t i = 1; i < n; ++i) {
      const T v = x[i];
      if (v != v) {  // NaN wins, the first one
        *arg = i;
        return v;
      }
      if (v > best) best = v, *arg = i;
    }
    return best;
  }
  // even[q] = x[2 q], odd[q] = x[2 q + 1] for the n values of x.
  static void deinterleave2(const T* x, int64_t n, T* even, T* odd) {
    for (int64_t i = 0; i < n; ++i) (i % 2 == 0 ? even : odd)[i / 2] = x[i];
  }
  // Depthwise convolution rows (depthwise_impl.h): tap t adds w[t] * run[j] for the columns j in
  // [lo[q], hi[q]), q = t mod kws, only (run read there only); a null run is skipped; R rows.
  template <int R>
  static void taps_rows(const T* const* run, int taps, int kws, const T* w, const int64_t* lo, const int64_t* hi,
                        int64_t n, T init, T* const* y) {
    for (int r = 0; r < R; ++r) {
      T* yr = y[r];
      for (int64_t j = 0; j < n; ++j) yr[j] = init;
      for (int t = 0, q = 0; t < taps; ++t, q = q + 1 == kws ? 0 : q + 1) {
        const T* x = run[r * taps + t];
        if (x == nullptr) continue;
        const T wt = w[t];
        for (int64_t j = lo[q] < 0 ? 0 : lo[q]; j < (hi[q] < n ? hi[q] : n); ++j) yr[j] += wt * x[j];
      }
    }
  }
  // lanes[t * ld + j] = sum over rows r in order of dy[r][j] * run[r * taps + t][j] over tap t's
  // columns (0 elsewhere), j < n.
  static void taps_products(const T* const* dy, const T* const* run, int rows, int taps, int kws, const int64_t* lo,
                            const int64_t* hi, int64_t n, T* lanes, int64_t ld) {
    for (int t = 0, q = 0; t < taps; ++t, q = q + 1 == kws ? 0 : q + 1) {
      T* l = lanes + t * ld;
      for (int64_t j = 0; j < n; ++j) l[j] = T(0);
      for (int r = 0; r < rows; ++r) {
        const T* x = run[r * taps + t];
        if (x == nullptr) continue;
        for (int64_t j = lo[q] < 0 ? 0 : lo[q]; j < (hi[q] < n ? hi[q] : n); ++j) l[j] += dy[r][j] * x[j];
      }
    }
  }
  static void fence() {}  // nothing streamed
  static void fill(T* y, int64_t n, T v) {
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  }
  // y += a * x
  static void axpy(T* y, const T* x, T a, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
  static double dot(const T* x, const T* y, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(y[i]);
    return s;
  }
};

}  // namespace
}  // namespace convforge
