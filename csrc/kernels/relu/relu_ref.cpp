#include "kernels/kernels.h"
#include "kernels/relu/relu_impl.h"

namespace convforge {

#define CONVFORGE_DEFINE_RELU_REF(T)                                                         \
  void relu_fwd__ref(int64_t n, const T* src, T* dst) {                                      \
    relu_blocks(n, 2.0 * sizeof(T), [&](int64_t b, int64_t e) {                              \
      for (int64_t i = b; i < e; ++i) dst[i] = relu_scalar(src[i]);                          \
    });                                                                                      \
  }                                                                                          \
  void relu_bwd__ref(int64_t n, const T* diff_dst, const T* src, T* diff_src) {              \
    relu_blocks(n, 3.0 * sizeof(T), [&](int64_t b, int64_t e) {                              \
      for (int64_t i = b; i < e; ++i) diff_src[i] = relu_grad_scalar(diff_dst[i], src[i]);   \
    });                                                                                      \
  }
CONVFORGE_DEFINE_RELU_REF(float)
CONVFORGE_DEFINE_RELU_REF(double)

namespace {
// The block's pointers as parameters, not captures (see relu_blocks): the loop vectorises.
template <class T>
void add_block(int64_t b, int64_t e, const T* x, const T* y, T* dst) {
  for (int64_t i = b; i < e; ++i) dst[i] = x[i] + y[i];
}
template <class T>
void add_relu_block(int64_t b, int64_t e, const T* x, const T* y, T* dst) {
  for (int64_t i = b; i < e; ++i) dst[i] = relu_scalar(x[i] + y[i]);
}
template <class T>
void add_any(int64_t n, const T* a, const T* b, bool relu, T* dst) {
  if (relu) {
    relu_blocks(n, 3.0 * sizeof(T), [&](int64_t lo, int64_t hi) { add_relu_block(lo, hi, a, b, dst); });
  } else {
    relu_blocks(n, 3.0 * sizeof(T), [&](int64_t lo, int64_t hi) { add_block(lo, hi, a, b, dst); });
  }
}
}  // namespace

void add__ref(int64_t n, const float* a, const float* b, bool relu, float* dst) { add_any(n, a, b, relu, dst); }
void add__ref(int64_t n, const double* a, const double* b, bool relu, double* dst) { add_any(n, a, b, relu, dst); }

}  // namespace convforge
