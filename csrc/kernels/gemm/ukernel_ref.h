// The portable micro-kernel, plain C++: always compiled, last in every dispatch table, and the
// only float64 path (float64 exists for gradient checks).
// Included only by sources compiled with no ISA flags (conv2d_ref.cpp, dense_ref.cpp).
#pragma once

#include "kernels/gemm/ukernel.h"

namespace convforge {
namespace {

template <class Scalar>
struct UkernelRef {
  using T = Scalar;
  static constexpr int MR = 4, NR = 16, DR = 4, DC = 4;
  static constexpr int kOuterLanes = 0, kOuterRegs = 0;  // no outer kernel: weight gradients use dot
  static constexpr int kWideRows = 0;                    // no run_wide
  static constexpr int kDirectLanes = 0;                 // no direct forward kernel

  // A few samples' dense forward (dense_fwd_few_rows), M rows of x (x[m*ldx + k]) against the
  // same w: every output y[m][j] += x[m][k] * w[k*ldw + j] over k = 0..kc-1 in order, from
  // init[j] (null: 0), the expression run<M> evaluates in the same order, so the same bits.
  static constexpr int kGemvLanes = 16, kGemvRegisters = 1 << 20;  // arrays, not registers: no limit
  template <int M, int NV>
  static void gemv_regs(int64_t kc, const T* x, int64_t ldx, const T* w, int64_t ldw, const T* init, T* y,
                        int64_t ldy, int n) {
    T acc[M][NV * 16];
    for (int m = 0; m < M; ++m)
      for (int j = 0; j < n; ++j) acc[m][j] = init != nullptr ? init[j] : T(0);
    for (int64_t k = 0; k < kc; ++k, w += ldw) {
      for (int m = 0; m < M; ++m) {
        const T xk = x[m * ldx + k];
        for (int j = 0; j < n; ++j) acc[m][j] += xk * w[j];
      }
    }
    for (int m = 0; m < M; ++m)
      for (int j = 0; j < n; ++j) y[m * ldy + j] = acc[m][j];
  }
  // gemv_axpy: R rows of w (x's columns k..k+R-1: x[m*ldx + r]) added into M rows of outputs
  // kept in memory (wide layers).
  template <int R, int M>
  static void gemv_axpy(const T* w, int64_t ldw, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t n) {
    for (int m = 0; m < M; ++m)
      for (int64_t j = 0; j < n; ++j) {
        T acc = y[m * ldy + j];
        for (int r = 0; r < R; ++r) acc += x[m * ldx + r] * w[r * ldw + j];
        y[m * ldy + j] = acc;
      }
  }

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

static_assert(ukernel_traits_ok<UkernelRef<float>>());

}  // namespace
}  // namespace convforge
