// conv2d forward, backward-data and backward-weights as blocked matrix products whose operands
// are gathered from the images on the fly (implicit im2col), parameterised by a register-blocked
// micro-kernel. Each ISA source includes this file with its own compiler flags and instantiates
// the passes with its micro-kernel.
//
// Everything here has internal linkage (anonymous namespace): the same template compiled with
// -mavx512f in one file and without it in another must never be merged by the linker, or the
// portable path could end up running AVX-512 instructions. For the same reason nothing from the
// C++ standard library beyond memcpy/memset is used here.
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
//     dst[p*ldd + o] = src[o*lds + p] for o, p < 16 (kOuterLanes must be 16).
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
//     layers with at most kPixelsMaxOC filters; each tap costs one vector load per slot of
//     pixels and one broadcast weight per filter. Lanes past lanes[v] are neither read nor
//     written.
//
// Unit-stride convolutions need no im2col at all: with the (padded) image stored at its padded
// row pitch IWp, the im2col row of tap (c, r, q) over output pixels laid out at the same pitch
// is the contiguous slice starting at image_c + r*dh*IWp + q*dw. The IWp - OW extra columns of
// each output row are computed and dropped. Strided convolutions gather explicit im2col rows.
//
// Determinism: every output element is produced by one work item that sums its terms in a fixed
// order, and the work decomposition depends on the problem only, never on the thread count.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/parallel.h"
#include "common/shapes.h"
#include "common/workspace.h"

namespace convforge {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Leading dimension for a scratch matrix: a multiple of 64 bytes would map every row of a
// micro-panel onto the same few L1 sets, so pad those by one cache line.
template <class T>
int64_t padded_ld(int64_t n) {
  const int64_t line = 64 / static_cast<int64_t>(sizeof(T));
  const int64_t ld = round_up(n, line);
  return (ld * static_cast<int64_t>(sizeof(T))) % 512 == 0 ? ld + line : ld;
}

// Micro-kernels are instantiated per block size; with_int bridges a runtime size to them.
template <int N>
struct IntTag {
  static constexpr int value = N;
};

// Calls f(IntTag<n>{}) for a runtime n in [1, N]; nothing for n outside that range (or N < 1).
template <int N, class F>
inline void with_int(int n, F&& f) {
  if constexpr (N >= 1) {
    if (n == N) {
      f(IntTag<N>{});
    } else {
      with_int<N - 1>(n, f);
    }
  }
}

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

// Hands out consecutive 64-byte aligned slices of one workspace buffer.
struct Carver {
  char* p;
  template <class T>
  T* take(int64_t count) {
    T* r = reinterpret_cast<T*>(p);
    p += aligned_count<T>(static_cast<std::size_t>(count)) * sizeof(T);
    return r;
  }
};
template <class T>
int64_t carve_bytes(int64_t count) {
  return static_cast<int64_t>(aligned_count<T>(static_cast<std::size_t>(count)) * sizeof(T));
}

// Where row k = (c, r, q) of the virtual im2col matrix reads from: kernel row r, column q.
struct KernelTap {
  int64_t c, r, q;
};
inline KernelTap tap_of(const ConvShape& s, int64_t k) {
  const int64_t per_c = s.kh * s.kw;
  const int64_t rq = k % per_c;
  return {k / per_c, rq / s.kw, rq % s.kw};
}

// Walks output pixels [p0, p0 + len) of one im2col row, split into runs that share an output
// row, and for each run the sub-range [lo, hi) of pixels that read real input (the rest read
// padding). visit(t, ih or -1, lo, hi, run_begin, run_end, iw_offset), with t the offset of
// the run's first pixel from p0, and the input column of output column o = o*sw + iw_offset.
template <class Visit>
void for_each_run(const ConvShape& s, int64_t r, int64_t q, int64_t p0, int64_t len, Visit&& visit) {
  const int64_t off_w = q * s.dw - s.pl;
  // Output columns whose input column o*sw + off_w lies in [0, iw).
  const int64_t o_lo = imin(off_w >= 0 ? 0 : ceil_div(-off_w, s.sw), s.ow);
  const int64_t o_hi = imin(imax(s.iw - off_w > 0 ? ceil_div(s.iw - off_w, s.sw) : 0, o_lo), s.ow);
  int64_t oh = p0 / s.ow, o = p0 % s.ow;
  for (int64_t t = 0; t < len; ++oh, o = 0) {
    const int64_t run = imin(s.ow - o, len - t);
    const int64_t ih = oh * s.sh - s.pt + r * s.dh;
    const int64_t e = o + run;
    const int64_t z1 = imin(imax(o_lo, o), e), z2 = imin(imax(o_hi, z1), e);
    visit(t, (ih >= 0 && ih < s.ih) ? ih : -1, z1, z2, o, e, off_w);
    t += run;
  }
}

// dst[t] = input value that output pixel p0 + t sees through tap (r, q) of channel plane x_c.
template <class T>
void im2col_row(const ConvShape& s, const T* x_c, int64_t r, int64_t q, int64_t p0, int64_t len, T* dst) {
  for_each_run(s, r, q, p0, len, [&](int64_t t, int64_t ih, int64_t lo, int64_t hi, int64_t b, int64_t e,
                                     int64_t off_w) {
    T* d = dst + t - b;  // indexed by output column
    if (ih < 0) {
      std::memset(d + b, 0, sizeof(T) * static_cast<std::size_t>(e - b));
      return;
    }
    const T* row = x_c + ih * s.iw + off_w;
    for (int64_t o = b; o < lo; ++o) d[o] = T(0);
    if (s.sw == 1) {
      std::memcpy(d + lo, row + lo, sizeof(T) * static_cast<std::size_t>(hi - lo));
    } else if (s.sw == 2) {
      // A constant stride lets the compiler vectorise the gather (even/odd permutes); with the
      // runtime stride below it is an element at a time (40% of the 7x7/2 stem's forward).
      for (int64_t o = lo; o < hi; ++o) d[o] = row[2 * o];
    } else {
      for (int64_t o = lo; o < hi; ++o) d[o] = row[o * s.sw];
    }
    for (int64_t o = hi; o < e; ++o) d[o] = T(0);
  });
}

// The adjoint of im2col_row: dx_c[...] += src[t] for every pixel that reads a real input.
template <class T>
void col2im_row_add(const ConvShape& s, const T* src, int64_t r, int64_t q, int64_t p0, int64_t len, T* dx_c) {
  for_each_run(s, r, q, p0, len, [&](int64_t t, int64_t ih, int64_t lo, int64_t hi, int64_t b, int64_t,
                                     int64_t off_w) {
    if (ih < 0) return;
    const T* v = src + t - b;
    T* row = dx_c + ih * s.iw + off_w;
    if (s.sw == 1) {
      for (int64_t o = lo; o < hi; ++o) row[o] += v[o];
    } else if (s.sw == 2) {  // constant stride: vectorisable, as in im2col_row
      for (int64_t o = lo; o < hi; ++o) row[2 * o] += v[o];
    } else {
      for (int64_t o = lo; o < hi; ++o) row[o * s.sw] += v[o];
    }
  });
}

// Rows per A panel for `rows` rows: as equal as possible, at most MR (16 rows -> 8 + 8, not
// 12 + 4, whose thin panel has too few accumulators to hide the FMA latency).
template <int MR>
int64_t panel_height(int64_t rows) {
  return ceil_div(rows, ceil_div(rows, MR));
}

// Packs rows [r0, r1) x columns [k0, k0 + kc) of A, element (i, k) = elem(i, k), into panels of
// panel_height rows laid out [k][i], at pa + k0*M + r0*kc: the same formula for any partition of
// the rows into consecutive panels, so packer and consumer agree without a table.
template <class T, int MR, class Elem>
void pack_a(Elem&& elem, int64_t M, int64_t r0, int64_t r1, int64_t k0, int64_t kc, T* pa) {
  const int64_t height = panel_height<MR>(r1 - r0);
  for (int64_t i0 = r0; i0 < r1; i0 += height) {
    const int64_t m = imin(height, r1 - i0);
    T* dst = pa + k0 * M + i0 * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t i = 0; i < m; ++i) dst[k * m + i] = elem(i0 + i, k0 + k);
  }
}

