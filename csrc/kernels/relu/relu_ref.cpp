#include <cstdint>
#include <cstring>
#include <type_traits>

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
// relu_grad_scalar(x + y, gate) as a bit mask, not a select: GCC left the select a scalar branch
// (a random gate: 5x slower than the plain add); the mask keeps 0 for a NaN or inf sum under a
// closed gate, as the select does.
template <class T, class Bits>
void add_gated_block(int64_t b, int64_t e, const T* x, const T* y, const T* gate, T* dst) {
  static_assert(sizeof(T) == sizeof(Bits), "one mask word per element");
  for (int64_t i = b; i < e; ++i) {
    const T s = x[i] + y[i];
    Bits v;
    std::memcpy(&v, &s, sizeof v);
    v &= Bits(0) - static_cast<Bits>(gate[i] > T(0));
    std::memcpy(dst + i, &v, sizeof v);
  }
}
template <class T>
void add_any(int64_t n, const T* a, const T* b, const T* gate, bool relu, T* dst) {
  if (gate != nullptr) {
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    relu_blocks(n, 4.0 * sizeof(T), [&](int64_t lo, int64_t hi) { add_gated_block<T, Bits>(lo, hi, a, b, gate, dst); });
  } else if (relu) {
    relu_blocks(n, 3.0 * sizeof(T), [&](int64_t lo, int64_t hi) { add_relu_block(lo, hi, a, b, dst); });
  } else {
    relu_blocks(n, 3.0 * sizeof(T), [&](int64_t lo, int64_t hi) { add_block(lo, hi, a, b, dst); });
  }
}
}  // namespace

void add__ref(int64_t n, const float* a, const float* b, const float* gate, bool relu, float* dst) {
  add_any(n, a, b, gate, relu, dst);
}
void add__ref(int64_t n, const double* a, const double* b, const double* gate, bool relu, double* dst) {
  add_any(n, a, b, gate, relu, dst);
}

}  // namespace convforge
