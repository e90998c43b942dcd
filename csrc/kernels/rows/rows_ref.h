// Row primitives of the per-channel kernels (batchnorm, globalpool, depthwise), portable form:
// plain loops over one contiguous row of n values. rows_avx2.h and rows_avx512.h have the same
// functions with SIMD bodies; the drivers in <op>_impl.h are templates over these structs, so
// every ISA runs the same loop nest. Reductions return double and accumulate in double.
#pragma once

#include <cstdint>

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
  static constexpr bool kRuns = false;  // no run primitives (rows_avx2.h and rows_avx512.h have them)
  // kRelu: dy counts only where the fused ReLU's input z(x) > 0 (relu, bn_affine.h).
  template <bool kRelu>
  static void sum_dy_dy_dev(const T* dy, const BnAffine<T>* relu, const T* x, int64_t n, double mean, double* s_dy,
                            double* s_dy_dev) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double g = !kRelu || passes(relu, x[i]) ? static_cast<double>(dy[i]) : 0.0;
      a += g;
      b += g * (static_cast<double>(x[i]) - mean);
    }
    *s_dy += a;
    *s_dy_dev += b;
  }
  // One expression for the forward and the backward's ReLU mask, so that they round alike.
  static T pre(T x, T mean, T a, T b) { return (x - mean) * a + b; }
  static bool passes(const BnAffine<T>* relu, T x) { return pre(x, relu->mean, relu->scale, relu->shift) > T(0); }
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
      const T g = !kRelu || passes(relu, x[i]) ? dy[i] : T(0);
      dx[i] = c1 * g + (c2 * (x[i] - mean) + c3);
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