// C[r0:r1, 0:n] (+)= A-panels(k0, kc) x B, B's rows given by brow[0..kc) at column offset boff.
// Column panels outside, row panels inside: one B micro-panel stays in L1 across all of A.
template <class UK>
void macro_kernel(const typename UK::T* pa, int64_t M, int64_t r0, int64_t r1, int64_t k0, int64_t kc,
                  const typename UK::T* const* brow, int64_t boff, int64_t n, typename UK::T* c, int64_t ldc,
                  bool accumulate) {
  if constexpr (UK::kWideRows > 0) {
    if (r1 - r0 <= UK::kWideRows) {  // few rows: wider column panels keep enough accumulators
      const int m = static_cast<int>(r1 - r0);
      for (int64_t j = 0; j < n; j += 2 * UK::NR) {
        const int nr = static_cast<int>(imin(2 * UK::NR, n - j));
        with_int<UK::kWideRows>(m, [&](auto m_tag) {
          UK::template run_wide<decltype(m_tag)::value>(kc, pa + k0 * M + r0 * kc, brow, boff + j, c + j, ldc, nr,
                                                       accumulate);
        });
      }
      return;
    }
  }
  const int64_t height = panel_height<UK::MR>(r1 - r0);
  for (int64_t j = 0; j < n; j += UK::NR) {
    const int nr = static_cast<int>(imin(UK::NR, n - j));
    for (int64_t i0 = r0; i0 < r1; i0 += height) {
      const int m = static_cast<int>(imin(height, r1 - i0));
      with_int<UK::MR>(m, [&](auto m_tag) {
        UK::template run<decltype(m_tag)::value>(kc, pa + k0 * M + i0 * kc, brow, boff + j, c + (i0 - r0) * ldc + j,
                                                ldc, nr, accumulate);
      });
    }
  }
}

// C[M x K] += A.B^T over columns [off, off + len): A rows arows[0..M), B rows brows[0..K).
template <class UK>
void dot_kernel(int64_t M, int64_t K, const typename UK::T* const* arows, const typename UK::T* const* brows,
                int64_t off, int64_t len, typename UK::T* c, int64_t ldc) {
  for (int64_t i0 = 0; i0 < M; i0 += UK::DR) {
    const int mi = static_cast<int>(imin(UK::DR, M - i0));
    for (int64_t j0 = 0; j0 < K; j0 += UK::DC) {
      const int nj = static_cast<int>(imin(UK::DC, K - j0));
      with_int<UK::DR>(mi, [&](auto i_tag) {
        with_int<UK::DC>(nj, [&](auto j_tag) {
          constexpr int I = decltype(i_tag)::value, J = decltype(j_tag)::value;
          UK::template dot<I, J>(len, arows + i0, brows + j0, off, c + i0 * ldc + j0, ldc);
        });
      });
    }
  }
}

// dst[a - a0][b] = src[a - off_t][b - off_l] (zero outside src) for rows a in [a0, a0 + rows)
// and columns b in [0, width): a window of src placed in a zero-padded frame.
template <class T>
void fill_window(const T* src, int64_t src_h, int64_t src_w, int64_t off_t, int64_t off_l, int64_t a0, int64_t rows,
                 int64_t width, T* dst) {
  const int64_t b_lo = imin(imax(off_l, 0), width), b_hi = imax(imin(src_w + off_l, width), b_lo);
  for (int64_t a = a0; a < a0 + rows; ++a, dst += width) {
    const int64_t sr = a - off_t;
    if (sr < 0 || sr >= src_h) {
      std::memset(dst, 0, sizeof(T) * static_cast<std::size_t>(width));
      continue;
    }
    std::memset(dst, 0, sizeof(T) * static_cast<std::size_t>(b_lo));
    std::memcpy(dst + b_lo, src + sr * src_w + (b_lo - off_l), sizeof(T) * static_cast<std::size_t>(b_hi - b_lo));
    std::memset(dst + b_hi, 0, sizeof(T) * static_cast<std::size_t>(width - b_hi));
  }
}

// Sum of f(p[i]) for i < n in 16 running sums, lane l taking i = l (mod 16), folded pairwise at
// the end. One running sum would be a chain of n dependent adds the compiler may not reorder
// (LeNet C1's bias gradient: 4,704 per image, as long as the image's weight gradient); this is
// one vector add per 16 elements, in an order spelled out here, so the same on every ISA.
template <class T, class F>
T lane_sum(const T* p, int64_t n, F&& f) {
  constexpr int64_t kLanes = 16;
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += f(p[i + l]);
  for (int64_t l = 0; i + l < n; ++l) acc[l] += f(p[i + l]);
  for (int64_t width = kLanes / 2; width > 0; width /= 2)
    for (int64_t l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

template <class T>
bool all_finite(const T* p, int64_t n) {
  // x - x is 0 for finite x and NaN for NaN/inf; a sum of those is NaN iff one of them was.
  return lane_sum(p, n, [](T v) { return v - v; }) == T(0);
}

// ReLU as the relu kernels compute it: NaN stays NaN, -0.0 becomes +0.0. Written as one
// comparison (false for NaN) so that the compiler selects instead of branching: a branch on the
// sign of a pre-activation is mispredicted about half the time.
template <class T>
inline T relu_value(T v) {
  return !(v <= T(0)) ? v : T(0);
}

// c[i*ldc + j] = relu(c[i*ldc + j]) for i < rows, j < n: the fused post-op, applied to a block
// of output the work item has just written (still in L1/L2) instead of another pass over memory.
template <class T>
void relu_rows(T* c, int64_t ldc, int64_t rows, int64_t n) {
  for (int64_t i = 0; i < rows; ++i) {
    T* __restrict r = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) r[j] = relu_value(r[j]);
  }
}

// Copies the `ow` valid columns of each output row of a pitch-`pitch` block (columns
// [j0, j0 + nb) of the padded-pitch pixel space) to their places in an OH x OW plane, adding
// bias if given, then applying ReLU if `relu`.
template <class T>
void scatter_rows(const T* src, int64_t ld_src, int64_t rows, int64_t j0, int64_t nb, int64_t pitch, int64_t ow,
                  const T* bias, T* dst, int64_t plane, bool relu = false) {
  const int64_t row0 = j0 / pitch, col0 = j0 % pitch;
  for (int64_t i = 0; i < rows; ++i) {
    const T add = bias != nullptr ? bias[i] : T(0);
    int64_t row = row0, col = col0;
    for (int64_t j = 0; j < nb; ++row, col = 0) {
      const int64_t run = imin(pitch - col, nb - j);
      const int64_t valid = imax(imin(ow - col, run), 0);
      const T* __restrict s = src + i * ld_src + j;
      T* __restrict d = dst + i * plane + row * ow + col;
      if (relu) {
        for (int64_t t = 0; t < valid; ++t) d[t] = relu_value(s[t] + add);
      } else {
        for (int64_t t = 0; t < valid; ++t) d[t] = s[t] + add;
      }
      j += run;
    }
  }
}

// Offsets of each reduction row's first element from the start of a frame of `rows` x `pitch`
// per channel, for taps (c, r, q) with dilation (dh, dw); computed once per call.
inline void tap_offsets(int64_t channels, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t rows, int64_t pitch,
                        int64_t* off) {
  for (int64_t c = 0, k = 0; c < channels; ++c)
    for (int64_t r = 0; r < kh; ++r)
      for (int64_t q = 0; q < kw; ++q, ++k) off[k] = c * rows * pitch + r * dh * pitch + q * dw;
}

// The unit-stride passes work on a zero-padded frame whose rows are (KW-1)*dw wider than the
// output's and which has (KH-1)*dh more rows. That is cheap while the kernel's reach is not much
// larger than the image it slides over (every real CNN layer); a huge dilation or padding with a
// tiny output would make the frame, and its scratch memory, arbitrarily larger than the work,
// so those problems take the im2col path, whose scratch is bounded by the output.
inline bool frame_is_small(int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t rows, int64_t cols) {
  return (kh - 1) * dh <= imax(rows, 16) && (kw - 1) * dw <= imax(cols, 16);
}

constexpr int64_t kKc = 256;        // reduction block: one B micro-panel of kc x NR stays in L1
constexpr int64_t kPixBlock = 512;  // output pixels per work item (B block of kc x 512 in L2)
constexpr int64_t kDotBlock = 512;  // pixels per step of the weight-gradient dot products

// How a unit-stride pass splits its out_h x out_w outputs, laid out at the frame's pitch, into
// blocks of columns, and which rows of the frame (frame_rows x pitch) a block reads.
struct FramePlan {
  int64_t pitch, frame_rows, kernel_reach;  // kernel_reach = (KH - 1) * dh
  int64_t Pp, nblk, NB, win_rows;

  // Rows of the frame that the block of nb columns starting at column j0 reads, from row
  // j0 / pitch: its output rows plus the kernel's reach, plus one more because the dropped
  // columns at the end of its last row wrap into the next frame row.
  int64_t block_rows(int64_t j0, int64_t nb) const {
    const int64_t a0 = j0 / pitch;
    return imin(frame_rows - a0, (j0 + nb - 1) / pitch - a0 + 2 + kernel_reach);
  }
};

template <class UK>
FramePlan frame_plan(int64_t out_h, int64_t out_w, int64_t pitch, int64_t frame_rows, int64_t kernel_reach) {
  FramePlan f{pitch, frame_rows, kernel_reach, 0, 0, 0, 0};
  f.Pp = (out_h - 1) * pitch + out_w;
  f.nblk = ceil_div(f.Pp, kPixBlock);
  f.NB = imin(round_up(ceil_div(f.Pp, f.nblk), UK::NR), f.Pp);
  f.win_rows = imin(frame_rows, ceil_div(f.NB, pitch) + 2 + kernel_reach);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

template <class UK>
void conv2d_fwd_unit_stride(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                            const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  const int64_t M = s.oc, KHW = s.kh * s.kw, K = s.ic * KHW, P = s.oh * s.ow, HW = s.ih * s.iw;
  const bool padded = s.pt + s.pb + s.pl + s.pr > 0;
  const FramePlan f = frame_plan<UK>(s.oh, s.ow, s.iw + s.pl + s.pr, s.ih + s.pt + s.pb, (s.kh - 1) * s.dh);
  const int64_t pitch = f.pitch, Pp = f.Pp, nblk = f.nblk, NB = f.NB, win_rows = f.win_rows;
  const bool direct_store = pitch == s.ow;  // no dropped columns: write straight into dst
  const int64_t KC = imin(K, kKc);
  const int64_t items = s.mb * nblk;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = carve_bytes<const T*>(K) + (padded ? carve_bytes<T>(s.ic * win_rows * pitch) : 0) +
                             (direct_store ? 0 : carve_bytes<T>(M * padded_ld<T>(NB)));
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(K * M) + carve_bytes<int64_t>(K) + threads * per_thread)))};
  T* pa = ws.template take<T>(K * M);
  int64_t* tap_off = ws.template take<int64_t>(K);
  char* thread_area = ws.p;
  for (int64_t k0 = 0; k0 < K; k0 += KC)
    pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return wei[i * K + k]; }, M, 0, M, k0, imin(KC, K - k0), pa);
  tap_offsets(s.ic, s.kh, s.kw, s.dh, s.dw, padded ? win_rows : s.ih, pitch, tap_off);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, Pp - j0);
    Carver tws{thread_area + tid * per_thread};
    const T** brow = tws.template take<const T*>(K);
    const T* x = src + n * s.ic * HW;
    // The image (or the rows of its zero-padded frame that this block reads), pitch `pitch`.
    const int64_t a0 = j0 / pitch;
    const T* base = x;
    if (padded) {
      const int64_t rows = f.block_rows(j0, nb);
      T* win = tws.template take<T>(s.ic * win_rows * pitch);
      for (int64_t c = 0; c < s.ic; ++c)
        fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, a0, rows, pitch, win + c * win_rows * pitch);
      base = win - a0 * pitch;  // so that base + a*pitch addresses frame row a
    }
    for (int64_t k = 0; k < K; ++k) brow[k] = base + tap_off[k];
    T* out = direct_store ? dst + n * M * P + j0 : tws.template take<T>(M * padded_ld<T>(NB));
    const int64_t ldo = direct_store ? P : padded_ld<T>(NB);
    if (direct_store && bias != nullptr) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < nb; ++j) out[i * ldo + j] = bias[i];
    }
    for (int64_t k0 = 0; k0 < K; k0 += KC)
      macro_kernel<UK>(pa, M, 0, M, k0, imin(KC, K - k0), brow + k0, j0, nb, out, ldo,
                       k0 > 0 || (direct_store && bias != nullptr));
    if (!direct_store) {
      scatter_rows(out, ldo, M, j0, nb, pitch, s.ow, bias, dst + n * M * P, P, s.relu);
    } else if (s.relu) {
      relu_rows(out, ldo, M, nb);
    }
  });
}

