// GELU's exact form, x * Phi(x), and the erf it needs, value by value with the C library's erf
// (the function Python's math.erf calls). One portable path: a libm call per value bounds it,
// not the vector width, and no vector erf would give the C library's bits, which the layers'
// NumPy expression had (np.vectorize(math.erf), ~70 ns a value) and keep.
//
// gelu_fwd is the layer's expression 0.5 * x * (1 + erf(x / sqrt(2))) as NumPy evaluates it on
// an array of T: x / (T)sqrt(2) and 0.5 * x rounded to T, erf of the quotient in double, the
// product in double, rounded to T once. Built with -ffp-contract=off (CMakeLists.txt): no fused
// multiply-add where NumPy rounds twice.
#include <cmath>

#include "common/parallel.h"
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

template <class T>
void gelu_any(int64_t n, const T* src, T* dst) {
  const T root2 = static_cast<T>(std::sqrt(2.0)), half = static_cast<T>(0.5);
  parallel_for_grains(erf_threads(n), n, kErfGrain, [&](int64_t lo, int64_t hi, int) {
    for (int64_t i = lo; i < hi; ++i) {
      const T x = src[i];
      const T q = x / root2, h = half * x;
      dst[i] = static_cast<T>(static_cast<double>(h) * (1.0 + std::erf(static_cast<double>(q))));
    }
  });
}

}  // namespace

void erf__ref(int64_t n, const float* src, double* dst) { erf_any(n, src, dst); }
void erf__ref(int64_t n, const double* src, double* dst) { erf_any(n, src, dst); }
void gelu_fwd__ref(int64_t n, const float* src, float* dst) { gelu_any(n, src, dst); }
void gelu_fwd__ref(int64_t n, const double* src, double* dst) { gelu_any(n, src, dst); }

}  // namespace convforge
