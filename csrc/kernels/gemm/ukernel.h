// The register-blocked micro-kernel contract shared by conv2d and dense, and the operand
// structs of its conv-specific entry points. One struct per ISA implements it
// (gemm/ukernel_ref.h, ukernel_avx2.h, ukernel_avx512.h); the drivers (gemm/gemm_driver.h,
// conv2d/*.h, dense/dense_impl.h) are templates over it.
//
// Everything under gemm/, conv2d/ and dense/ has internal linkage (anonymous namespace): the same
// template compiled with -mavx512f in one file and without it in another must never be merged by
// the linker, or the portable path could end up running AVX-512 instructions. For the same reason
// nothing from the C++ standard library beyond memcpy/memset is used here, and these headers are
// included only by the ISA translation units (conv2d_<isa>.cpp, dense_<isa>.cpp).
//
// Micro-kernel contract (struct UK):
//   using T; static constexpr int MR, NR, DR, DC;
//   template <int M> static void run(int64_t kc, const T* a, const T* const* b, int64_t boff,
//                                    T* c, int64_t ldc, int n, bool accumulate);
//     C[M x n] = (accumulate ? C : 0) + sum_{k < kc} a[k*M + i] * b[k][boff + j] for M <= MR
//     rows and n <= NR columns. B is addressed through one pointer per row (an indirection
//     table, as in XNNPACK's IGEMM), so its rows can be im2col rows, image rows or slices of a
//     padded image alike. It reads exactly n columns of each b row and writes n of c.
//   static constexpr int kWideRows;  (0: none)
//   template <int M> static void run_wide(...same as run...);
//     run for M <= kWideRows rows and n <= 2*NR columns: with few rows of A, a wider panel of
//     B gives the micro-kernel enough independent accumulators.
//   template <int I, int J> static void dot(int64_t len, const T* const* a, const T* const* b,
//                                           int64_t off, T* c, int64_t ldc);
//     C[i][j] += sum_{p < len} a[i][off + p] * b[j][off + p] for I <= DR, J <= DC: the product
//     A.B^T of two row-major operands, vectorised along p (the weight-gradient reduction).
//   static constexpr int kOuterLanes, kOuterRegs;  (kOuterLanes = 0: no outer kernel)
//   static void transpose16(const T* src, int64_t lds, T* dst, int64_t ldd);
//     dst[p*ldd + o] = src[o*lds + p] for o, p < kOuterLanes (16 on AVX-512, 8 on AVX2).
//   static void transpose16_rows(const T* src, int64_t lds, int n, T* dst, int64_t ldd);
//     the same for o < n < 16 only (the direct forms' last pixels; kDirectLanes 16).
//   template <int ROWS, int TAPS, int KV> static void outer(const OuterArgs<T>& a);
//     c[(i*TAPS + t)*ldc + l] += sum over y < rows, z < cols of
//         x[i][y*xrowstep + z*xstep + t] * dyt[(y*cols + z)*ldd + l]   for l < KV*kOuterLanes:
//     the weight gradient as a sum of outer products, one per output pixel, of ROWS*TAPS
//     input values (broadcast, read straight from the image rows) and KV vectors of the
//     pixel's output gradients (dy transposed to pixel-major). The accumulators stay in
//     registers for the whole pixel range.
//   template <int ROWS, int TAPS> static void outer_slide(const OuterArgs<T>& a);
//     outer<ROWS, TAPS, 1> for xstep == 1 and ldd == kOuterLanes, sliding along each row: in blocks of consecutive
//     pixels, each input value is broadcast once and multiplied by the dy vectors of the up
//     to TAPS pixels that read it (one load per FMA becomes about (ROWS+1)/(ROWS*TAPS)).
//   static constexpr int kDirectLanes;  (0: no direct forward kernel; else kOuterLanes)
//   template <int ROWS, int COLS, int KW, int KV, int SW> static void direct(const DirectArgs<T>& a);
//     y[i*yrowstep + j*ldy + l] = post(bias[l] + sum over p < pairs, q < KW of
//         x[i*xrowstep + pair_off[p] + j*SW + q] * w[(p*KW + q)*ldw + l])
//     for i < ROWS, j < COLS, l < KV*kDirectLanes (bias 0 when null; post = ReLU as relu_value
//     when relu): COLS output pixels of ROWS rows with the output channels along the lanes. Each input value x[pair_off[p] + c] is
//     broadcast once and multiplies the KW weight vectors of the taps that see it, so a kernel
//     row costs COLS + KW - 1 broadcasts for COLS*KW*KV FMAs; output pixel-major.
//   template <int OCB, int NV> static void pixels(const PixelArgs<T>& a);
//     y[o*ldy + yoff[v] + l] = post(bias[o] + sum over t < taps of
//         w[t*OCB + o] * x[xoff[v] + tap_off[t] + l])   for o < OCB, v < NV, l < lanes[v]
//     (lanes[v] <= kDirectLanes): the forward with the output pixels along the lanes, for
//     layers with few filters or few taps (OCB <= kPixelsMaxOC filters per call); each tap
//     costs one vector load per slot of pixels and one broadcast weight per filter. Lanes past
//     lanes[v] are neither read nor written.
#pragma once

#include <cstdint>

namespace convforge {
namespace {

// Operands of UK::outer (see the contract above).
template <class T>
struct OuterArgs {
  int64_t rows, cols;
  const T* const* x;
  int64_t xstep, xrowstep;
  const T* dyt;
  int64_t ldd;
  T* c;
  int64_t ldc;
};

// Operands of UK::direct (see the contract above).
template <class T>
struct DirectArgs {
  const T* x;
  int64_t xrowstep;
  const int64_t* pair_off;
  int64_t pairs;
  const T* w;
  int64_t ldw;
  const T* bias;
  T* y;
  int64_t ldy, yrowstep;
  bool relu;
};

// Operands of UK::pixels (see the contract above).
template <class T>
struct PixelArgs {
  const T* x;
  const int64_t* xoff;
  const int64_t* tap_off;
  int64_t taps;
  const T* w;
  const T* bias;
  T* y;
  int64_t ldy;
  const int64_t* yoff;
  const int* lanes;
  bool relu;
};

// ReLU as the relu kernels compute it: NaN stays NaN, -0.0 becomes +0.0. Written as one
// comparison (false for NaN) so that the compiler selects instead of branching: a branch on the
// sign of a pre-activation is mispredicted about half the time.
template <class T>
inline T relu_value(T v) {
  return !(v <= T(0)) ? v : T(0);
}

// Compile-time checks of the traits every micro-kernel declares (the entry points are checked
// where the drivers instantiate them).
template <class UK>
constexpr bool ukernel_traits_ok() {
  return UK::MR >= 1 && UK::NR >= 1 && UK::DR >= 1 && UK::DC >= 1 && UK::kWideRows >= 0 &&
         (UK::kOuterLanes == 0 || UK::kOuterLanes == 8 || UK::kOuterLanes == 16) &&
         (UK::kDirectLanes == 0 || UK::kDirectLanes == UK::kOuterLanes);
}

}  // namespace
}  // namespace convforge