template <class UK>
void conv2d_fwd_im2col(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                       const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  const int64_t M = s.oc, K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t nblk = ceil_div(P, kPixBlock);
  const int64_t NB = imin(round_up(ceil_div(P, nblk), UK::NR), P);
  const int64_t ldb = padded_ld<T>(NB);
  const int64_t KC = imin(K, kKc);
  const int64_t items = s.mb * nblk;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = carve_bytes<T>(KC * ldb) + carve_bytes<const T*>(KC);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(K * M) + threads * per_thread)))};
  T* pa = ws.template take<T>(K * M);
  char* thread_area = ws.p;
  for (int64_t k0 = 0; k0 < K; k0 += KC)
    pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return wei[i * K + k]; }, M, 0, M, k0, imin(KC, K - k0), pa);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, P - j0);
    const T* x = src + n * s.ic * HW;
    T* y = dst + n * M * P + j0;
    Carver tws{thread_area + tid * per_thread};
    T* bbuf = tws.template take<T>(KC * ldb);
    const T** brow = tws.template take<const T*>(KC);
    for (int64_t k = 0; k < KC; ++k) brow[k] = bbuf + k * ldb;
    if (bias != nullptr) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < nb; ++j) y[i * P + j] = bias[i];
    }
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = imin(KC, K - k0);
      for (int64_t k = 0; k < kc; ++k) {
        const KernelTap tap = tap_of(s, k0 + k);
        im2col_row(s, x + tap.c * HW, tap.r, tap.q, j0, nb, bbuf + k * ldb);
      }
      macro_kernel<UK>(pa, M, 0, M, k0, kc, brow, 0, nb, y, P, k0 > 0 || bias != nullptr);
    }
    if (s.relu) relu_rows(y, P, M, nb);
  });
}

// w[k*OC + o] = filter o's weight at tap k = (c, r, q): the layout of the kernels that keep a
// tap's OC weights in vectors. `wei` is OIHW, or with `transposed_flipped` the kernel of the
// backward problem: filter o's tap (c, r, q) at wei[c][o][KH-1-r][KW-1-q]. Channel by channel,
// so that the KHW x OC slice being written stays in L1.
template <class T>
void pack_filters_per_tap(const ConvShape& s, const T* wei, bool transposed_flipped, T* w) {
  const int64_t KHW = s.kh * s.kw, OC = s.oc;
  for (int64_t c = 0; c < s.ic; ++c) {
    for (int64_t o = 0; o < OC; ++o) {
      T* dst_c = w + c * KHW * OC + o;
      if (transposed_flipped) {
        const T* f = wei + (c * OC + o) * KHW;
        for (int64_t rq = 0; rq < KHW; ++rq) dst_c[rq * OC] = f[KHW - 1 - rq];
      } else {
        const T* f = wei + (o * s.ic + c) * KHW;
        for (int64_t rq = 0; rq < KHW; ++rq) dst_c[rq * OC] = f[rq];
      }
    }
  }
}

constexpr int kDirectMaxCols = 12;  // output pixels per direct kernel call

// Most output pixels per row of a direct kernel call of `rows` rows, a KW-wide kernel row and
// KV channel vectors: KW*KV weight vectors, one broadcast and the accumulators must fit 32
// vector registers.
constexpr int direct_max_cols(int rows, int kw, int kv) {
  return (32 - 1 - kw * kv) / (kv * rows) < kDirectMaxCols ? (32 - 1 - kw * kv) / (kv * rows) : kDirectMaxCols;
}

// Two rows per call only with one channel vector and unit column stride (two rows of KV = 2
// leave too few pixels; the narrow rows that want it are unit-stride layers).
template <class UK, int KW>
void direct_call(int rows, int kv, int sw, int cols, const DirectArgs<typename UK::T>& a) {
  auto call = [&](auto rows_tag, auto kv_tag, auto sw_tag) {
    constexpr int R = decltype(rows_tag)::value, V = decltype(kv_tag)::value, S = decltype(sw_tag)::value;
    with_int<direct_max_cols(R, KW, V)>(cols, [&](auto cols_tag) { UK::template direct<R, decltype(cols_tag)::value, KW, V, S>(a); });
  };
  if (sw == 2) {
    if (kv == 1) {
      call(IntTag<1>{}, IntTag<1>{}, IntTag<2>{});
    } else {
      call(IntTag<1>{}, IntTag<2>{}, IntTag<2>{});
    }
  } else if (rows == 2) {
    call(IntTag<2>{}, IntTag<1>{}, IntTag<1>{});
  } else if (kv == 1) {
    call(IntTag<1>{}, IntTag<1>{}, IntTag<1>{});
  } else {
    call(IntTag<1>{}, IntTag<2>{}, IntTag<1>{});
  }
}

constexpr int kDirectMaxKV = 2;  // output-channel vectors per pixel

