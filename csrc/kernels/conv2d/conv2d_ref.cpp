// Portable conv2d: the blocked driver with a plain C++ micro-kernel. Always compiled, last in
// every dispatch table, and the only float64 path (float64 exists for gradient checks).
#include "kernels/conv2d/conv2d_impl.h"
#include "kernels/conv2d/conv2d_winograd.h"
#include "kernels/dense/dense_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

template <class Scalar>
struct UkernelRef {
  using T = Scalar;
  static constexpr int MR = 4, NR = 16, DR = 4, DC = 4;
  static constexpr int kOuterLanes = 0, kOuterRegs = 0;  // no outer kernel: weight gradients use dot
  static constexpr int kWideRows = 0;                    // no run_wide
  static constexpr int kDirectLanes = 0;                 // no direct forward kernel

  template <int M>
  static void run(int64_t kc, const T* a, const T* const* b, int64_t boff, T* c, int64_t ldc, int n,
                  bool accumulate) {
    T acc[M][NR];
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = (accumulate && j < n) ? c[i * ldc + j] : T(0);
    for (int64_t k = 0; k < kc; ++k, a += M) {
      const T* bk = b[k] + boff;
      for (int i = 0; i < M; ++i) {
        const T ai = a[i];
        for (int j = 0; j < n; ++j) acc[i][j] += ai * bk[j];
      }
    }
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < n; ++j) c[i * ldc + j] = acc[i][j];
  }

  template <int I, int J>
  static void dot(int64_t len, const T* const* a, const T* const* b, int64_t off, T* c, int64_t ldc) {
    T acc[I][J] = {};
    for (int64_t p = off; p < off + len; ++p)
      for (int i = 0; i < I; ++i)
        for (int j = 0; j < J; ++j) acc[i][j] += a[i][p] * b[j][p];
    for (int i = 0; i < I; ++i)
      for (int j = 0; j < J; ++j) c[i * ldc + j] += acc[i][j];
  }
};

}  // namespace

#define CONVFORGE_DEFINE_CONV2D_REF(T)                                                                  \
  void conv2d_fwd__ref(const ConvShape& s, const T* src, const T* wei, const T* bias, T* dst) {          \
    conv2d_fwd<UkernelRef<T>>(s, src, wei, bias, dst);                                                  \
  }                                                                                                     \
  void conv2d_bwd_data__ref(const ConvShape& s, const T* diff_dst, const T* wei, T* diff_src) {         \
    conv2d_bwd_data<UkernelRef<T>>(s, diff_dst, wei, diff_src);                                         \
  }                                                                                                     \
  void conv2d_bwd_weights__ref(const ConvShape& s, const T* diff_dst, const T* src, T* diff_wei,        \
                               T* diff_bias) {                                                          \
    conv2d_bwd_weights<UkernelRef<T>>(s, diff_dst, src, diff_wei, diff_bias);                           \
  }
CONVFORGE_DEFINE_CONV2D_REF(float)
CONVFORGE_DEFINE_CONV2D_REF(double)

// Dense layers run on the same micro-kernel (kernels/dense/dense_impl.h).
#define CONVFORGE_DEFINE_DENSE_REF(T)                                                                   \
  void dense_fwd__ref(const DenseShape& s, const T* src, const T* wei, const T* bias, T* dst) {          \
    dense_fwd<UkernelRef<T>>(s, src, wei, bias, dst);                                                   \
  }                                                                                                     \
  void dense_bwd_data__ref(const DenseShape& s, const T* diff_dst, const T* wei, T* diff_src) {         \
    dense_bwd_data<UkernelRef<T>>(s, diff_dst, wei, diff_src);                                          \
  }                                                                                                     \
  void dense_bwd_weights__ref(const DenseShape& s, const T* diff_dst, const T* src, T* diff_wei,        \
                              T* diff_bias) {                                                           \
    dense_bwd_weights<UkernelRef<T>>(s, diff_dst, src, diff_wei, diff_bias);                            \
  }
CONVFORGE_DEFINE_DENSE_REF(float)
CONVFORGE_DEFINE_DENSE_REF(double)

}  // namespace convforge
