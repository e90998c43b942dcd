// GELU's exact form on float32, x * Phi(x) = 0.5 * x * erfc(-x / sqrt(2)), and its derivative
// Phi(x) + x * phi(x), evaluated in double from the float value: shared by the ISA sources,
// which run the same operations in the same order (vectors of 8 or 4 doubles, or one), so every
// path gives the same bits. Internal linkage for the same reason as gemm/ukernel.h.
//
// erfc(z) for z = |x| / sqrt(2) >= 0 is t * exp(-z^2 + P(t)), t = 1 / (1 + z / 2) (the form of
// Numerical Recipes' erfcc), with P a degree-12 polynomial fitted here by least squares on
// Chebyshev nodes to log(erfc(z) exp(z^2) / t) for |x| <= 15: at most 1.8e-10 off, a relative
// error of erfc no larger (erfc(z) is relatively exact, the tail of a negative x included).
// Then 1 + erf(x / sqrt(2)) is erfc(z) for x < 0 and 2 - erfc(z) for x >= 0. In double, z^2 =
// x^2 / 2 is exact and every other rounding is ~1e-16, so the float32 result is within 0.51
// ulp of the exact GELU (tests/test_pool_relu.py checks it against a float64 oracle, the tail
// and the specials included): the C library's erf value by value (~16 ns) was 10-40x slower.
// Beyond |x| = 15, erfc(z) < 1e-50 and phi(x) < 1e-49 are taken as 0 (x * Phi(x) is then x or
// -0.0 in float32, its gradient dy or 0).
//
// exp(a) for a in [-114, 0]: a = n ln2 + r, |r| <= ln2 / 2, n rounded to nearest by adding
// 1.5 * 2^52 (whose low mantissa bits then hold n, made into 2^n by a shift), ln2 split in two
// so that n * kLn2Hi is exact; exp(r) by its Taylor series to r^10 / 10! (error < 3e-12).
//
// Non-finite values: NaN gives NaN; +inf gives +inf; -inf gives NaN (-inf * 0, as the layer's
// NumPy expression 0.5 * x * (1 + erf(x / sqrt(2))) did).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/parallel.h"