// Convolution with the output channels along the vector lanes: each output pixel's OC values
// live in KV vector accumulators; each input value is broadcast once per kernel row and
// multiplies the weight vectors of the taps that see it (all KW at unit stride, every other
// one at stride 2). Unlike the pitch
// form above, no product is spent on dropped columns (LeNet's C3 computes 14 columns per 10
// kept there) and no lane on a missing output channel; the price is a transpose of the output
// from pixel-major to NCHW (OC x P moves against OC x P x K products). `s` is a forward
// problem whose paddings may be negative (a crop: backward-data as a forward pass, below);
// `wei` and `transposed_flipped` as for pack_filters_per_tap. Work items are bands of output
// rows of one image; every output sums its taps in one fixed order (channel, kernel row, kernel column)
// whatever the banding or thread count. Chosen by direct_pays.
template <class UK>
void conv2d_direct(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei, bool transposed_flipped,
                   const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  constexpr int64_t L = UK::kDirectLanes;
  const int64_t K = s.ic * s.kh * s.kw, pairs = s.ic * s.kh, P = s.oh * s.ow, HW = s.ih * s.iw, OC = s.oc;
  const int kv = static_cast<int>(imin(OC / L, kDirectMaxKV));  // vectors per channel group
  const int sw = static_cast<int>(s.sw);
  const bool padded = s.pt != 0 || s.pb != 0 || s.pl != 0 || s.pr != 0;
  // The frame: the image itself, or the rows of its zero-padded version that a band reads,
  // as wide as the outputs read ((OW-1)*SW + KW columns; dw = 1).
  const int64_t reach = (s.kh - 1) * s.dh, pitch = padded ? (s.ow - 1) * s.sw + s.kw : s.iw;
  // Bands of about kPixBlock output pixels; column blocks as equal as possible (a 14-wide
  // row: 7 + 7, not 12 + 2).
  const int64_t band = imax(1, imin(s.oh, kPixBlock / s.ow)), nbands = ceil_div(s.oh, band);
  const int64_t max_cols = direct_max_cols(1, static_cast<int>(s.kw), kv);
  const int64_t cols = ceil_div(s.ow, ceil_div(s.ow, max_cols));
  // Rows narrow enough for two per call (LeNet's C3: 10 pixels) give the kernel twice the
  // accumulators per weight vector: 20 instead of 10.
  const int64_t rows_per_call = OC == L && s.sw == 1 && s.ow <= direct_max_cols(2, static_cast<int>(s.kw), 1) ? 2 : 1;
  const int64_t win_rows = (band - 1) * s.sh + reach + 1;
  const int64_t items = s.mb * nbands;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = (padded ? carve_bytes<T>(s.ic * win_rows * pitch) : 0) + carve_bytes<T>(band * s.ow * OC);
  Carver ws{static_cast<char*>(thread_workspace(
      static_cast<std::size_t>(carve_bytes<T>(K * OC) + carve_bytes<int64_t>(pairs) + threads * per_thread)))};
  T* w = ws.template take<T>(K * OC);  // [tap][OC]: one tap's weights are KV vectors
  int64_t* pair_off = ws.template take<int64_t>(pairs);
  char* thread_area = ws.p;
  pack_filters_per_tap(s, wei, transposed_flipped, w);
  tap_offsets(s.ic, s.kh, 1, s.dh, 1, padded ? win_rows : s.ih, pitch, pair_off);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nbands, oy0 = (item % nbands) * band, nrows = imin(band, s.oh - oy0);
    Carver tws{thread_area + tid * per_thread};
    const T* x = src + n * s.ic * HW;
    if (padded) {  // the frame rows this band reads, so that base + a*pitch is frame row a
      T* win = tws.template take<T>(s.ic * win_rows * pitch);
      for (int64_t c = 0; c < s.ic; ++c)
        fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, oy0 * s.sh, (nrows - 1) * s.sh + reach + 1, pitch,
                    win + c * win_rows * pitch);
      x = win - oy0 * s.sh * pitch;
    }
    T* yt = tws.template take<T>(band * s.ow * OC);  // the band's outputs, pixel-major
    for (int64_t r = 0; r < nrows; r += rows_per_call) {
      const int nr = static_cast<int>(imin(rows_per_call, nrows - r));
      for (int64_t ox = 0; ox < s.ow; ox += cols) {
        const int nc = static_cast<int>(imin(cols, s.ow - ox));
        for (int64_t o0 = 0; o0 < OC; o0 += kv * L) {
          const int gkv = static_cast<int>(imin(kv, (OC - o0) / L));
          const DirectArgs<T> a{x + (oy0 + r) * s.sh * pitch + ox * s.sw, s.sh * pitch, pair_off, pairs, w + o0, OC,
                                bias != nullptr ? bias + o0 : nullptr, yt + (r * s.ow + ox) * OC + o0, OC,
                                s.ow * OC, s.relu};
          switch (s.kw) {
            case 3: direct_call<UK, 3>(nr, gkv, sw, nc, a); break;
            case 5: direct_call<UK, 5>(nr, gkv, sw, nc, a); break;
            default: direct_call<UK, 7>(nr, gkv, sw, nc, a); break;
          }
        }
      }
    }
    const int64_t np = nrows * s.ow;
    T* y = dst + n * OC * P + oy0 * s.ow;
    // Channel groups outside: each dst row is written front to back. With pixels outside,
    // consecutive 16x16 stores hit 16 rows a plane apart at once, and the transposes took a
    // third of the time of a 32x3x32x32 5x5 layer.
    const int64_t full = np / L * L;
    for (int64_t o = 0; o < OC; o += L)
      for (int64_t p = 0; p < full; p += L) UK::transpose16(yt + p * OC + o, OC, y + o * P + p, P);
    for (int64_t p = full; p < np; ++p)
      for (int64_t o = 0; o < OC; ++o) y[o * P + p] = yt[p * OC + o];
  });
}

// The direct form takes (forward) problems of stride 1 or 2, 3, 5 or 7 columns per kernel row
// without column dilation (the sliding broadcast), whole vectors of output channels, and a
// kernel whose reach fits the frame. Measured against the pitch form on one thread, it was as
// fast or faster on every such unit-stride layer tried: LeNet's C3 0.146 vs 0.226 ms, 32 3x3
// filters on 64x1x28x28 0.24 vs 0.35 ms, on 64x32x26x26 2.9 vs 3.5 ms, on 16x32x56x56 ('same')
// 4.2 vs 4.5 ms, 16 7x7 filters on 8x16x64x64 3.7 vs 4.1 ms, level (within 1%) on 32x16x32x32
// and 32x3x32x32 (5x5); and against the im2col form on the 7x7 stride-2 stem, 9.0 vs 10.1-10.4
// ms. The choice depends on the problem alone.
template <class UK>
bool direct_pays(const ConvShape& s) {
  if constexpr (UK::kDirectLanes > 0) {
    return (s.sh == 1 || s.sh == 2) && (s.sw == 1 || s.sw == 2) && s.dw == 1 && (s.kw == 3 || s.kw == 5 || s.kw == 7) &&
           s.oc % UK::kDirectLanes == 0 &&
           frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow);
  } else {
    return false;
  }
}

constexpr int kPixelsMaxOC = 8;   // filters per pixels kernel call
constexpr int kPixelsSlots = 4;   // vectors of output pixels per pixels kernel call

// Unit-stride forward with the output pixels along the vector lanes, for layers with few
// filters (LeNet's C1: 6 filters of 1x5x5). The pitch form's micro-kernel gives its 12 rows
// to 6 filters and reloads its accumulators every 25 taps; here each slot of 16 pixels of an
// output row keeps its 6 filters' sums in registers for the whole reduction, each tap one
// load of 16 input values per slot and one broadcast weight per filter. One work item per
// image; every output sums its taps in order (channel, kernel row, kernel column).
template <class UK>
void conv2d_fwd_pixels(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                       const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  constexpr int64_t L = UK::kDirectLanes;
  const int64_t K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw, OC = s.oc;
  const bool padded = s.pt + s.pb + s.pl + s.pr > 0;
  const int64_t pitch = s.iw + s.pl + s.pr, prows = s.ih + s.pt + s.pb;
  const int64_t row_slots = ceil_div(s.ow, L), slots = s.oh * row_slots;
  const int threads = plan_threads(s.mb, s.flops());

  const int64_t per_thread = padded ? carve_bytes<T>(s.ic * prows * pitch) : 0;
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(K * OC) + carve_bytes<int64_t>(K) + 2 * carve_bytes<int64_t>(slots) + carve_bytes<int>(slots) +
      threads * per_thread)))};
  T* w = ws.template take<T>(K * OC);  // [tap][OC]
  int64_t* tap_off = ws.template take<int64_t>(K);
  int64_t* xoff = ws.template take<int64_t>(slots);
  int64_t* yoff = ws.template take<int64_t>(slots);
  int* lanes = ws.template take<int>(slots);
  char* thread_area = ws.p;
  pack_filters_per_tap(s, wei, false, w);
  tap_offsets(s.ic, s.kh, s.kw, s.dh, s.dw, padded ? prows : s.ih, pitch, tap_off);
  for (int64_t oy = 0, v = 0; oy < s.oh; ++oy) {
    for (int64_t ox = 0; ox < s.ow; ox += L, ++v) {
      xoff[v] = oy * pitch + ox, yoff[v] = oy * s.ow + ox;
      lanes[v] = static_cast<int>(imin(L, s.ow - ox));
    }
  }

  parallel_for(threads, s.mb, [&](int64_t n, int tid) {
    const T* x = src + n * s.ic * HW;
    if (padded) {
      T* frame = reinterpret_cast<T*>(thread_area + tid * per_thread);
      for (int64_t c = 0; c < s.ic; ++c)
        fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, 0, prows, pitch, frame + c * prows * pitch);
      x = frame;
    }
    for (int64_t v0 = 0; v0 < slots; v0 += kPixelsSlots) {
      const int nv = static_cast<int>(imin(kPixelsSlots, slots - v0));
      const PixelArgs<T> a{x, xoff + v0, tap_off, K, w, bias, dst + n * OC * P, P, yoff + v0, lanes + v0, s.relu};
      with_int<kPixelsMaxOC>(static_cast<int>(OC), [&](auto oc_tag) {
        with_int<kPixelsSlots>(nv, [&](auto nv_tag) {
          UK::template pixels<decltype(oc_tag)::value, decltype(nv_tag)::value>(a);
        });
      });
    }
  });
}

