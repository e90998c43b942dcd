// GELU's exact form, x * Phi(x), its gradient, and erf, value by value: the portable path.
//
// float32: gelu_impl.h's evaluation in double (within 0.51 ulp of the exact GELU), one value at
// a time, with the bits of the vector paths.
// float64 (gradient checks): the layer's expression 0.5 * x * (1 + erf(x / sqrt(2))) with the
// C library's erf (the function Python's math.erf calls), and its derivative
// 0.5 * (1 + erf(x / sqrt(2))) + x * exp(-0.5 * x * x) / sqrt(2 pi), each operation rounded as
// NumPy rounds it. Built with -ffp-contract=off (CMakeLists.txt): no fused multiply-add.
#include <cmath>

#include "common/parallel.h"
#include "kernels/gelu/gelu_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

// ~10-20 ns a value on one core: worth a second thread from a few thousand values.
constexpr int64_t kErfGrain = 2048;

int erf_threads(int64_t n) { return plan_threads((n + kErfGrain - 1) / kErfGrain, 40.0 * static_cast<double>(n)); }

template <class T>
void erf_any(int64_t n, const T* src, double* dst) {
  parallel_for_grains(erf_threads(n), n, kErfGrain, [&](int64_t lo, int64_t hi, int) {
    for (int64_t i = lo; i < hi; ++i) dst[i] = std::erf(static_cast<double>(src[i]));
  });
}

void gelu_f64(int64_t n, const double* src, double* dst) {
  const double root2 = std::sqrt(2.0);
  parallel_for_grains(erf_threads(n), n, kErfGrain, [&](int64_t lo, int64_t hi, int) {
    for (int64_t i = lo; i < hi; ++i) {
      const double x = src[i];
      dst[i] = 0.5 * x * (1.0 + std::erf(x / root2));
    }
  });
}

void gelu_bwd_f64(int64_t n, const double* diff_dst, const double* src, double* diff_src) {
  const double root2 = std::sqrt(2.0), root2pi = std::sqrt(2.0 * M_PI);
  parallel_for_grains(erf_threads(n), n, kErfGrain, [&](int64_t lo, int64_t hi, int) {
    for (int64_t i = lo; i < hi; ++i) {
      const double x = src[i];
      const double cdf = 0.5 * (1.0 + std::erf(x / root2));
      diff_src[i] = diff_dst[i] * (cdf + x * std::exp(-0.5 * x * x) / root2pi);
    }
  });
}

// One value a step.
struct ScalarLanes {
  static constexpr int kFloats = 1;
  static void gelu(const float* src, float* dst) { *dst = static_cast<float>(gelu_value<ScalarOps>(*src)); }
  static void gradient(const float* diff_dst, const float* src, float* diff_src) {
    *diff_src = static_cast<float>(gelu_gradient<ScalarOps>(*diff_dst, *src));
  }
};

}  // namespace

void erf__ref(int64_t n, const float* src, double* dst) { erf_any(n, src, dst); }
void erf__ref(int64_t n, const double* src, double* dst) { erf_any(n, src, dst); }
void gelu_fwd__ref(int64_t n, const float* src, float* dst) { gelu_fwd_lanes<ScalarLanes>(n, src, dst); }
void gelu_fwd__ref(int64_t n, const double* src, double* dst) { gelu_f64(n, src, dst); }
void gelu_bwd__ref(int64_t n, const float* diff_dst, const float* src, float* diff_src) {
  gelu_bwd_lanes<ScalarLanes>(n, diff_dst, src, diff_src);
}
void gelu_bwd__ref(int64_t n, const double* diff_dst, const double* src, double* diff_src) {
  gelu_bwd_f64(n, diff_dst, src, diff_src);
}

}  // namespace convforge