namespace convforge {
namespace {

// P(t), highest power first (Horner).
constexpr double kGeluP[13] = {
    0x1.7c28da83e0f2ap-3,  -0x1.5efa8b897b9a3p+0, 0x1.18c287ae19259p+2,  -0x1.f6ec16a1eca36p+2, 0x1.10392c4903fb2p+3,
    -0x1.6e52377d8b8a1p+2, 0x1.5267d472c04c4p+1,  -0x1.1033d7c67c9a5p+0, 0x1.0eea717ac159dp-3,  0x1.85cac926cd68dp-5,
    0x1.83ef285b41a4ep-2,  0x1.ffe01e557eba2p-1,  -0x1.43f827220a9f0p+0,
};
// 1 / k! for k = 10 down to 0 (Horner).
constexpr double kExpTaylor[11] = {
    1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0,
};
constexpr double kGeluMaxAbsX = 15.0;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2Hi = 0x1.62e42feep-1;   // 32 significant bits: n * kLn2Hi is exact
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
constexpr double kRoundMagic = 0x1.8p52;     // x + kRoundMagic - kRoundMagic rounds x to an integer

// The functions below are written once over V, a vector of doubles with the operations they
// use (ScalarOps here; __m512d and __m256d ones in the ISA sources): the same operations in
// the same order on every path, none fused (the sources build with -ffp-contract=off).

// exp(a) for a in [-114, 1].
template <class V>
typename V::D gelu_exp(typename V::D a) {
  using D = typename V::D;
  const D k = V::add(V::mul(a, V::set(kLog2e)), V::set(kRoundMagic));
  const D n = V::sub(k, V::set(kRoundMagic));
  const D r = V::sub(V::sub(a, V::mul(n, V::set(kLn2Hi))), V::mul(n, V::set(kLn2Lo)));
  D e = V::set(kExpTaylor[0]);
  for (int i = 1; i < 11; ++i) e = V::add(V::mul(e, r), V::set(kExpTaylor[i]));
  return V::mul(e, V::pow2_of_rounded(k));  // the low bits of k hold n
}

// 1 + erf(x / sqrt(2)) = 2 Phi(x); |x| and |x| bounded by kGeluMaxAbsX (NaN -> the bound: x
// itself makes the result NaN) come from the caller.
template <class V>
typename V::D gelu_two_phi(typename V::D x, typename V::D ax0, typename V::D ax) {
  using D = typename V::D;
  const D one = V::set(1.0);
  const D t = V::div(one, V::add(one, V::mul(V::set(0.5), V::mul(ax, V::set(kInvSqrt2)))));
  D p = V::set(kGeluP[0]);
  for (int i = 1; i < 13; ++i) p = V::add(V::mul(p, t), V::set(kGeluP[i]));
  const D erfc = V::zero_where_above(V::mul(t, gelu_exp<V>(V::sub(p, V::mul(V::set(0.5), V::mul(ax, ax))))), ax0,
                                     kGeluMaxAbsX);
  return V::select_nonnegative(x, V::sub(V::set(2.0), erfc), erfc);
}

// GELU of x (its float values, as doubles): 0.5 * x * 2 Phi(x).
template <class V>
typename V::D gelu_value(typename V::D x) {
  const typename V::D ax0 = V::abs(x);
  return V::mul(V::mul(V::set(0.5), x), gelu_two_phi<V>(x, ax0, V::min_bound(ax0, kGeluMaxAbsX)));
}

// dy * (Phi(x) + x phi(x)), phi the standard normal density.
template <class V>
typename V::D gelu_gradient(typename V::D dy, typename V::D x) {
  using D = typename V::D;
  const D ax0 = V::abs(x), ax = V::min_bound(ax0, kGeluMaxAbsX);
  const D density = V::zero_where_above(
      V::mul(gelu_exp<V>(V::mul(V::set(-0.5), V::mul(ax, ax))), V::set(kInvSqrt2Pi)), ax0, kGeluMaxAbsX);
  return V::mul(dy, V::add(V::mul(V::set(0.5), gelu_two_phi<V>(x, ax0, ax)), V::mul(x, density)));
}

struct ScalarOps {
  using D = double;
  static D set(double v) { return v; }
  static D add(D a, D b) { return a + b; }
  static D sub(D a, D b) { return a - b; }
  static D mul(D a, D b) { return a * b; }
  static D div(D a, D b) { return a / b; }
  static D abs(D a) { return std::fabs(a); }
  static D min_bound(D a, double bound) { return a < bound ? a : bound; }  // NaN -> bound
  static D zero_where_above(D v, D a, double bound) { return a > bound ? 0.0 : v; }
  static D select_nonnegative(D x, D if_yes, D if_no) { return x >= 0 ? if_yes : if_no; }
  static D pow2_of_rounded(D k) {
    uint64_t bits;
    std::memcpy(&bits, &k, sizeof bits);
    bits = (bits + 1023) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return scale;
  }
};

// The float arrays in steps of Lanes::kFloats values (Lanes::gelu and Lanes::gradient read and
// write one step, unaligned, and may work in place), a partial last step through a buffer.
template <class Lanes>
void gelu_fwd_block(int64_t b, int64_t e, const float* src, float* dst) {
  constexpr int64_t kStep = Lanes::kFloats;
  int64_t i = b;
  for (; i + kStep <= e; i += kStep) Lanes::gelu(src + i, dst + i);
  if (i < e) {
    alignas(64) float buf[kStep] = {};
    std::memcpy(buf, src + i, static_cast<std::size_t>(e - i) * sizeof(float));
    Lanes::gelu(buf, buf);
    std::memcpy(dst + i, buf, static_cast<std::size_t>(e - i) * sizeof(float));
  }
}

template <class Lanes>
void gelu_bwd_block(int64_t b, int64_t e, const float* diff_dst, const float* src, float* diff_src) {
  constexpr int64_t kStep = Lanes::kFloats;
  int64_t i = b;
  for (; i + kStep <= e; i += kStep) Lanes::gradient(diff_dst + i, src + i, diff_src + i);
  if (i < e) {
    alignas(64) float dy[kStep] = {}, x[kStep] = {};
    const auto bytes = static_cast<std::size_t>(e - i) * sizeof(float);
    std::memcpy(dy, diff_dst + i, bytes);
    std::memcpy(x, src + i, bytes);
    Lanes::gradient(dy, x, x);
    std::memcpy(diff_src + i, x, bytes);
  }
}

// Values per work item: ~2-3 ns a value on one core (double vectors, an exp or two and a
// division), so a thread's share is worth a hand-off from a few thousand values.
constexpr int64_t kGeluGrain = 4096;

inline int gelu_threads(int64_t n) {
  return plan_threads((n + kGeluGrain - 1) / kGeluGrain, 60.0 * static_cast<double>(n));
}

template <class Lanes>
void gelu_fwd_lanes(int64_t n, const float* src, float* dst) {
  parallel_for_grains(gelu_threads(n), n, kGeluGrain,
                      [&](int64_t lo, int64_t hi, int) { gelu_fwd_block<Lanes>(lo, hi, src, dst); });
}

template <class Lanes>
void gelu_bwd_lanes(int64_t n, const float* diff_dst, const float* src, float* diff_src) {
  parallel_for_grains(gelu_threads(n), n, kGeluGrain,
                      [&](int64_t lo, int64_t hi, int) { gelu_bwd_block<Lanes>(lo, hi, diff_dst, src, diff_src); });
}

}  // namespace
}  // namespace convforge