// The pixels form: unit stride, at most kPixelsMaxOC filters, and a frame no larger than the
// image's reach allows. The choice depends on the problem alone.
template <class UK>
bool pixels_pays(const ConvShape& s) {
  if constexpr (UK::kDirectLanes > 0) {
    return s.sh == 1 && s.sw == 1 && s.oc <= kPixelsMaxOC && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow);
  } else {
    return false;
  }
}

// Winograd F(4x4, 3x3) for 3x3 unit-stride problems: conv2d_winograd.h, which every ISA source
// includes after this file. False when it did not run (then the forms below write dst).
template <class UK>
bool conv2d_fwd_winograd_hook(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                              bool transposed_flipped, const typename UK::T* bias, typename UK::T* dst);

template <class UK>
void conv2d_fwd(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                const typename UK::T* bias, typename UK::T* dst) {
  if (conv2d_fwd_winograd_hook<UK>(s, src, wei, false, bias, dst)) return;
  if constexpr (UK::kDirectLanes > 0) {
    if (direct_pays<UK>(s)) {
      conv2d_direct<UK>(s, src, wei, false, bias, dst);
      return;
    }
    if (pixels_pays<UK>(s)) {
      conv2d_fwd_pixels<UK>(s, src, wei, bias, dst);
      return;
    }
  }
  if (s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow)) {
    conv2d_fwd_unit_stride<UK>(s, src, wei, bias, dst);
  } else {
    conv2d_fwd_im2col<UK>(s, src, wei, bias, dst);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward data
// ---------------------------------------------------------------------------------------------

// Unit stride: dx is the correlation of dy, zero-padded by (span - 1 - padding) on each side,
// with the spatially flipped and transposed weights, i.e. a forward pass with M = IC output
// rows and a long reduction over (OC, KH, KW), written straight into dx: no col2im scatter.
template <class UK>
void conv2d_bwd_data_unit_stride(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                                 typename UK::T* diff_src) {
  using T = typename UK::T;
  const int64_t M = s.ic, KHW = s.kh * s.kw, K = s.oc * KHW, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t off_t = (s.kh - 1) * s.dh - s.pt, off_l = (s.kw - 1) * s.dw - s.pl;  // may be < 0
  const FramePlan f =
      frame_plan<UK>(s.ih, s.iw, s.iw + (s.kw - 1) * s.dw, s.ih + (s.kh - 1) * s.dh, (s.kh - 1) * s.dh);
  const int64_t pitch = f.pitch, Pp = f.Pp, nblk = f.nblk, NB = f.NB, win_rows = f.win_rows;
  const int64_t KC = imin(K, kKc);
  const int64_t items = s.mb * nblk;
  const int threads = plan_threads(items, s.flops());
  const int64_t ldo = padded_ld<T>(NB);

  const int64_t per_thread =
      carve_bytes<const T*>(K) + carve_bytes<T>(s.oc * win_rows * pitch) + carve_bytes<T>(M * ldo);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(K * M) + carve_bytes<int64_t>(K) + threads * per_thread)))};
  T* pa = ws.template take<T>(K * M);
  int64_t* tap_off = ws.template take<int64_t>(K);
  char* thread_area = ws.p;
  tap_offsets(s.oc, s.kh, s.kw, s.dh, s.dw, win_rows, pitch, tap_off);
  // A[c][(o, r', q')] = w[o][c][KH-1-r'][KW-1-q']
  auto elem = [&](int64_t c, int64_t k) {
    const int64_t o = k / KHW, rq = k % KHW, r = s.kh - 1 - rq / s.kw, q = s.kw - 1 - rq % s.kw;
    return wei[((o * s.ic + c) * s.kh + r) * s.kw + q];
  };
  for (int64_t k0 = 0; k0 < K; k0 += KC) pack_a<T, UK::MR>(elem, M, 0, M, k0, imin(KC, K - k0), pa);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, Pp - j0);
    Carver tws{thread_area + tid * per_thread};
    const T** brow = tws.template take<const T*>(K);
    T* win = tws.template take<T>(s.oc * win_rows * pitch);
    T* out = tws.template take<T>(M * ldo);
    const T* dy = diff_dst + n * s.oc * P;
    const int64_t a0 = j0 / pitch;
    const int64_t rows = f.block_rows(j0, nb);
    for (int64_t o = 0; o < s.oc; ++o)
      fill_window(dy + o * P, s.oh, s.ow, off_t, off_l, a0, rows, pitch, win + o * win_rows * pitch);
    const T* base = win - a0 * pitch;
    for (int64_t k = 0; k < K; ++k) brow[k] = base + tap_off[k];
    for (int64_t k0 = 0; k0 < K; k0 += KC)
      macro_kernel<UK>(pa, M, 0, M, k0, imin(KC, K - k0), brow + k0, j0, nb, out, ldo, k0 > 0);
    scatter_rows<T>(out, ldo, M, j0, nb, pitch, s.iw, nullptr, diff_src + n * s.ic * HW, HW);
  });
}

// dst[j] = dy value at column j0 + j of dy laid out at row pitch `pitch` (zeros in the columns
// past ow of each row), for j < nb: a block of B rows for the per-tap products below.
template <class T>
void gather_pitch_block(const T* dy, int64_t ow, int64_t pitch, int64_t j0, int64_t nb, T* dst) {
  for (int64_t j = 0; j < nb;) {
    const int64_t row = (j0 + j) / pitch, col = (j0 + j) % pitch;
    const int64_t run = imin(pitch - col, nb - j), valid = imax(imin(ow - col, run), 0);
    std::memcpy(dst + j, dy + row * ow + col, sizeof(T) * static_cast<std::size_t>(valid));
    std::memset(dst + j + valid, 0, sizeof(T) * static_cast<std::size_t>(run - valid));
    j += run;
  }
}

// Unit stride without padding ('valid' convolutions): dx = sum over taps (r, q) of
// W_rq^T[IC x OC] . dy[OC x pixels], each product added into dx shifted by (r*dh, q*dw). With
// dy laid out at dx's row pitch (iw; the ow..iw-1 columns of each row zero), the shifted target is
// simply dx + r*dh*iw + q*dw, so the products accumulate in place. The correlation form above
// pads dy by (KH-1, KW-1) on every side and multiplies all that padding by the weights: for
// LeNet's C3 (10x10 dy, 5x5 kernel) 60% of its products are with zeros; here 27% are (the
// dropped columns). Chosen by bwd_data_tapwise_pays.
//
// One work item per image, so each dx element sums its terms in one fixed order (column blocks,
// then taps, then OC) whatever the thread count.
template <class UK>
void conv2d_bwd_data_tapwise(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                             typename UK::T* diff_src) {
  using T = typename UK::T;
  const int64_t M = s.ic, K = s.oc, KHW = s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t pitch = s.iw, N = (s.oh - 1) * pitch + s.ow;  // dy columns at dx's pitch
  const int64_t nblk = ceil_div(N, kPixBlock);
  const int64_t NB = imin(round_up(ceil_div(N, nblk), UK::NR), N);
  const int64_t ldb = padded_ld<T>(NB);
  const int64_t KC = imin(K, kKc);
  const int threads = plan_threads(s.mb, s.flops());

  // A 1x1 kernel is one product, dx = W^T . dy, whose B rows are dy's rows as they are (dy and dx
  // have the same pitch) and which writes dx outright: no copies, no zeroing, no accumulation.
  const bool one_tap = KHW == 1;
  const int64_t per_thread = (one_tap ? 0 : carve_bytes<T>(K * ldb)) + carve_bytes<const T*>(K);
  Carver ws{static_cast<char*>(
      thread_workspace(static_cast<std::size_t>(carve_bytes<T>(KHW * M * K) + threads * per_thread)))};
  T* pa = ws.template take<T>(KHW * M * K);  // tap t's A (IC x OC, packed) at pa + t*M*K
  char* thread_area = ws.p;
  for (int64_t t = 0; t < KHW; ++t)
    for (int64_t k0 = 0; k0 < K; k0 += KC)
      pack_a<T, UK::MR>([&](int64_t c, int64_t o) { return wei[(o * s.ic + c) * KHW + t]; }, M, 0, M, k0,
                        imin(KC, K - k0), pa + t * M * K);

  parallel_for(threads, s.mb, [&](int64_t n, int tid) {
    Carver tws{thread_area + tid * per_thread};
    const T** brow = tws.template take<const T*>(K);
    const T* dy = diff_dst + n * K * P;
    T* dx = diff_src + n * M * HW;
    if (one_tap) {
      for (int64_t o = 0; o < K; ++o) brow[o] = dy + o * P;
      for (int64_t j0 = 0; j0 < N; j0 += NB)
        for (int64_t k0 = 0; k0 < K; k0 += KC)
          macro_kernel<UK>(pa, M, 0, M, k0, imin(KC, K - k0), brow + k0, j0, imin(NB, N - j0), dx + j0, HW, k0 > 0);
      return;
    }
    T* dyb = tws.template take<T>(K * ldb);
    for (int64_t o = 0; o < K; ++o) brow[o] = dyb + o * ldb;
    std::memset(dx, 0, sizeof(T) * static_cast<std::size_t>(M * HW));
    for (int64_t j0 = 0; j0 < N; j0 += NB) {
      const int64_t nb = imin(NB, N - j0);
      for (int64_t o = 0; o < K; ++o) gather_pitch_block(dy + o * P, s.ow, pitch, j0, nb, dyb + o * ldb);
      for (int64_t t = 0; t < KHW; ++t) {
        T* c = dx + (t / s.kw) * s.dh * pitch + (t % s.kw) * s.dw + j0;
        for (int64_t k0 = 0; k0 < K; k0 += KC)
          macro_kernel<UK>(pa + t * M * K, M, 0, M, k0, imin(KC, K - k0), brow + k0, 0, nb, c, HW, true);
      }
    }
  });
}

// The tap-wise form computes (oh-1)*iw + ow columns per tap and product, the correlation form
// (ih-1)*(iw + (KW-1)*dw) + iw; the tap-wise one also loads and stores its accumulators once per
// tap, so it is taken when it saves a quarter of the columns or more, and with images enough to
// keep threads busy (one item each). The choice depends on the problem alone.
inline bool bwd_data_tapwise_pays(const ConvShape& s) {
  if (s.sh != 1 || s.sw != 1 || s.pt + s.pb + s.pl + s.pr != 0 || s.mb < 8) return false;
  if (s.kh == 1 && s.kw == 1) return true;  // one product straight into dx (pointwise layers)
  const int64_t tapwise = (s.oh - 1) * s.iw + s.ow;
  const int64_t correlation = (s.ih - 1) * (s.iw + (s.kw - 1) * s.dw) + s.iw;
  return 4 * tapwise <= 3 * correlation;
}

// Any stride: dcol[K x P] = W^T[K x OC] . dy[OC x P], then scattered back onto dx (col2im). The
// rows of one input channel only touch that channel's plane, so (image, channel group) items
// never write the same memory.
template <class UK>
void conv2d_bwd_data_col2im(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                            typename UK::T* diff_src) {
  using T = typename UK::T;
  const int64_t OC = s.oc, KHW = s.kh * s.kw, K = s.ic * KHW, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t cg = imax(1, imin(s.ic, 256 / KHW));
  const int64_t ngroups = ceil_div(s.ic, cg);
  const int64_t nblk = ceil_div(P, kPixBlock);
  const int64_t NB = imin(round_up(ceil_div(P, nblk), UK::NR), P);
  const int64_t ldd = padded_ld<T>(NB);
  const int64_t KC = imin(OC, kKc);
  const int64_t items = s.mb * ngroups;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = carve_bytes<T>(cg * KHW * ldd) + carve_bytes<const T*>(OC);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(K * OC) + threads * per_thread)))};
  T* pa = ws.template take<T>(K * OC);
  char* thread_area = ws.p;

  // A = W^T: element (k, oc) at wei[oc*K + k]; panels never straddle a channel group.
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t r0 = g * cg * KHW, r1 = imin(s.ic, (g + 1) * cg) * KHW;
    for (int64_t k0 = 0; k0 < OC; k0 += KC)
      pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return wei[k * K + i]; }, K, r0, r1, k0, imin(KC, OC - k0), pa);
  }

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / ngroups, g = item % ngroups;
    const int64_t c0 = g * cg, c1 = imin(s.ic, c0 + cg), r0 = c0 * KHW, r1 = c1 * KHW;
    const T* dy = diff_dst + n * OC * P;
    T* dx = diff_src + n * s.ic * HW;
    Carver tws{thread_area + tid * per_thread};
    T* dcol = tws.template take<T>(cg * KHW * ldd);
    const T** brow = tws.template take<const T*>(OC);
    for (int64_t o = 0; o < OC; ++o) brow[o] = dy + o * P;
    std::memset(dx + c0 * HW, 0, sizeof(T) * static_cast<std::size_t>((c1 - c0) * HW));
    for (int64_t j0 = 0; j0 < P; j0 += NB) {
      const int64_t nb = imin(NB, P - j0);
      for (int64_t k0 = 0; k0 < OC; k0 += KC)
        macro_kernel<UK>(pa, K, r0, r1, k0, imin(KC, OC - k0), brow + k0, j0, nb, dcol, ldd, k0 > 0);
      for (int64_t row = r0; row < r1; ++row) {
        const KernelTap tap = tap_of(s, row);
        col2im_row_add(s, dcol + (row - r0) * ldd, tap.r, tap.q, j0, nb, dx + tap.c * HW);
      }
    }
  });
}

// Unit-stride backward-data as a forward problem over dy: IC filters of OC channels, the
// kernel flipped in space, paddings (KH-1)*dh - pt and so on (negative ones crop), and the
// input's size as output.
inline ConvShape bwd_data_as_forward(const ConvShape& s) {
  ConvShape f;
  f.mb = s.mb, f.ic = s.oc, f.ih = s.oh, f.iw = s.ow, f.oc = s.ic, f.oh = s.ih, f.ow = s.iw;
  f.kh = s.kh, f.kw = s.kw, f.dh = s.dh, f.dw = s.dw;
  f.pt = (s.kh - 1) * s.dh - s.pt, f.pb = (s.kh - 1) * s.dh - s.pb;
  f.pl = (s.kw - 1) * s.dw - s.pl, f.pr = (s.kw - 1) * s.dw - s.pr;
  return f;
}

template <class UK>
void conv2d_bwd_data(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                     typename UK::T* diff_src) {
  // The unit-stride form multiplies weights by dy's zero padding; with an inf or NaN weight that
  // would turn 0 into NaN where the true gradient has no such term, so those weights take the
  // exact col2im path.
  if (s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.ih, s.iw) &&
      all_finite(wei, s.wei_size())) {
    if (conv2d_fwd_winograd_hook<UK>(bwd_data_as_forward(s), diff_dst, wei, true, nullptr, diff_src)) return;
    if constexpr (UK::kDirectLanes > 0) {
      if (const ConvShape f = bwd_data_as_forward(s); direct_pays<UK>(f)) {
        conv2d_direct<UK>(f, diff_dst, wei, true, nullptr, diff_src);
        return;
      }
    }
    if (bwd_data_tapwise_pays(s)) {
      conv2d_bwd_data_tapwise<UK>(s, diff_dst, wei, diff_src);
      return;
    }
    conv2d_bwd_data_unit_stride<UK>(s, diff_dst, wei, diff_src);
  } else {
    conv2d_bwd_data_col2im<UK>(s, diff_dst, wei, diff_src);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward weights
// ---------------------------------------------------------------------------------------------

constexpr int64_t kMaxChunks = 16;                       // partial weight gradients reduced in order
constexpr int64_t kMaxPartialBytes = int64_t{64} << 20;  // bound on their memory

// db[o] += sum of one image's dy[o][p] over its P pixels.
template <class T>
void add_bias_grad(const T* dy, int64_t OC, int64_t P, T* db) {
  for (int64_t o = 0; o < OC; ++o) db[o] += lane_sum(dy + o * P, P, [](T v) { return v; });
}

// Image chunks of the weight-gradient passes: a fixed number (from the problem alone) so that
// each chunk's partial gradient is summed in the same order on any number of threads.
struct ImageChunks {
  int64_t count, per_chunk;
};
template <class T>
ImageChunks image_chunks(int64_t images, int64_t partial_elems) {
  int64_t n = imin(images, kMaxChunks);
  n = imax(1, imin(n, kMaxPartialBytes / static_cast<int64_t>(sizeof(T) * partial_elems)));
  const int64_t per = ceil_div(images, n);
  return {ceil_div(images, per), per};
}

constexpr int kOuterMaxRows = 7;  // image-row pointers per outer kernel (general registers)
constexpr int kOuterMaxTaps = 7;  // widest kernel row the outer path takes
constexpr int kOuterMaxKV = 4;    // output-gradient vectors per outer kernel

// Most image rows an outer kernel of `taps` x `kv` can take with `regs` vector registers:
// rows*taps*kv accumulators, kv dy vectors and one broadcast must all stay in registers.
constexpr int outer_rows(int regs, int taps, int kv) {
  return (regs - kv - 1) / (taps * kv) < kOuterMaxRows ? (regs - kv - 1) / (taps * kv) : kOuterMaxRows;
}

// Most image rows an outer_slide kernel of `taps` can take: rows*taps accumulators, the taps
// dy vectors of the sliding window and one broadcast.
constexpr int slide_rows(int regs, int taps) {
  return (regs - 2 * taps - 1) / taps < kOuterMaxRows ? (regs - 2 * taps - 1) / taps : kOuterMaxRows;
}

// The number of dy vectors per outer kernel that minimises a simple cost model of one pixel
// over all (channel, row) pairs and channel groups: each call costs its FMAs (2 per cycle) or
// its loads (about 2.5 per cycle), whichever is more.
inline int outer_kv(int regs, int64_t pairs, int64_t taps, int64_t vectors) {
  int best = 0;
  double best_cost = 0.0;
  for (int kv = 1; kv <= kOuterMaxKV && kv <= vectors; ++kv) {
    if (outer_rows(regs, static_cast<int>(taps), kv) < 1) break;
    double cost = 0.0;
    for (int64_t v0 = 0; v0 < vectors; v0 += kv) {
      const int64_t g = imin(kv, vectors - v0);
      const int64_t rows = imin(outer_rows(regs, static_cast<int>(taps), static_cast<int>(g)), pairs);
      for (int64_t q0 = 0; q0 < pairs; q0 += rows) {
        const int64_t m = imin(rows, pairs - q0);
        const double fma = static_cast<double>(m * taps * g) / 2.0, loads = static_cast<double>(g + m * taps) / 2.5;
        cost += (fma > loads ? fma : loads) + 1.0;
      }
    }
    if (best == 0 || cost < best_cost) best = kv, best_cost = cost;
  }
  return best;
}

// dW as a sum over output pixels of outer products: for each pixel, the KH*KW*IC input values
// its taps see times its OC output gradients. The inputs are broadcast straight from the
// (zero-padded) image rows, one pointer per (channel, kernel row) pair and the kernel row's
// taps at consecutive addresses, so nothing is gathered; dy is transposed to pixel-major per
// block of output rows (OC * P work per image against OC * K * P for the products). Unlike the
// padded-pitch dot products, no dropped column is ever multiplied, so non-finite inputs need no
// detour. Partial gradients per image chunk, laid out [K][OCp], reduced in chunk order.
// Takes kernels up to kOuterMaxTaps wide with unit column dilation and enough output channels
// to fill a vector; returns false (nothing written) for everything else.
template <class UK>
bool conv2d_bwd_weights_outer(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                              typename UK::T* diff_wei, typename UK::T* diff_bias) {
  using T = typename UK::T;
  constexpr int L = UK::kOuterLanes;
  if (s.dw != 1 || s.kw > kOuterMaxTaps || outer_rows(UK::kOuterRegs, static_cast<int>(s.kw), 1) < 1 || s.oc < (3 * L) / 4) return false;
  // The frame is the image with its padding; padding beyond the kernel's reach (legal but
  // pointless) or a reach far larger than the output would make it larger than the work.
  if (s.pt > (s.kh - 1) * s.dh || s.pb > (s.kh - 1) * s.dh || s.pl > s.kw - 1 || s.pr > s.kw - 1 ||
      !frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow))
    return false;

  const int64_t OC = s.oc, OCv = ceil_div(OC, L), OCp = OCv * L;
  const int64_t K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t pairs = s.ic * s.kh;  // (channel, kernel row): one image-row pointer each
  const int taps = static_cast<int>(s.kw);
  // One vector of filters and unit stride: the sliding kernel, which broadcasts each input
  // value once for all the taps that read it (LeNet's C3 and C1).
  const bool slide = OCv == 1 && s.sw == 1;
  const int kv_full = slide ? 1 : outer_kv(UK::kOuterRegs, pairs, taps, OCv);
  const bool padded = s.pt + s.pb + s.pl + s.pr > 0;
  const int64_t pitch = s.iw + s.pl + s.pr, prows = s.ih + s.pt + s.pb, plane = prows * pitch;
  // Output rows per dy block: ~128 pixels, so one block's dy for one group of KV vectors
  // (128 x KV*L values) stays in L1 while every (channel, row) pair streams past it.
  const int64_t block_rows = imax(1, imin(s.oh, 128 / s.ow));
  const int64_t block_px = block_rows * s.ow, group_width = kv_full * L;
  const int64_t part_elems = K * OCp + OCp;                      // dW^T and the bias
  const ImageChunks chunks = image_chunks<T>(s.mb, part_elems);
  const int threads = plan_threads(chunks.count, s.flops());

  const int64_t per_thread = (padded ? carve_bytes<T>(s.ic * plane) : 0) + carve_bytes<T>(block_rows * s.ow * OCp);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(chunks.count * part_elems) + carve_bytes<int64_t>(pairs) + threads * per_thread)))};
  T* partials = ws.template take<T>(chunks.count * part_elems);
  int64_t* pair_off = ws.template take<int64_t>(pairs);
  char* thread_area = ws.p;
  for (int64_t c = 0; c < s.ic; ++c)
    for (int64_t r = 0; r < s.kh; ++r) pair_off[c * s.kh + r] = c * plane + r * s.dh * pitch;

  parallel_for(threads, chunks.count, [&](int64_t chunk, int tid) {
    T* dwt = partials + chunk * part_elems;
    T* db = dwt + K * OCp;
    std::memset(dwt, 0, sizeof(T) * static_cast<std::size_t>(part_elems));
    Carver tws{thread_area + tid * per_thread};
    T* frame = padded ? tws.template take<T>(s.ic * plane) : nullptr;
    T* dyt = tws.template take<T>(block_px * OCp);
    if (OCp != OC) std::memset(dyt, 0, sizeof(T) * static_cast<std::size_t>(block_px * OCp));
    const int64_t n_end = imin(s.mb, (chunk + 1) * chunks.per_chunk);
    for (int64_t n = chunk * chunks.per_chunk; n < n_end; ++n) {
      const T* x = src + n * s.ic * HW;
      const T* dy = diff_dst + n * OC * P;
      if (diff_bias != nullptr) add_bias_grad(dy, OC, P, db);
      const T* base = x;
      if (padded) {
        for (int64_t c = 0; c < s.ic; ++c)
          fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, 0, prows, pitch, frame + c * plane);
        base = frame;
      }
      for (int64_t y0 = 0; y0 < s.oh; y0 += block_rows) {
        const int64_t rows = imin(block_rows, s.oh - y0), npx = rows * s.ow;
        // dy block, pixel-major within each group of kv_full vectors of channels (each group
        // contiguous, so the kernel streams it), zeros in the lanes >= OC.
        for (int64_t o0 = 0; o0 < OC; o0 += L) {
          const int64_t g = o0 / group_width, width = imin(group_width, OCp - g * group_width);
          const T* d = dy + o0 * P + y0 * s.ow;
          T* t = dyt + g * block_px * group_width + (o0 - g * group_width);
          const int64_t full_p = OC - o0 >= L ? npx / L * L : 0;
          for (int64_t p = 0; p < full_p; p += L) UK::transpose16(d + p, P, t + p * width, width);
          for (int64_t o = 0; o < imin(L, OC - o0); ++o)
            for (int64_t p = full_p; p < npx; ++p) t[p * width + o] = d[o * P + p];
        }
        for (int64_t v0 = 0; v0 < OCv; v0 += kv_full) {
          const int kv = static_cast<int>(imin(kv_full, OCv - v0));
          const int64_t rows_per_call = slide ? slide_rows(UK::kOuterRegs, taps) : outer_rows(UK::kOuterRegs, taps, kv);
          for (int64_t q0 = 0; q0 < pairs; q0 += rows_per_call) {
            const int m = static_cast<int>(imin(rows_per_call, pairs - q0));
            const T* xr[kOuterMaxRows];
            for (int i = 0; i < m; ++i) xr[i] = base + pair_off[q0 + i] + y0 * s.sh * pitch;
            const OuterArgs<T> args{rows, s.ow, xr, s.sw, s.sh * pitch, dyt + v0 * block_px * L, kv * L,
                                    dwt + q0 * taps * OCp + v0 * L, OCp};
            with_int<kOuterMaxTaps>(taps, [&](auto taps_tag) {
              constexpr int TAPS = decltype(taps_tag)::value;
              if (slide) {
                with_int<slide_rows(UK::kOuterRegs, TAPS)>(
                    m, [&](auto m_tag) { UK::template outer_slide<decltype(m_tag)::value, TAPS>(args); });
              } else {
                with_int<kOuterMaxKV>(kv, [&](auto kv_tag) {
                  constexpr int KV = decltype(kv_tag)::value;
                  with_int<outer_rows(UK::kOuterRegs, TAPS, KV)>(
                      m, [&](auto m_tag) { UK::template outer<decltype(m_tag)::value, TAPS, KV>(args); });
                });
              }
            });
          }
        }
      }
    }
  });

  // diff_wei[o][k] = sum over chunks, in order, of dW^T[k][o] (the bias is row K): partials
  // are added into chunk 0's rows, whole contiguous rows at a time, then transposed out.
  const int64_t out_rows = diff_bias != nullptr ? K + 1 : K;
  constexpr int64_t kRowsPerItem = 16;
  parallel_for(plan_threads(ceil_div(out_rows, kRowsPerItem), static_cast<double>(part_elems * chunks.count) * 8.0),
               ceil_div(out_rows, kRowsPerItem), [&](int64_t item, int) {
                 const int64_t k_end = imin(out_rows, (item + 1) * kRowsPerItem);
                 for (int64_t k = item * kRowsPerItem; k < k_end; ++k) {
                   T* __restrict sum = partials + k * OCp;
                   for (int64_t ch = 1; ch < chunks.count; ++ch) {
                     const T* __restrict add = partials + ch * part_elems + k * OCp;
                     for (int64_t o = 0; o < OC; ++o) sum[o] += add[o];
                   }
                   if (k == K) {
                     std::memcpy(diff_bias, sum, sizeof(T) * static_cast<std::size_t>(OC));
                   } else {
                     for (int64_t o = 0; o < OC; ++o) diff_wei[o * K + k] = sum[o];
                   }
                 }
               });
  return true;
}

// dW[OC x K] = sum over images and pixels of dy[OC x P] . col[K x P]^T, as dot products along
// the pixels. Unit stride reads the im2col rows straight from the (padded) image, with dy laid
// out at the same pitch and zeros in the dropped columns; other strides gather im2col rows.
// Images are split into a fixed number of chunks (from the problem size alone); each chunk sums
// into its own partial gradient, and the partials are added in chunk order, so any thread count
// gives the same bits.
template <class UK>
void conv2d_bwd_weights(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                        typename UK::T* diff_wei, typename UK::T* diff_bias) {
  using T = typename UK::T;
  if constexpr (UK::kOuterLanes > 0) {
    if (conv2d_bwd_weights_outer<UK>(s, diff_dst, src, diff_wei, diff_bias)) return;
  }
  const int64_t OC = s.oc, K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t wsize = OC * K;
  // Unit stride multiplies the dropped columns' zeros by real pixels: an inf or NaN pixel would
  // make 0 * inf = NaN where the true gradient has no such term, so such inputs gather im2col.
  const bool unit = s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow) &&
                    all_finite(src, s.src_size());
  const int64_t pitch = unit ? s.iw + s.pl + s.pr : s.ow, prows = s.ih + s.pt + s.pb;
  const bool padded = unit && s.pt + s.pb + s.pl + s.pr > 0;
  const bool dy_direct = pitch == s.ow;
  const int64_t Pp = (s.oh - 1) * pitch + s.ow;
  const int64_t PB = unit ? Pp : imin(P, kDotBlock);  // im2col: pixels per gathered block
  const ImageChunks chunks = image_chunks<T>(s.mb, wsize + OC);
  const int64_t nchunks = chunks.count, per_chunk = chunks.per_chunk;
  const int threads = plan_threads(nchunks, s.flops());
  const int64_t ldcol = padded_ld<T>(PB);

  const int64_t per_thread = carve_bytes<const T*>(K) + carve_bytes<const T*>(OC) +
                             (padded ? carve_bytes<T>(s.ic * prows * pitch) : 0) +
                             (dy_direct ? 0 : carve_bytes<T>(OC * Pp)) + (unit ? 0 : carve_bytes<T>(K * ldcol));
  const int64_t partial_count = nchunks > 1 ? nchunks * (wsize + OC) : 0;
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(partial_count) + carve_bytes<int64_t>(K) + threads * per_thread)))};
  T* partials = ws.template take<T>(partial_count);
  int64_t* tap_off = ws.template take<int64_t>(K);
  char* thread_area = ws.p;
  if (unit) tap_offsets(s.ic, s.kh, s.kw, s.dh, s.dw, prows, pitch, tap_off);

  parallel_for(threads, nchunks, [&](int64_t chunk, int tid) {
    T* dw = nchunks > 1 ? partials + chunk * (wsize + OC) : diff_wei;
    T* db = nchunks > 1 && diff_bias != nullptr ? dw + wsize : diff_bias;
    Carver tws{thread_area + tid * per_thread};
    const T** brow = tws.template take<const T*>(K);
    const T** arow = tws.template take<const T*>(OC);
    T* xpad = padded ? tws.template take<T>(s.ic * prows * pitch) : nullptr;
    T* dyp = dy_direct ? nullptr : tws.template take<T>(OC * Pp);
    T* col = unit ? nullptr : tws.template take<T>(K * ldcol);
    std::memset(dw, 0, sizeof(T) * static_cast<std::size_t>(wsize));
    if (db != nullptr) std::memset(db, 0, sizeof(T) * static_cast<std::size_t>(OC));
    const int64_t n_end = imin(s.mb, (chunk + 1) * per_chunk);
    for (int64_t n = chunk * per_chunk; n < n_end; ++n) {
      const T* x = src + n * s.ic * HW;
      const T* dy = diff_dst + n * OC * P;
      if (db != nullptr) add_bias_grad(dy, OC, P, db);
      if (!unit) {
        for (int64_t o = 0; o < OC; ++o) arow[o] = dy + o * P;
        for (int64_t k = 0; k < K; ++k) brow[k] = col + k * ldcol;
        for (int64_t p0 = 0; p0 < P; p0 += PB) {
          const int64_t pb = imin(PB, P - p0);
          for (int64_t k = 0; k < K; ++k) {
            const KernelTap tap = tap_of(s, k);
            im2col_row(s, x + tap.c * HW, tap.r, tap.q, p0, pb, col + k * ldcol);
          }
          // A rows start at pixel p0, B rows (the gathered block) at 0: shift A by p0.
          for (int64_t o = 0; o < OC; ++o) arow[o] = dy + o * P + p0;
          dot_kernel<UK>(OC, K, arow, brow, 0, pb, dw, K);
        }
        continue;
      }
      const T* base = x;
      if (padded) {
        for (int64_t c = 0; c < s.ic; ++c)
          fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, 0, prows, pitch, xpad + c * prows * pitch);
        base = xpad;
      }
      for (int64_t k = 0; k < K; ++k) brow[k] = base + tap_off[k];
      for (int64_t o = 0; o < OC; ++o) {
        if (dy_direct) {
          arow[o] = dy + o * P;
          continue;
        }
        T* d = dyp + o * Pp;  // dy at the padded pitch, zeros in the dropped columns
        for (int64_t r = 0; r < s.oh; ++r) {
          std::memcpy(d + r * pitch, dy + o * P + r * s.ow, sizeof(T) * static_cast<std::size_t>(s.ow));
          if (r + 1 < s.oh) std::memset(d + r * pitch + s.ow, 0, sizeof(T) * static_cast<std::size_t>(pitch - s.ow));
        }
        arow[o] = d;
      }
      for (int64_t p0 = 0; p0 < Pp; p0 += kDotBlock) dot_kernel<UK>(OC, K, arow, brow, p0, imin(kDotBlock, Pp - p0), dw, K);
    }
  });

  if (nchunks > 1) {
    const int64_t total = wsize + OC;
    parallel_for(plan_threads(total, static_cast<double>(total * nchunks) * 64.0), ceil_div(total, 4096),
                 [&](int64_t blk, int) {
                   const int64_t e_end = imin(total, (blk + 1) * 4096);
                   for (int64_t e = blk * 4096; e < e_end; ++e) {
                     if (e >= wsize && diff_bias == nullptr) break;
                     T sum = partials[e];
                     for (int64_t ch = 1; ch < nchunks; ++ch) sum += partials[ch * total + e];
                     if (e < wsize) {
                       diff_wei[e] = sum;
                     } else {
                       diff_bias[e - wsize] = sum;
                     }
                   }
                 });
  }
}

}  // namespace
}  // namespace convforge
