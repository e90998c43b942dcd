// Winograd convolution F(4x4, 3x3) for 3x3 kernels with unit stride and dilation (any padding,
// negative included: a crop), forward and, through bwd_data_as_forward, backward-data.
//
// Each 4x4 block of outputs ("tile") of one filter is
//     Y = A^T [ sum over channels c of (G g_c G^T) (.) (B^T d_c B) ] A
// with g_c the filter's 3x3 kernel for channel c, d_c the 6x6 input patch under the tile and (.)
// the elementwise product: 36 multiplications per tile and channel instead of 144. Interpolation
// points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016):
//     B^T = [4  0 -5  0 1 0]   G = [ 1/4     0     0]   A^T = [1 1  1 1  1 0]
//           [0 -4 -4  1 1 0]       [-1/6  -1/6  -1/6]         [0 1 -1 2 -2 0]
//           [0  4 -4 -1 1 0]       [-1/6   1/6  -1/6]         [0 1  1 4  4 0]
//           [0 -2 -1  2 1 0]       [1/24  1/12   1/6]         [0 1 -1 8 -8 1]
//           [0  2 -1 -2 1 0]       [1/24 -1/12   1/6]
//           [0  4  0 -5 0 1]       [   0     0     1]
// For every frequency (a, b) of the 6x6 transform domain the channel sums are one matrix
// product M_ab[OC x tiles] = U_ab[OC x IC] . V_ab[IC x tiles]: 36 products per block of tiles,
// run on the register-blocked micro-kernel of the ISA (macro_kernel in conv2d_impl.h), with
// U_ab packed once per call.
//
// Accuracy. The transforms add and subtract values of very different weight, so the rounding
// error is bounded not by the direct sum of |terms| but by the same computation on absolute
// values:  |Y - Y_exact| <= gamma * eps * |A^T| [ sum_c (|G| |g_c| |G^T|) (.) (|B^T| |d_c| |B|) ] |A|
// to first order, gamma about IC + 25 (the channel sum plus the 2 x 4 + 2 x 3 + 2 x 5 roundings
// along the longest transform path; G's thirds and sixths are rounded too). Against the
// direct form's bound, eps * IC * 9 * sum|g||d|, the factor is at most the growth
//     beta^2 = (max over i, r of sum_u sum_a |A^T_ia| |G_ar| |B^T_au|)^2 = (29.33)^2 ~ 860
// for output (3, 3) and kernel tap (2, 2), and about 6.3^2 = 40 for output (0, 0); it also
// mixes in inputs of the 6x6 patch that the output does not see. In float32 (eps 6e-8) that is
// a relative error of order 1e-5 on unlucky inputs, 1e-6 typically: fine for training, which
// is why float32 takes it by default; float64, kept for gradient checks, keeps the direct form
// unless forced. tests/test_winograd.py checks exactly this bound elementwise against the
// float64 oracle. (F(6x6, 3x3), with points +-1/2 as well, has a growth of several thousand
// in one dimension: too much for float32.)
//
// Non-finite values: the transforms mix every input of a 6x6 patch into all 16 outputs of its
// tile, so an inf or NaN input or weight (or an intermediate that overflows) would spread to
// outputs that the direct form computes as finite or as a different non-finite. The output
// transform notes any non-finite value before bias and ReLU; the caller then recomputes the
// whole problem with the direct forms, which define those cases.
//
// Layout and vectorisation. Activations are NCHW: one channel's pixels are contiguous, its
// neighbours' a plane away. On AVX-512 with channels in whole vectors of 16, a work item pays
// for a transpose to pixel-major and runs the transforms along the channels (the channel-vector
// form, below). Elsewhere (the tile form) the transforms are vectorised over tiles, not
// channels: tiles are numbered across the whole batch (image, tile row, tile column), a work
// item is a block of consecutive tiles, and the transformed values of a block are stored
// [frequency][channel][tile], which is exactly the layout the matrix products read (one B row
// per channel) and write (one C row per filter).
// Each 2-D transform is two 1-D passes over contiguous arrays that the ISA's compiler flags
// vectorise (AVX-512, AVX2, or SSE2 on the portable path):
//   input:  the six image rows under a tile row are de-interleaved into 4 phases (column 4t + r
//           at phase r, entry t), so that the row transform reads 6 contiguous runs and writes
//           one contiguous run per (row, frequency); the column transform then runs over all
//           the tiles of the block at once (full vectors even for a 7-tile-wide VGG layer).
//   output: the column transform over all the tiles of the block, then per output row the row
//           transform into 4 phases, re-interleaved into the output row with bias and ReLU.
//
// Memory: per thread, the block's transformed inputs and outputs, 36 (IC + OC) values per
// tile, kept near kWinoBlockBytes (an L2) by the block size; shared, the transformed weights,
// 36 x OC x IC values (4x the weights), and 63 x OC values per thread while they are made.
//
// Determinism (the tile form; the channel form's note is with it): the block size depends on
// the problem only, each output is written by the one item that owns its tile, and every sum
// runs in a fixed order, so the result is the same for any number of threads.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/conv2d/conv2d_common.h"

#if defined(__AVX512F__)
#include "common/avx512.h"
#endif

namespace convforge {
namespace {

constexpr int64_t kWinoFreq = 36;                       // 6 x 6 frequencies
constexpr int64_t kWinoBlockBytes = int64_t{1} << 20;   // transformed block target (per thread)

inline bool winograd_applies(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1;
}

// How the tiles of a problem are split into work items.
struct WinoPlan {
  int64_t tx, ty, per_image, total;  // tiles per output row / column / image / batch
  int64_t nt, items, ldv;            // tiles per item, items, pitch of a transformed row
};

template <class UK>
WinoPlan wino_plan(const ConvShape& s) {
  using T = typename UK::T;
  WinoPlan p{};
  p.tx = ceil_div(s.ow, 4), p.ty = ceil_div(s.oh, 4);
  p.per_image = p.tx * p.ty, p.total = s.mb * p.per_image;
  // A multiple of the micro-kernel's column panel, so that no panel runs half empty.
  const int64_t per_tile = kWinoFreq * (s.ic + s.oc) * static_cast<int64_t>(sizeof(T));
  p.nt = imax(UK::NR, kWinoBlockBytes / per_tile / UK::NR * UK::NR);
  p.nt = imin(p.nt, round_up(p.total, UK::NR));
  p.nt = imin(p.nt, 8 * UK::NR);
  p.items = ceil_div(p.total, p.nt);
  p.ldv = padded_ld<T>(p.nt);
  return p;
}

// ---- weight transform ------------------------------------------------------------------------

// p[k] = base + k*step for k < N: the N rows that one 1-D pass reads or writes.
template <class P, int N>
struct RowSet {
  P p[N];
  RowSet(P base, int64_t step) {
    for (int k = 0; k < N; ++k) p[k] = base + k * step;
  }
};

// out[a*os + t] = (G g_t)[a] with g_t = (in[r*is + t])_{r<3}, for n kernels side by side: one
// 1-D pass of the weight transform. Multiplies by the rounded reciprocals of 4, 6, 12 and 24
// (one more rounding of each such term, within the bound above) instead of dividing.
template <class T>
void winograd_g(const T* in, int64_t is, T* out, int64_t os, int64_t n) {
  const RowSet<const T*, 3> g(in, is);
  const RowSet<T*, 6> o(out, os);
  const T r4 = T(1) / T(4), r6 = T(1) / T(6), r12 = T(1) / T(12), r24 = T(1) / T(24);
#pragma GCC ivdep
  for (int64_t t = 0; t < n; ++t) {
    const T a = g.p[0][t], b = g.p[1][t], c = g.p[2][t];
    const T ac = a + c;
    o.p[0][t] = a * r4;
    o.p[1][t] = -(ac + b) * r6;
    o.p[2][t] = -(ac - b) * r6;
    const T e = a * r24 + c * r6, f = b * r12;
    o.p[3][t] = e + f;
    o.p[4][t] = e - f;
    o.p[5][t] = c;
  }
}

// u[(a*6 + b)*OC + o] = (G g G^T)[a][b] for every filter o of channel c: the 36 transformed
// taps of one input channel, all filters side by side. `wei` is OIHW, or with
// `transposed_flipped` the kernel of the backward problem (filter o's tap (c, r, q) at
// wei[c][o][2-r][2-q], as pack_filters_per_tap). `scratch` holds 63 x OC values (u is its last
// 36 x OC).
//
// Channel by channel, all filters at once: the taps are gathered filter-minor (gt[k][o]), both
// 1-D passes run along the filters, and each frequency's values for one channel land as one
// contiguous run per panel of filters, so every store is sequential. (Scattering 36 values per
// (filter, channel) pair to 36 blocks OC*IC apart took 15.6 ms for 128 x 128 filters: the
// blocks were 64 KiB apart, all in the same cache sets.)
template <class T>
const T* winograd_transform_channel(const ConvShape& s, const T* wei, bool transposed_flipped, int64_t c, T* scratch) {
  const int64_t OC = s.oc, IC = s.ic;
  T* gt = scratch;        // [tap][filter]
  T* t = gt + 9 * OC;     // [a][q][filter]: G g
  T* u = t + 18 * OC;     // [a][b][filter]: G g G^T
  for (int64_t o = 0; o < OC; ++o) {
    for (int64_t k = 0; k < 9; ++k)
      gt[k * OC + o] = transposed_flipped ? wei[(c * OC + o) * 9 + 8 - k] : wei[(o * IC + c) * 9 + k];
  }
  for (int64_t q = 0; q < 3; ++q) winograd_g(gt + q * OC, 3 * OC, t + q * OC, 3 * OC, OC);
  for (int64_t a = 0; a < 6; ++a) winograd_g(t + a * 3 * OC, OC, u + a * 6 * OC, OC, OC);
  return u;
}

// The transformed weights, packed for macro_kernel: frequency f's A panels (OC x IC) at
// pa + f*OC*IC; `wei` and `transposed_flipped` as above. `scratch` holds 63 x OC values per
// thread. This is the part of a call that depends on the weights alone: a caller that keeps
// the weights fixed across calls could keep `pa`.
template <class UK>
void winograd_pack_weights(const ConvShape& s, const typename UK::T* wei, bool transposed_flipped, int threads,
                           typename UK::T* scratch, typename UK::T* pa) {
  using T = typename UK::T;
  const int64_t OC = s.oc, IC = s.ic, KC = imin(IC, kKc), height = panel_height<UK::MR>(OC);
  parallel_for(threads, IC, [&](int64_t c, int tid) {
    const T* u = winograd_transform_channel(s, wei, transposed_flipped, c, scratch + tid * 63 * OC);
    const int64_t k0 = c / KC * KC, kc = imin(KC, IC - k0);
    for (int64_t f = 0; f < kWinoFreq; ++f) {
      for (int64_t i0 = 0; i0 < OC; i0 += height) {
        const int64_t m = imin(height, OC - i0);
        std::memcpy(pa + f * OC * IC + k0 * OC + i0 * kc + (c - k0) * m, u + f * OC + i0,
                    sizeof(T) * static_cast<std::size_t>(m));
      }
    }
  });
}

// ---- input transform -------------------------------------------------------------------------

// x6[m*ldx + u] = row[col0 + 4u + m] for m < 6, u < n: the 6 columns under each of n tiles
// side by side, zero where a column is outside [0, iw) or row is null (a padding row).
template <class T>
void gather_tile_columns(const T* row, int64_t iw, int64_t col0, int64_t n, T* __restrict x6, int64_t ldx) {
  if (row == nullptr) {
    for (int m = 0; m < 6; ++m) std::memset(x6 + m * ldx, 0, sizeof(T) * static_cast<std::size_t>(n));
    return;
  }
  // Tiles whose 6 columns all lie inside the row: [u_lo, u_hi).
  const int64_t u_lo = imin(col0 >= 0 ? 0 : ceil_div(-col0, 4), n);
  const int64_t last = iw - 6 - col0;  // 4u <= last
  const int64_t u_hi = imax(imin(last >= 0 ? last / 4 + 1 : 0, n), u_lo);
  auto edge = [&](int64_t u) {
    for (int m = 0; m < 6; ++m) {
      const int64_t col = col0 + 4 * u + m;
      x6[m * ldx + u] = col >= 0 && col < iw ? row[col] : T(0);
    }
  };
  for (int64_t u = 0; u < u_lo; ++u) edge(u);
  const T* __restrict src = row + col0;
  for (int64_t u = u_lo; u < u_hi; ++u) {
    for (int m = 0; m < 6; ++m) x6[m * ldx + u] = src[4 * u + m];
  }
  for (int64_t u = u_hi; u < n; ++u) edge(u);
}


// The 1-D input transform B^T x of 6-vectors x0..x5, 6 outputs.
#define CONVFORGE_WINO_BT(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5) \
  do {                                                                    \
    const auto a_ = (x4) - T(4) * (x2), b_ = (x3) - T(4) * (x1);          \
    const auto c_ = (x4) - (x2), d_ = T(2) * ((x3) - (x1));               \
    o0 = T(4) * (x0) - T(5) * (x2) + (x4);                                \
    o1 = a_ + b_;                                                         \
    o2 = a_ - b_;                                                         \
    o3 = c_ + d_;                                                         \
    o4 = c_ - d_;                                                         \
    o5 = T(4) * (x1) - T(5) * (x3) + (x5);                                \
  } while (0)

// The 1-D output transform A^T m of 6-vectors m0..m5, 4 outputs.
#define CONVFORGE_WINO_AT(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3) \
  do {                                                            \
    const auto s1_ = (m1) + (m2), d1_ = (m1) - (m2);              \
    const auto s2_ = (m3) + (m4), d2_ = (m3) - (m4);              \
    o0 = (m0) + s1_ + s2_;                                        \
    o1 = d1_ + T(2) * d2_;                                        \
    o2 = s1_ + T(4) * s2_;                                        \
    o3 = d1_ + T(8) * d2_ + (m5);                                 \
  } while (0)

// out[b*os + t] = (B^T x_t)[b] with x_t = (in[m*is + t])_{m<6}, for nt tiles side by side: one
// 1-D pass of the input transform, over contiguous runs of tiles. The 12 rows never overlap
// (ivdep: GCC would otherwise version the loop on 36 alias checks, more than it allows, and
// leave it scalar).
template <class T>
void winograd_bt(const T* in, int64_t is, T* out, int64_t os, int64_t nt) {
  const RowSet<const T*, 6> x(in, is);
  const RowSet<T*, 6> o(out, os);
#pragma GCC ivdep
  for (int64_t t = 0; t < nt; ++t) {
    CONVFORGE_WINO_BT(x.p[0][t], x.p[1][t], x.p[2][t], x.p[3][t], x.p[4][t], x.p[5][t], o.p[0][t], o.p[1][t],
                      o.p[2][t], o.p[3][t], o.p[4][t], o.p[5][t]);
  }
}

// The non-finite check of the output transform: the sum of o - o over its outputs, 0 when every
// one is finite, else NaN. Kept as kLanes independent sums: a single running sum is a chain
// that the compiler must keep in order (no reassociation without -ffast-math), so it folded
// each vector lane by lane, and that scalar fold took 13% of a 16-channel 28x28 layer's time.
// The order of the additions cannot change the answer (zeros, or a NaN), so any fold will do.
template <class T>
struct WinoCheck {
  static constexpr int kLanes = 16;
  T lanes[kLanes] = {};
  bool finite() const {
    T all = T(0);
    for (T v : lanes) all += v;
    return all == T(0);
  }
};

// out[j*os + t] = (A^T m_t)[j] with m_t = (in[b*is + t])_{b<6}: one 1-D pass of the output
// transform, its outputs' o - o added to `check`.
template <class T>
void winograd_at(const T* in, int64_t is, T* out, int64_t os, int64_t nt, WinoCheck<T>& check) {
  constexpr int L = WinoCheck<T>::kLanes;
  const RowSet<const T*, 6> m(in, is);
  const RowSet<T*, 4> o(out, os);
  auto one = [&](int64_t t, T& lane) {
    T a, b, c, d;
    CONVFORGE_WINO_AT(m.p[0][t], m.p[1][t], m.p[2][t], m.p[3][t], m.p[4][t], m.p[5][t], a, b, c, d);
    o.p[0][t] = a, o.p[1][t] = b, o.p[2][t] = c, o.p[3][t] = d;
    lane += (a - a) + (b - b) + (c - c) + (d - d);
  };
  int64_t t = 0;
  for (; t + L <= nt; t += L) {
#pragma GCC ivdep
    for (int l = 0; l < L; ++l) one(t + l, check.lanes[l]);
  }
  for (int l = 0; t < nt; ++t, ++l) one(t, check.lanes[l]);
}

// row[4u + j] = post(q[j*ldq + u] + bias) for the columns 4u + j < ow, u < n: one output row of
// n tiles from its 4 columns of values. With a residual row `res` (null: none), then
// row = post(row + res), the ReLU after the sum.
template <class T>
void scatter_tile_columns(const T* q, int64_t ldq, int64_t n, int64_t ow, T bias, bool relu, const T* res, T* row) {
  if (res != nullptr) {
    scatter_tile_columns(q, ldq, n, ow, bias, false, static_cast<const T*>(nullptr), row);
    add_residual_row(row, res, imin(4 * n, ow), relu);
    return;
  }
  const T* __restrict q0 = q;
  const T* __restrict q1 = q + ldq;
  const T* __restrict q2 = q + 2 * ldq;
  const T* __restrict q3 = q + 3 * ldq;
  T* __restrict y = row;
  const int64_t full = imin(n, ow / 4);  // tiles whose 4 columns are all inside the row
  if (relu) {
    for (int64_t u = 0; u < full; ++u) {
      y[4 * u] = relu_value(q0[u] + bias);
      y[4 * u + 1] = relu_value(q1[u] + bias);
      y[4 * u + 2] = relu_value(q2[u] + bias);
      y[4 * u + 3] = relu_value(q3[u] + bias);
    }
  } else {
    for (int64_t u = 0; u < full; ++u) {
      y[4 * u] = q0[u] + bias;
      y[4 * u + 1] = q1[u] + bias;
      y[4 * u + 2] = q2[u] + bias;
      y[4 * u + 3] = q3[u] + bias;
    }
  }
  for (int64_t u = full; u < n; ++u) {
    for (int64_t j = 0; j < 4 && 4 * u + j < ow; ++j) {
      const T v = q[j * ldq + u] + bias;
      y[4 * u + j] = relu ? relu_value(v) : v;
    }
  }
}

// ---- one row of tiles, gathered and transformed in one pass ---------------------------------

// h[b*ldh + u] = (B^T x_u)[b] for b < 6, u < n, with x_u = (row[col0 + 4u + m])_{m<6} the 6
// columns under tile u (zero outside [0, iw), all zero for a null padding row): the first 1-D
// pass of the input transform, for one image row under a run of tiles. `x6` is scratch of 6
// rows of pitch ldh.
template <class T>
void gather_transform_row(const T* row, int64_t iw, int64_t col0, int64_t n, T* x6, T* h, int64_t ldh) {
  gather_tile_columns(row, iw, col0, n, x6, ldh);
  winograd_bt(x6, ldh, h, ldh, n);
}

// Two runs of tiles whose transformed rows are consecutive (run b's start at h + na): gathered and
// transformed one after the other here; the AVX-512 form puts two short runs in one vector.
template <class T>
void gather_transform_rows2(const T* ra, int64_t ca, int64_t na, const T* rb, int64_t cb, int64_t nb, int64_t iw,
                            T* x6, T* h, int64_t ldh) {
  gather_transform_row(ra, iw, ca, na, x6, h, ldh);
  gather_transform_row(rb, iw, cb, nb, x6, h + na, ldh);
}

// row[4u + j] = post((A^T m_u)[j] + bias) for the columns 4u + j < ow, with m_u = (h[b*ldh +
// u])_{b<6}: the last 1-D pass of the output transform for one output row of n tiles, and the
// scatter into it (nothing stored for a null row, a row below the image). All 4n values, stored
// or not, go into `check` (winograd_at). `x4` is scratch of 4 rows of pitch ldh.
template <class T>
void transform_scatter_row(const T* h, int64_t ldh, int64_t n, int64_t ow, T bias, bool relu, const T* res, T* x4,
                           T* row, WinoCheck<T>& check) {
  winograd_at(h, ldh, x4, ldh, n, check);
  if (row != nullptr) scatter_tile_columns(x4, ldh, n, ow, bias, relu, res, row);
}

#if defined(__AVX512F__)
// Column picks for permute_transform_store: idx[m] = idx0 + m, made once, before a row's steps.
struct ColumnPicks {
  __m512i idx[6];
  explicit ColumnPicks(__m512i idx0) {
    idx[0] = idx0;
    for (int m = 1; m < 6; ++m) idx[m] = _mm512_add_epi32(idx[m - 1], _mm512_set1_epi32(1));
  }
};

// The 6 column vectors x_m = (lo | hi)[idx0 + m] of a step's tiles, transformed along the row
// (B^T) in registers, into the lanes `store` of the 6 rows of h (pitch ldh).
inline void permute_transform_store(__m512 lo, __m512 hi, const ColumnPicks& pick, __mmask16 store, float* h,
                                    int64_t ldh) {
  using T = float;
  const __m512 x0 = _mm512_permutex2var_ps(lo, pick.idx[0], hi), x1 = _mm512_permutex2var_ps(lo, pick.idx[1], hi);
  const __m512 x2 = _mm512_permutex2var_ps(lo, pick.idx[2], hi), x3 = _mm512_permutex2var_ps(lo, pick.idx[3], hi);
  const __m512 x4 = _mm512_permutex2var_ps(lo, pick.idx[4], hi), x5 = _mm512_permutex2var_ps(lo, pick.idx[5], hi);
  __m512 o0, o1, o2, o3, o4, o5;
  CONVFORGE_WINO_BT(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5);
  _mm512_mask_storeu_ps(h, store, o0);
  _mm512_mask_storeu_ps(h + ldh, store, o1);
  _mm512_mask_storeu_ps(h + 2 * ldh, store, o2);
  _mm512_mask_storeu_ps(h + 3 * ldh, store, o3);
  _mm512_mask_storeu_ps(h + 4 * ldh, store, o4);
  _mm512_mask_storeu_ps(h + 5 * ldh, store, o5);
}

// AVX-512: 7 tiles (30 columns) per step: two masked loads, one permute per column m, the row
// transform on the 6 column vectors in registers, 6 masked stores. (Gathering into x6 and
// transforming it in a second pass stored and reloaded all 36 rows.) A padding row is 6 masked
// stores of zeros per 16 tiles: the six memset calls it was (8 bytes each under a 7x7 image's 2
// tiles) drew 9% of the samples of a profile of a 64-channel 7x7 layer.
inline void gather_transform_row(const float* row, int64_t iw, int64_t col0, int64_t n, float* /*x6*/, float* h,
                                 int64_t ldh) {
  if (row == nullptr) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t u0 = 0; u0 < n; u0 += 16) {
      const __mmask16 lanes = n - u0 >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (n - u0)) - 1u);
      for (int b = 0; b < 6; ++b) _mm512_mask_storeu_ps(h + b * ldh + u0, lanes, zero);
    }
    return;
  }
  const ColumnPicks pick(_mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  for (int64_t u0 = 0; u0 < n; u0 += 7) {
    const int64_t c = imin(7, n - u0), first = col0 + 4 * u0;
    // Columns j < 4c + 2 from `first` that lie inside the row (masked-off lanes are not read).
    const int64_t j_lo = imin(imax(0, -first), 32), j_hi = imax(imin(4 * c + 2, iw - first), j_lo);
    const uint64_t bits = ((uint64_t{1} << j_hi) - 1) & ~((uint64_t{1} << j_lo) - 1);
    const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits), row + first);
    const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits >> 16), row + first + 16);
    permute_transform_store(lo, hi, pick, static_cast<__mmask16>((1u << c) - 1u), h + u0, ldh);
  }
}

// AVX-512: two runs of at most 3 tiles (14 columns each) in one step, one run per source vector
// of the permutes: under a 7x7 image every run is 2 tiles, which one run per step spread over 2
// of a vector's 16 lanes. The same operations lane by lane as gather_transform_row.
inline void gather_transform_rows2(const float* ra, int64_t ca, int64_t na, const float* rb, int64_t cb, int64_t nb,
                                   int64_t iw, float* x6, float* h, int64_t ldh) {
  if (na > 3 || nb > 3) {
    gather_transform_row(ra, iw, ca, na, x6, h, ldh);
    gather_transform_row(rb, iw, cb, nb, x6, h + na, ldh);
    return;
  }
  // Columns j < 4n + 2 from `first` inside [0, iw), zero elsewhere and for a padding row.
  auto load = [iw](const float* row, int64_t first, int64_t n) {
    if (row == nullptr) return _mm512_setzero_ps();
    const int64_t j_lo = imin(imax(0, -first), 16), j_hi = imax(imin(4 * n + 2, iw - first), j_lo);
    const uint32_t bits = ((uint32_t{1} << j_hi) - 1u) & ~((uint32_t{1} << j_lo) - 1u);
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits), row + first);
  };
  const __m512 lo = load(ra, ca, na), hi = load(rb, cb, nb);
  // Lane u < na: column 4u + m of lo; lane na + v: column 4v + m of hi (permute index 16 + 4v + m).
  const __m512i four_u = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
  const __mmask16 of_b = static_cast<__mmask16>(~((1u << na) - 1u));
  const ColumnPicks pick(_mm512_mask_add_epi32(four_u, of_b, four_u, _mm512_set1_epi32(static_cast<int>(16 - 4 * na))));
  permute_transform_store(lo, hi, pick, static_cast<__mmask16>((1u << (na + nb)) - 1u), h, ldh);
}

// AVX-512: 8 tiles (32 columns) per step: 6 masked loads, the row transform in registers, two
// permutes pair the 4 columns' vectors, two more interleave them, masked stores clip at ow.
inline void transform_scatter_row(const float* h, int64_t ldh, int64_t n, int64_t ow, float bias, bool relu,
                                  const float* res, float* /*x4*/, float* row, WinoCheck<float>& checks) {
  static_assert(WinoCheck<float>::kLanes == 16, "one vector of checks");
  using T = float;
  const __m512i pair = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  // Column l = 4u + j of a 16-column half: j < 2 from (q0|q1) lane 8j + u, else (q2|q3) 8(j-2) + u.
  const __m512i lo = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(4));
  const __m512 b = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
  __m512 check = zero;
  for (int64_t u0 = 0; u0 < n; u0 += 8) {
    const int64_t c = imin(8, n - u0);
    const __mmask16 in = static_cast<__mmask16>((1u << c) - 1u);
    const float* m = h + u0;
    const __m512 m0 = _mm512_maskz_loadu_ps(in, m), m1 = _mm512_maskz_loadu_ps(in, m + ldh);
    const __m512 m2 = _mm512_maskz_loadu_ps(in, m + 2 * ldh), m3 = _mm512_maskz_loadu_ps(in, m + 3 * ldh);
    const __m512 m4 = _mm512_maskz_loadu_ps(in, m + 4 * ldh), m5 = _mm512_maskz_loadu_ps(in, m + 5 * ldh);
    __m512 q0, q1, q2, q3;
    CONVFORGE_WINO_AT(m0, m1, m2, m3, m4, m5, q0, q1, q2, q3);
    check += (q0 - q0) + (q1 - q1) + (q2 - q2) + (q3 - q3);  // 0, or NaN from a non-finite value
    if (row == nullptr) continue;
    const __m512 q01 = _mm512_permutex2var_ps(q0, pair, q1), q23 = _mm512_permutex2var_ps(q2, pair, q3);
    const int64_t cols = imin(4 * c, ow - 4 * u0);  // > 0: a tile starts inside the row
    const uint32_t bits = cols >= 32 ? 0xFFFFFFFFu : (1u << cols) - 1u;
    __m512 y0 = _mm512_add_ps(_mm512_permutex2var_ps(q01, lo, q23), b);
    __m512 y1 = _mm512_add_ps(_mm512_permutex2var_ps(q01, hi, q23), b);
    if (res != nullptr) {  // the residual block's shortcut: (conv + bias) + res, then the ReLU
      y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits), res + 4 * u0));
      y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits >> 16), res + 4 * u0 + 16));
    }
    if (relu) {  // relu_value: keep y unless y <= 0 (false for NaN)
      y0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y0, zero, _CMP_NLE_UQ), y0);
      y1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y1, zero, _CMP_NLE_UQ), y1);
    }
    _mm512_mask_storeu_ps(row + 4 * u0, static_cast<__mmask16>(bits), y0);
    _mm512_mask_storeu_ps(row + 4 * u0 + 16, static_cast<__mmask16>(bits >> 16), y1);
  }
  // Into the caller's lanes: a horizontal sum here, per row of tiles, was a tenth of the row's work.
  _mm512_storeu_ps(checks.lanes, _mm512_add_ps(_mm512_loadu_ps(checks.lanes), check));
}
#endif

// A run of consecutive tiles of one tile row of one image, inside a block of tiles.
struct TileRun {
  int64_t n, ty, tx, count, offset;  // image, tile row, first tile column, tiles, index in block
};

// Calls visit(run) for the runs that make up tiles [t0, t0 + nt) of the batch.
template <class Visit>
void for_each_tile_run(const WinoPlan& p, int64_t t0, int64_t nt, Visit&& visit) {
  for (int64_t t = t0; t < t0 + nt;) {
    const int64_t n = t / p.per_image, in_image = t % p.per_image;
    const int64_t ty = in_image / p.tx, tx = in_image % p.tx;
    const int64_t count = imin(p.tx - tx, t0 + nt - t);
    visit(TileRun{n, ty, tx, count, t - t0});
    t += count;
  }
}

// ---- the channel-vector form (AVX-512, float32, whole vectors of channels) ----------------
// Where input and output channels fill whole 16-lane vectors, the transforms run along the
// channels instead of the tiles: a work item first transposes the image rows under its rows of
// tiles into a zero-padded pixel-major frame (one vector of 16 channels per pixel and channel
// block), so that each of a tile's 36 input values is one vector load, both 1-D passes of
// B^T d B are plain vector arithmetic in registers, and the output transform yields
// each output pixel's filters as one vector, bias added by one vector add. The transforms
// vectorised over tiles, on NCHW rows, took 62% of a 16-channel 28x28 layer's time (their
// de-interleaving permutes and masked runs of 7 tiles); the 36 matrix products, 23%.
// The products here have the filters along the lanes: M_f[tile][filter] = sum over channels c of
// V_f[tile][c] U_f[c][filter], each V value broadcast once per vector of filters (the direct
// form's micro-kernel shape: a row of tiles for its row of pixels). The outputs leave through
// 16x16 register transposes to NCHW rows, the residual and the ReLU applied on the way.
// Same transforms, same frequencies, same order of channel sums: the error bound of the header
// comment holds unchanged. Work items are equal runs of tiles (across images for small images,
// starting and ending inside a row of tiles where the count asks); every tile's arithmetic is
// the same in any grouping of tiles, so the split may follow the thread count and the bits
// still do not.
#if defined(__AVX512F__)
template <class T>
struct WinoChannelForm {
  static constexpr bool kCompiled = false;
};
template <>
struct WinoChannelForm<float> {
  static constexpr bool kCompiled = true;
};

// Whole vectors of channels, fewer than 128 on one side at least. From 128 x 128 the products
// dominate and the tile form's 12x32 micro-kernel, with all of U_f for a block of up to 256
// tiles, ran them faster: 64 images of 128 -> 128 channels at 28x28, one thread, 45.1 ms
// against 40.2 (16 images 10.5 against 9.4; 14x14 at 32 images 6.5 against 6.4), where below
// 128 the channel form won (64 -> 128 at 14x14 6.1-6.3 against 6.8-7.2 ms, 96 -> 96 6.9 against
// 7.4, 64 -> 64 at 28x28 10.4 against 12.0, 32 -> 128 3.3 against 4.2).
inline bool winograd_channels_applies(const ConvShape& s) {
  return s.ic % 16 == 0 && s.oc % 16 == 0 && imin(s.ic, s.oc) < 128;
}

// Tiles per work item at most (its transformed inputs and outputs: 36 x 96 x (IC + OC) values).
constexpr int64_t kWinoChannelTiles = 96;

// The tiles of a problem in work items (wino_item_tiles), and the room each item needs.
struct WinoChannelPlan {
  int64_t tx, ty, tile_rows;  // tiles per output row, rows of tiles per image, in the batch
  int64_t rows_per_item, items, tiles_per_item;
  int64_t oc_groups, oc_per_group;  // each block of rows split further by filters (groups of 16s)
  bool whole_rows;            // items of whole rows of tiles (wino_item_tiles)
  int64_t seg_rows;           // rows of tiles of one image in one item, at most
  int64_t fw, frame_rows;     // the frame: 4 tx + 2 pixels wide, 4 seg_rows + 2 rows
};

inline WinoChannelPlan wino_channel_plan(const ConvShape& s) {
  WinoChannelPlan p{};
  p.tx = ceil_div(s.ow, 4), p.ty = ceil_div(s.oh, 4), p.tile_rows = s.mb * p.ty;
  const int64_t per_tile = kWinoFreq * (s.ic + s.oc) * static_cast<int64_t>(sizeof(float));
  const int64_t tiles = imax(1, imin(kWinoChannelTiles, kWinoBlockBytes / per_tile));
  // At least two items per thread where the rows allow (a batch of 4 28x28 images was 3 items,
  // two of them on one thread), unless that leaves an item fewer than 32 tiles: every item reads
  // all the transformed weights (36 x IC x OC values, 590 KB at 64 channels), which a few tiles
  // hardly use (a 64-channel 7x7 image has 4). Each tile's arithmetic is the same in any
  // grouping of tiles and filters, so the split may follow the thread count without changing a
  // bit of the result.
  const int64_t threads = num_threads();
  const int64_t vectors = s.oc / 16;
  const int64_t per_thread = ceil_div(p.tile_rows, 2 * threads) * p.tx >= 32 ? 2 : 1;
  int64_t spread = ceil_div(p.tile_rows, per_thread * threads);
  // Fewer than 8 tiles a thread (one 7x7 image has 4) and filters enough to split: the filters
  // are split first and the rows only as far as that leaves threads idle. Split by rows, each
  // thread read all the transformed weights (590 KB at 64 channels) for its two tiles: the
  // example ResNet's one 7x7x64 image ran ~1.2x faster on two threads than on one, split by
  // filters ~1.4x. At 16 tiles (14x14x32, 147 KB of weights) the rows split won: each thread
  // then transforms only its own tiles' inputs (bench/plan_profile.py, 2-vCPU AMD EPYC).
  const bool filters_first = threads > 1 && p.tile_rows * p.tx < 8 * threads && vectors >= 2;
  if (filters_first) spread = ceil_div(p.tile_rows, ceil_div(threads, imin(threads, vectors)));
  p.rows_per_item = imax(1, imin(tiles / p.tx, spread));
  p.items = ceil_div(p.tile_rows, p.rows_per_item);
  p.rows_per_item = ceil_div(p.tile_rows, p.items);
  p.tiles_per_item = p.rows_per_item * p.tx;  // room: an item's tiles are at most this many
  // Fewer blocks of rows than threads (one small image): the filters are split too, so that
  // each thread reads only its filters' transformed weights (the input transform is repeated).
  p.oc_groups = p.items < threads ? imin(ceil_div(threads, p.items), vectors) : 1;
  p.oc_per_group = 16 * ceil_div(vectors, p.oc_groups);
  p.oc_groups = ceil_div(s.oc, p.oc_per_group);
  p.whole_rows = threads == 1 || p.items * p.oc_groups >= 8 * threads;
  // Not in whole rows, an item's tiles start anywhere in a row: they may reach into one row more.
  p.seg_rows = imin(p.rows_per_item + (p.whole_rows ? 0 : 1), p.ty);
  p.fw = 4 * p.tx + 2, p.frame_rows = 4 * p.seg_rows + 2;
  return p;
}

// Item i's tiles [t0, t1) of the batch's (image, tile row, tile column) order. With a few items
// a thread, the tiles split as equally as the items allow, not in whole rows of tiles: one
// 28x28 image has 7 rows of 7 tiles, and in whole rows one of two threads ran 4 rows (12.2-13.0
// us of a 16-channel layer) while the other ran 3 (8.6-9.4) and then waited; in 25 and 24 tiles
// each runs 9.4-10.4, and the layer in the example ResNet's plan 12.4-12.9 -> 11.6-12.3 us
// (bench/BEFORE_AFTER.md, sixteenth stop). With many, whole rows: a row split between two items
// costs each a part-row of outputs stored row by row, for no balance to gain (128 such images
// split so: 1.044 -> 1.077 ms in one run, within this host's drift).
inline void wino_item_tiles(const WinoChannelPlan& p, int64_t item, int64_t* t0, int64_t* t1) {
  if (p.whole_rows) {
    *t0 = imin(item * p.rows_per_item, p.tile_rows) * p.tx, *t1 = imin((item + 1) * p.rows_per_item, p.tile_rows) * p.tx;
    return;
  }
  const int64_t tiles = p.tile_rows * p.tx;
  *t0 = item * tiles / p.items, *t1 = (item + 1) * tiles / p.items;
}

// visit(image, first row, rows, first tile's column in the first row, end column in the last
// row, first tile) for the tiles [t0, t1) of a batch (ty rows of tx tiles an image), in segments
// of one image each, the tiles numbered from 0 at t0; returns the number of tiles.
template <class Visit>
int64_t for_each_tile_segment(int64_t t0, int64_t t1, int64_t ty, int64_t tx, Visit&& visit) {
  const int64_t per_image = ty * tx;
  for (int64_t t = t0; t < t1;) {
    const int64_t n = t / per_image, first = t % per_image, end = imin(per_image, first + (t1 - t));
    const int64_t r0 = first / tx, r_end = ceil_div(end, tx);
    visit(n, r0, r_end - r0, first % tx, end - (r_end - 1) * tx, t - t0);
    t += end - first;
  }
  return t1 - t0;
}

// visit(image, first row, rows, first tile) for the rows of tiles [g0, g1) of a batch (ty rows
// of tx tiles an image, numbered image by image) in segments of one image each, the tiles
// numbered from 0 at g0; returns the number of tiles.
template <class Visit>
int64_t for_each_image_segment(int64_t g0, int64_t g1, int64_t ty, int64_t tx, Visit&& visit) {
  int64_t tile = 0;
  for (int64_t g = g0; g < g1;) {
    const int64_t n = g / ty, r0 = g % ty, nr = imin(ty - r0, g1 - g);
    visit(n, r0, nr, tile);
    tile += nr * tx, g += nr;
  }
  return tile;
}

// Rows [fr0, fr0 + rows) of image x's zero-padded frame (frame row a = image row a - pt, column
// b = image column b - pl), pixel-major: frame[(a*fw + b)*IC + c], a counted from fr0. Image
// rows of 16 columns go through a register transpose per block of 16 channels; an image in
// channel blocks (`blocked`) is copied a vector a pixel and block.
inline void wino_fill_frame(const ConvShape& s, const float* x, int64_t fr0, int64_t rows, int64_t fw, float* frame,
                            bool blocked = false) {
  const int64_t IC = s.ic, HW = s.ih * s.iw;
  // The image columns inside the frame: [b_lo, b_hi) of the frame (the paddings may be crops).
  const int64_t b_lo = imax(0, s.pl), b_hi = imin(fw, s.iw + s.pl);
  auto zero = [&](float* p, int64_t pixels) {
    if (pixels > 0) std::memset(p, 0, sizeof(float) * static_cast<std::size_t>(pixels * IC));
  };
  for (int64_t a = 0; a < rows; ++a) {
    float* row = frame + a * fw * IC;
    const int64_t iy = fr0 + a - s.pt;
    if (iy < 0 || iy >= s.ih || b_lo >= b_hi) {
      zero(row, fw);
      continue;
    }
    zero(row, b_lo);
    zero(row + b_hi * IC, fw - b_hi);
    if (blocked) {  // channel blocks of 16 (ConvTensors::src_blocked): a pixel's 16 channels are one vector
      for (int64_t b = b_lo; b < b_hi; ++b) {
        const float* in = x + (iy * s.iw + b - s.pl) * 16;  // pixel (iy, b - pl) of block 0
        for (int64_t c0 = 0; c0 < IC; c0 += 16) _mm512_storeu_ps(row + b * IC + c0, _mm512_loadu_ps(in + c0 * HW));
      }
      continue;
    }
    for (int64_t x0 = b_lo - s.pl; x0 < b_hi - s.pl; x0 += 16) {
      const int64_t cols = imin(16, b_hi - s.pl - x0);
      const __mmask16 in = static_cast<__mmask16>((1u << cols) - 1u);
      for (int64_t c0 = 0; c0 < IC; c0 += 16) {
        __m512 r[16];
        const float* src = x + c0 * HW + iy * s.iw + x0;
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) r[k] = _mm512_maskz_loadu_ps(in, src + k * HW);
        transpose16x16(r);
        float* dst = row + (x0 + s.pl) * IC + c0;
        for (int64_t j = 0; j < cols; ++j) _mm512_storeu_ps(dst + j * IC, r[j]);
      }
    }
  }
}

// v[(a*6 + b)*ldf] = o[a] for a < 6: column b of a transformed tile, one vector per frequency.
inline void wino_store_column(float* v, int64_t b, int64_t ldf, __m512 o0, __m512 o1, __m512 o2, __m512 o3, __m512 o4,
                              __m512 o5) {
  _mm512_storeu_ps(v + (0 * 6 + b) * ldf, o0);
  _mm512_storeu_ps(v + (1 * 6 + b) * ldf, o1);
  _mm512_storeu_ps(v + (2 * 6 + b) * ldf, o2);
  _mm512_storeu_ps(v + (3 * 6 + b) * ldf, o3);
  _mm512_storeu_ps(v + (4 * 6 + b) * ldf, o4);
  _mm512_storeu_ps(v + (5 * 6 + b) * ldf, o5);
}

// v[(a*6 + b)*ldf] = (B^T d B)[a][b] for the 6x6 patch d[i][j] = d0[i*row + j*col]: one tile's
// input transform for one vector of 16 channels.
inline void wino_input_tile(const float* d0, int64_t row, int64_t col, float* v, int64_t ldf) {
  using T = float;
  __m512 t[6][6];
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    const float* d = d0 + i * row;
    const __m512 x0 = _mm512_loadu_ps(d), x1 = _mm512_loadu_ps(d + col), x2 = _mm512_loadu_ps(d + 2 * col);
    const __m512 x3 = _mm512_loadu_ps(d + 3 * col), x4 = _mm512_loadu_ps(d + 4 * col);
    const __m512 x5 = _mm512_loadu_ps(d + 5 * col);
    CONVFORGE_WINO_BT(x0, x1, x2, x3, x4, x5, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
  }
#pragma GCC unroll 6
  for (int b = 0; b < 6; ++b) {
    __m512 o0, o1, o2, o3, o4, o5;
    CONVFORGE_WINO_BT(t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b], o0, o1, o2, o3, o4, o5);
    wino_store_column(v, b, ldf, o0, o1, o2, o3, o4, o5);
  }
}

// m[t*ldm + 16k] = sum over channels c < IC of v[(c/16)*ldb + 16t + c%16] * u[c*ldu + 16k] for
// t < TB, k < KV: one frequency's product for TB tiles and KV vectors of filters, the sums in
// channel order. V is blocked by 16 channels ([block][tile][16]), so that the TB broadcasts
// of a channel are one base register and constant offsets (with one pointer per tile, a row
// of 24 tiles spilled its pointers and the loop ran at half the FMA rate).
template <int TB, int KV>
void wino_channel_gemm(const float* v, int64_t ldb, int64_t IC, const float* u, int64_t ldu, float* m, int64_t ldm) {
  __m512 acc[TB][KV];
#pragma GCC unroll 24
  for (int t = 0; t < TB; ++t) {
#pragma GCC unroll 4
    for (int k = 0; k < KV; ++k) acc[t][k] = _mm512_setzero_ps();
  }
  for (int64_t c0 = 0; c0 < IC; c0 += 16) {
    const float* vb = v + (c0 / 16) * ldb;
    const float* ub = u + c0 * ldu;
    for (int c = 0; c < 16; ++c) {
      __m512 w[KV];
#pragma GCC unroll 4
      for (int k = 0; k < KV; ++k) w[k] = _mm512_loadu_ps(ub + c * ldu + 16 * k);
#pragma GCC unroll 24
      for (int t = 0; t < TB; ++t) {
        const __m512 x = _mm512_set1_ps(vb[16 * t + c]);
#pragma GCC unroll 4
        for (int k = 0; k < KV; ++k) acc[t][k] = _mm512_fmadd_ps(x, w[k], acc[t][k]);
      }
    }
  }
#pragma GCC unroll 24
  for (int t = 0; t < TB; ++t) {
#pragma GCC unroll 4
    for (int k = 0; k < KV; ++k) _mm512_storeu_ps(m + t * ldm + 16 * k, acc[t][k]);
  }
}

// Tiles per call for KV vectors of filters: TB x KV accumulators, KV weight vectors and a
// broadcast within 32 registers.
constexpr int wino_channel_tiles(int kv) { return kv == 1 ? 24 : kv == 2 ? 12 : kv == 3 ? 8 : 6; }

// The products of all 36 frequencies for nt tiles and filters [o_lo, o_hi) (multiples of 16):
// m[f*ldmf + t*OC + o] from
// v[f*ldvf + ((c/16)*ntmax + t)*16 + c%16] and u[(f*IC + c)*OC + o].
inline void wino_channel_products(const float* v, int64_t ldvf, const float* u, int64_t IC, int64_t OC, int64_t o_lo,
                                  int64_t o_hi, int64_t nt, int64_t ntmax, float* m, int64_t ldmf) {
  for (int64_t f = 0; f < kWinoFreq; ++f) {
    const float* vf = v + f * ldvf;
    const float* uf = u + f * IC * OC;
    float* mf = m + f * ldmf;
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += 64) {
      const int kv = static_cast<int>(imin(4, (o_hi - o0) / 16));
      with_int<4>(kv, [&](auto kv_tag) {
        constexpr int KV = decltype(kv_tag)::value, TB = wino_channel_tiles(KV);
        // Calls of as equal sizes as the count allows (49 tiles: 16 + 16 + 17, not 24 + 24 + 1):
        // a call of one tile has one accumulator per filter vector, a chain of dependent FMAs at
        // a quarter of the FMA rate. One 28x28 image, 16 -> 16 channels: 15.7 -> 14.7 us on one
        // thread, 11.65 -> 11.15 on two (25 + 24 tiles; bench/BEFORE_AFTER.md, seventeenth stop).
        const int64_t calls = ceil_div(nt, int64_t{TB});
        for (int64_t k = 0; k < calls; ++k) {
          const int64_t t0 = nt * k / calls, tiles = nt * (k + 1) / calls - t0;
          with_int<TB>(static_cast<int>(tiles), [&](auto tb_tag) {
            wino_channel_gemm<decltype(tb_tag)::value, KV>(vf + 16 * t0, 16 * ntmax, IC, uf + o0, OC,
                                                           mf + t0 * OC + o0, OC);
          });
        }
      });
    }
  }
}

// One tile's output transform for one vector of 16 filters: y = A^T M A + bias, from
// m[(a*6 + b)*ldf]; the pixels (i, j) with i < rows, j < cols stored at y0[i*row + j*col]
// (plus res0[i*row + j*col] where res0 is not null, then the ReLU with `relu`: the order of
// wino_store_outputs' sums). All 16 values, stored or not, go into `check` (o - o: 0, or
// NaN from a non-finite value), before the bias as in the other forms.
inline void wino_output_tile(const float* m, int64_t ldf, __m512 bias, bool relu, int64_t rows, int64_t cols, float* y0,
                             int64_t row, int64_t col, __m512& check, const float* res0 = nullptr) {
  using T = float;
  __m512 q[4][6];
#pragma GCC unroll 6
  for (int b = 0; b < 6; ++b) {
    const __m512 m0 = _mm512_loadu_ps(m + (0 * 6 + b) * ldf), m1 = _mm512_loadu_ps(m + (1 * 6 + b) * ldf);
    const __m512 m2 = _mm512_loadu_ps(m + (2 * 6 + b) * ldf), m3 = _mm512_loadu_ps(m + (3 * 6 + b) * ldf);
    const __m512 m4 = _mm512_loadu_ps(m + (4 * 6 + b) * ldf), m5 = _mm512_loadu_ps(m + (5 * 6 + b) * ldf);
    CONVFORGE_WINO_AT(m0, m1, m2, m3, m4, m5, q[0][b], q[1][b], q[2][b], q[3][b]);
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    __m512 o[4];
    CONVFORGE_WINO_AT(q[i][0], q[i][1], q[i][2], q[i][3], q[i][4], q[i][5], o[0], o[1], o[2], o[3]);
    check += (o[0] - o[0]) + (o[1] - o[1]) + (o[2] - o[2]) + (o[3] - o[3]);
    if (i >= rows) continue;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      if (j >= cols) break;
      __m512 yv = _mm512_add_ps(o[j], bias);
      if (res0 != nullptr) yv = _mm512_add_ps(yv, _mm512_loadu_ps(res0 + i * row + j * col));
      if (relu) yv = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(yv, zero, _CMP_NLE_UQ), yv);  // relu_value
      _mm512_storeu_ps(y0 + i * row + j * col, yv);
    }
  }
}

// y[o*P + p] = post(yt[p*OC + o] + res[o*P + p]) for pixels p < np and channels o_lo <= o < o_hi: a
// segment's pixel-major outputs stored as NCHW rows through 16 x 16 register transposes, the
// last block masked; with a residual (null: none) added, then the ReLU when `relu`, on the
// way (store_pixel_major and a pass of add_residual_row, as the direct form does, read the
// rows back).
inline void wino_store_outputs(const float* yt, int64_t OC, int64_t o_lo, int64_t o_hi, int64_t np, float* y, int64_t P,
                               const float* res, bool relu) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t o0 = o_lo; o0 < o_hi; o0 += 16) {
    for (int64_t p0 = 0; p0 < np; p0 += 16) {
      const int64_t n = imin(16, np - p0);
      const __mmask16 lanes = static_cast<__mmask16>((1u << n) - 1u);
      __m512 r[16];
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) r[k] = k < n ? _mm512_loadu_ps(yt + (p0 + k) * OC + o0) : zero;
      transpose16x16(r);
#pragma GCC unroll 16
      for (int o = 0; o < 16; ++o) {
        const int64_t at = (o0 + o) * P + p0;
        __m512 v = r[o];
        if (res != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(lanes, res + at));
        if (relu) v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ), v);  // relu_value
        _mm512_mask_storeu_ps(y + at, lanes, v);
      }
    }
  }
}

// The forward problem s by Winograd in the channel-vector form (winograd_applies and
// winograd_channels_applies); the contract of conv2d_winograd.
// u[(f*IC + c)*OC + o]: the channel form's transformed weights, channels on `threads` threads
// (scratch: 63 x OC values per thread).
inline void wino_channel_weights(const ConvShape& s, const float* wei, bool transposed_flipped, int threads,
                                 float* scratch, float* u) {
  const int64_t IC = s.ic, OC = s.oc;
  parallel_for(threads, IC, [&](int64_t c, int tid) {
    const float* uc = winograd_transform_channel(s, wei, transposed_flipped, c, scratch + tid * 63 * OC);
    for (int64_t f = 0; f < kWinoFreq; ++f)
      std::memcpy(u + (f * IC + c) * OC, uc + f * OC, sizeof(float) * static_cast<std::size_t>(OC));
  });
}

// With src_blocked / dst_blocked (ConvTensors'), src / dst and the residual in channel blocks
// of 16: the frame filled by plain copies, the output transform's vectors stored where they go.
template <class UK>
bool conv2d_winograd_channels(const ConvShape& s, const float* src, const float* wei, bool transposed_flipped,
                              const float* bias, const float* residual, float* dst, const float* prepared,
                              bool src_blocked = false, bool dst_blocked = false) {
  const int64_t IC = s.ic, OC = s.oc, HW = s.ih * s.iw, OHW = s.oh * s.ow;
  const WinoChannelPlan p = wino_channel_plan(s);
  const int64_t ntmax = p.tiles_per_item;
  // One frequency's values a vector more than the tiles': 96 tiles of 32 channels are 12 KiB,
  // and 36 stores (or loads) 12 KiB apart all fall in one set of the L1 cache.
  const int64_t ldvf = ntmax * IC + 16, ldmf = ntmax * OC + 16;
  const int threads = plan_threads(p.items * p.oc_groups, s.flops());
  // The weights' transform on the items' threads: alone on one thread it was a tenth of a
  // 4-image 16-channel 28x28 layer on two, the other thread waiting.
  const int weight_threads = threads;

  const int64_t per_thread = carve_bytes<float>(kWinoFreq * ldvf) + carve_bytes<float>(kWinoFreq * ldmf) +
                             carve_bytes<float>(p.frame_rows * p.fw * IC) +
                             carve_bytes<float>(4 * p.seg_rows * s.ow * OC);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<float>(kWinoFreq * IC * OC) + carve_bytes<float>(threads * 63 * OC) +
      carve_bytes<int>(threads))))};
  float* u = ws.template take<float>(kWinoFreq * IC * OC);  // [frequency][channel][filter]
  float* scratch = ws.template take<float>(threads * 63 * OC);
  int* nonfinite = ws.template take<int>(threads);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  if (prepared != nullptr) u = const_cast<float*>(prepared);  // read only below
  else wino_channel_weights(s, wei, transposed_flipped, weight_threads, scratch, u);
  for (int i = 0; i < threads; ++i) nonfinite[i] = 0;
  // The ReLU goes after the residual (added to NCHW rows below), or into the output transform.
  const bool relu_in_transform = s.relu && residual == nullptr;

  parallel_for(threads, p.items * p.oc_groups, [&](int64_t item, int tid) {
    const int64_t tiles_item = item / p.oc_groups, o_lo = item % p.oc_groups * p.oc_per_group;
    const int64_t o_hi = imin(OC, o_lo + p.oc_per_group);
    int64_t t0 = 0, t1 = 0;
    wino_item_tiles(p, tiles_item, &t0, &t1);
    Carver tws{areas.of(tid)};
    float* v = tws.template take<float>(kWinoFreq * ldvf);  // [frequency][channel / 16][tile][16]
    float* m = tws.template take<float>(kWinoFreq * ldmf);  // [frequency][tile][filter]
    float* frame = tws.template take<float>(p.frame_rows * p.fw * IC);
    float* yt = tws.template take<float>(4 * p.seg_rows * s.ow * OC);  // a segment's outputs, pixel-major
    // The item's tiles in segments of one image each: rows r0 .. r0 + nr - 1, the first from
    // column xa, the last up to column xb; tile (r, x) of a segment is number r * tx + x - xa.
    auto for_each_segment = [&](auto&& visit) { return for_each_tile_segment(t0, t1, p.ty, p.tx, visit); };
    auto columns = [&](int64_t r, int64_t nr, int64_t xa, int64_t xb, int64_t* x0, int64_t* x1) {
      *x0 = r == 0 ? xa : 0, *x1 = r == nr - 1 ? xb : p.tx;
    };
    const int64_t nt = for_each_segment([&](int64_t n, int64_t r0, int64_t nr, int64_t xa, int64_t xb, int64_t tile) {
      wino_fill_frame(s, src + n * IC * HW, 4 * r0, 4 * nr + 2, p.fw, frame, src_blocked);
      for (int64_t r = 0; r < nr; ++r) {
        int64_t x0 = 0, x1 = 0;
        columns(r, nr, xa, xb, &x0, &x1);
        for (int64_t x = x0; x < x1; ++x)
          for (int64_t c0 = 0; c0 < IC; c0 += 16)
            wino_input_tile(frame + (4 * r * p.fw + 4 * x) * IC + c0, p.fw * IC, IC,
                            v + (c0 / 16 * ntmax + tile + r * p.tx + x - xa) * 16, ldvf);
      }
    });
    wino_channel_products(v, ldvf, u, IC, OC, o_lo, o_hi, nt, ntmax, m, ldmf);
    __m512 check = _mm512_setzero_ps();
    for_each_segment([&](int64_t n, int64_t r0, int64_t nr, int64_t xa, int64_t xb, int64_t tile) {
      const int64_t out_rows = imin(4 * nr, s.oh - 4 * r0);
      for (int64_t r = 0; r < nr; ++r) {
        int64_t x0 = 0, x1 = 0;
        columns(r, nr, xa, xb, &x0, &x1);
        for (int64_t x = x0; x < x1; ++x)
          for (int64_t o0 = o_lo; o0 < o_hi; o0 += 16) {
            const __m512 b = bias != nullptr ? _mm512_loadu_ps(bias + o0) : _mm512_setzero_ps();
            const float* mt = m + (tile + r * p.tx + x - xa) * OC + o0;
            const int64_t rows = imin(4, out_rows - 4 * r), cols = imin(4, s.ow - 4 * x);
            if (dst_blocked) {  // the tile's vectors straight to their pixels, the residual added there
              const int64_t at = n * OC * OHW + o0 * OHW + ((4 * (r0 + r)) * s.ow + 4 * x) * 16;
              wino_output_tile(mt, ldmf, b, s.relu, rows, cols, dst + at, s.ow * 16, 16, check,
                               residual != nullptr ? residual + at : nullptr);
            } else {
              wino_output_tile(mt, ldmf, b, relu_in_transform, rows, cols, yt + (4 * r * s.ow + 4 * x) * OC + o0,
                               s.ow * OC, OC, check);
            }
          }
      }
      if (dst_blocked) return;
      // Into NCHW: the rows of tiles the segment has whole as one run of pixels; a row it has
      // part of (its first or last), output row by output row, the part's columns only.
      float* y = dst + n * OC * OHW + 4 * r0 * s.ow;
      const float* res = residual != nullptr ? residual + n * OC * OHW + 4 * r0 * s.ow : nullptr;
      const bool relu_after_residual = s.relu && residual != nullptr;
      auto store = [&](int64_t pixel, int64_t count) {  // pixels [pixel, pixel + count) of the segment
        wino_store_outputs(yt + pixel * OC, OC, o_lo, o_hi, count, y + pixel, OHW, res != nullptr ? res + pixel : nullptr,
                           relu_after_residual);
      };
      const int64_t whole_lo = xa == 0 ? 0 : 1, whole_hi = xb == p.tx ? nr : nr - 1;
      if (whole_lo < whole_hi) {
        const int64_t lo = 4 * whole_lo * s.ow, hi = imin(4 * whole_hi, out_rows) * s.ow;
        if (hi > lo) store(lo, hi - lo);
      }
      for (int64_t r = 0; r < nr; ++r) {
        if (r >= whole_lo && r < whole_hi) continue;
        int64_t x0 = 0, x1 = 0;
        columns(r, nr, xa, xb, &x0, &x1);
        const int64_t c_lo = 4 * x0, c_hi = imin(4 * x1, s.ow);
        for (int64_t j = 4 * r; j < imin(4 * r + 4, out_rows); ++j) store(j * s.ow + c_lo, c_hi - c_lo);
      }
    });
    float lanes[16];
    _mm512_storeu_ps(lanes, check);
    float all = 0.0f;
    for (float l : lanes) all += l;
    if (all != 0.0f) nonfinite[tid] = 1;
  });

  for (int i = 0; i < threads; ++i)
    if (nonfinite[i] != 0) return false;
  return true;
}
#else
template <class T>
struct WinoChannelForm {
  static constexpr bool kCompiled = false;
};
inline bool winograd_channels_applies(const ConvShape&) { return false; }
template <class UK>
bool conv2d_winograd_channels(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                              bool transposed_flipped, const typename UK::T* bias, const typename UK::T* residual,
                              typename UK::T* dst, const typename UK::T* prepared, bool src_blocked = false,
                              bool dst_blocked = false);
template <class T>
void wino_channel_weights(const ConvShape& s, const T* wei, bool transposed_flipped, int threads, T* scratch, T* u);
#endif

// The transformed weights of a forward problem, as conv2d_winograd's `prepared`: 36 x IC x OC
// values in the layout of the form that runs it (the channel form's [frequency][channel][filter],
// else the tile form's packed panels); the form depends on the shape only, not on the batch.
inline int64_t winograd_prepared_size(const ConvShape& s) { return kWinoFreq * s.ic * s.oc; }
template <class UK>
void winograd_prepare_weights(const ConvShape& s, const typename UK::T* wei, typename UK::T* prepared) {
  using T = typename UK::T;
  const int threads = plan_threads(s.ic, 400.0 * static_cast<double>(s.ic * s.oc));  // ~400 flops a filter
  T* scratch = static_cast<T*>(thread_workspace(sizeof(T) * static_cast<std::size_t>(threads * 63 * s.oc)));
  if constexpr (WinoChannelForm<T>::kCompiled) {
    if (winograd_channels_applies(s)) {
      wino_channel_weights(s, wei, false, threads, scratch, prepared);
      return;
    }
  }
  winograd_pack_weights<UK>(s, wei, false, threads, scratch, prepared);
}

// The forward problem s by Winograd (s must satisfy winograd_applies). Returns false, having
// written dst only partly, when some output came out non-finite: the caller then recomputes
// all of dst with a direct form (see the header comment).
template <class UK>
bool conv2d_winograd(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei, bool transposed_flipped,
                     const typename UK::T* bias, const typename UK::T* residual, typename UK::T* dst,
                     const typename UK::T* prepared = nullptr) {
  using T = typename UK::T;
  if constexpr (WinoChannelForm<T>::kCompiled) {
    if (winograd_channels_applies(s))
      return conv2d_winograd_channels<UK>(s, src, wei, transposed_flipped, bias, residual, dst, prepared);
  }
  const int64_t IC = s.ic, OC = s.oc, HW = s.ih * s.iw, OHW = s.oh * s.ow;
  const WinoPlan p = wino_plan<UK>(s);
  const int64_t ldv = p.ldv, KC = imin(IC, kKc);
  const int threads = plan_threads(p.items, s.flops());

  const int64_t per_thread = carve_bytes<const T*>(IC) + carve_bytes<int64_t>(5 * p.nt) + 2 * carve_bytes<T>(kWinoFreq * ldv) +
                             carve_bytes<T>(kWinoFreq * IC * ldv) + carve_bytes<T>(kWinoFreq * OC * ldv);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(kWinoFreq * OC * IC) + carve_bytes<T>(threads * 63 * OC) + carve_bytes<int>(threads))))};
  T* pa = ws.template take<T>(kWinoFreq * OC * IC);
  T* scratch = ws.template take<T>(threads * 63 * OC);
  int* nonfinite = ws.template take<int>(threads);  // per thread: some output was not finite
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  if (prepared != nullptr) pa = const_cast<T*>(prepared);  // read only below
  else winograd_pack_weights<UK>(s, wei, transposed_flipped, threads, scratch, pa);
  for (int i = 0; i < threads; ++i) nonfinite[i] = 0;

  parallel_for(threads, p.items, [&](int64_t item, int tid) {
    const int64_t t0 = item * p.nt, nt = imin(p.nt, p.total - t0);
    Carver tws{areas.of(tid)};
    const T** brow = tws.template take<const T*>(IC);
    TileRun* runs = reinterpret_cast<TileRun*>(tws.template take<int64_t>(5 * p.nt));  // at most one per tile
    T* x6 = tws.template take<T>(kWinoFreq * ldv);      // scratch of the row passes (portable forms)
    T* h = tws.template take<T>(kWinoFreq * ldv);       // one 1-D pass done
    T* v = tws.template take<T>(kWinoFreq * IC * ldv);  // [frequency][channel][tile]
    T* m = tws.template take<T>(kWinoFreq * OC * ldv);  // [frequency][filter][tile]

    // The block's runs of tiles, found once for all its channels and filters (divisions).
    int64_t nruns = 0;
    for_each_tile_run(p, t0, nt, [&](const TileRun& run) { runs[nruns++] = run; });

    // Input transform, channel by channel: each image row under a run of tiles gathered and
    // transformed along the row (h[(k*6 + b)*ldv + t] for patch row k), then the columns.
    for (int64_t c = 0; c < IC; ++c) {
      // The image row k of a run's patches, or null for a padding row.
      auto row_of = [&](const TileRun& run, int64_t k) -> const T* {
        const int64_t iy = 4 * run.ty + k - s.pt;
        return iy >= 0 && iy < s.ih ? src + (run.n * IC + c) * HW + iy * s.iw : nullptr;
      };
      int64_t r = 0;
      // Narrow images (at most 3 tiles per row, up to 12 columns): two runs at a time (consecutive:
      // the second's transformed rows follow the first's).
      for (; p.tx <= 3 && r + 1 < nruns; r += 2) {
        const TileRun &a = runs[r], &b = runs[r + 1];
        for (int64_t k = 0; k < 6; ++k)
          gather_transform_rows2(row_of(a, k), 4 * a.tx - s.pl, a.count, row_of(b, k), 4 * b.tx - s.pl, b.count, s.iw,
                                 x6, h + k * 6 * ldv + a.offset, ldv);
      }
      for (; r < nruns; ++r) {
        const TileRun& a = runs[r];
        for (int64_t k = 0; k < 6; ++k)
          gather_transform_row(row_of(a, k), s.iw, 4 * a.tx - s.pl, a.count, x6, h + k * 6 * ldv + a.offset, ldv);
      }
      for (int64_t b = 0; b < 6; ++b) winograd_bt(h + b * ldv, 6 * ldv, v + (b * IC + c) * ldv, 6 * IC * ldv, nt);
    }

    // 36 products M_f[OC x nt] = U_f[OC x IC] . V_f[IC x nt].
    for (int64_t f = 0; f < kWinoFreq; ++f) {
      for (int64_t c = 0; c < IC; ++c) brow[c] = v + (f * IC + c) * ldv;
      for (int64_t k0 = 0; k0 < IC; k0 += KC)
        macro_kernel<UK>(pa + f * OC * IC, OC, 0, OC, k0, imin(KC, IC - k0), brow + k0, 0, nt, m + f * OC * ldv, ldv,
                         k0 > 0);
    }

    // Output transform, filter by filter: the columns over the whole block (h[(i*6 + b)*ldv + t]),
    // then per output row of each run the rows, scattered into dst. Every computed value is
    // checked, rows and columns past the image's edge included (an overflow there still sends
    // the problem to the direct forms, as before the fusion).
    WinoCheck<T> check;
    for (int64_t o = 0; o < OC; ++o) {
      for (int64_t b = 0; b < 6; ++b)
        winograd_at(m + (b * OC + o) * ldv, 6 * OC * ldv, h + b * ldv, 6 * ldv, nt, check);
      const T b = bias != nullptr ? bias[o] : T(0);
      for (int64_t r = 0; r < nruns; ++r) {
        const TileRun& run = runs[r];
        const int64_t at = (run.n * OC + o) * OHW + 4 * run.ty * s.ow + 4 * run.tx;
        T* y = dst + at;
        const T* res = residual != nullptr ? residual + at : nullptr;
        for (int64_t i = 0; i < 4; ++i) {
          const bool inside = 4 * run.ty + i < s.oh;
          transform_scatter_row(h + i * 6 * ldv + run.offset, ldv, run.count, s.ow - 4 * run.tx, b, s.relu,
                                inside && res != nullptr ? res + i * s.ow : nullptr, x6,
                                inside ? y + i * s.ow : nullptr, check);
        }
      }
    }
    if (!check.finite()) nonfinite[tid] = 1;
  });

  for (int i = 0; i < threads; ++i)
    if (nonfinite[i] != 0) return false;
  return true;
}

// The heuristic (the algorithm lists' `pays`): float32 only (see the accuracy note above), and
// only where the 36 matrix products dominate the transforms and the per-call costs:
//   - enough tiles in the batch (256, or 128 from 64 channels): the weights are transformed on
//     every call, and a block of tiles narrower than the micro-kernel's panel runs part empty;
//   - tiles that are mostly output: from 16 channels if at least 90% of the computed 4x4 tiles
//     is output (28x28, 56x56), from 32 if 70% (7x7 and 14x14 compute 8x8 and 16x16: 77%).
// It depends on the problem only, never on the thread count, so that a result has the same
// bits on any number of threads. Measured 2026-12-03 (AVX-512, 1 and 2 threads, direct-form
// time / Winograd time, forward and backward-data, unit-stride 'same' C -> C):
//   batch 128: 16ch 28x28 1.19/1.23 (1T) 1.14/1.53 (2T); 32ch 14x14 1.07/1.18, 1.13/1.42;
//              64ch 7x7 1.13/1.11, 1.56/1.58; 128ch 7x7 1.64/1.61, 1.81/1.74;
//              16ch 14x14 0.86/0.89, 1.02/1.01 (not taken: 77% output, 16 channels);
//   batch 32:  16ch 28x28 1.27/1.29, 1.56/1.62; 64ch 7x7 (128 tiles) 1.19/1.17, 1.24/1.09;
//   batch 8:   32ch 14x14 (128 tiles) 1.07/1.01, 0.85/0.82; 128ch 7x7 (32 tiles) 1.34/1.39, 0.77/0.74;
//   batch 1:   64ch 7x7 0.39/0.39, 0.55/0.51; 16ch 56x56 (196 tiles) 1.22/1.20, 0.92/0.82.
// With the transformed weights kept by the caller (an inference plan, `kept_weights`), the
// channel form pays from 4 tiles: measured 2026-12-04, direct / Winograd with kept weights,
// forward, 1 / 2 threads, 1 image unless said: 64ch 7x7 (4 tiles) 1.53/1.11, 2 images 2.48/2.84;
// 32ch 7x7 1.21/1.19; 96ch 7x7 1.01/1.32; 16ch 14x14 1.41/1.00; 32ch 14x14 1.89/1.63; 64ch 14x14
// 2.21/1.72; 16ch 28x28 1.58/2.03; 16ch 56x56 1.78/1.28; 48ch 4x4 (1 tile) 2.12/2.16 (not taken:
// fewer tiles than 4 were tried on this one shape only).
template <class T>
bool winograd_pays(const ConvShape& s, bool kept_weights) {
  const int64_t channels = imin(s.ic, s.oc);
  const int64_t tiles = s.mb * ceil_div(s.oh, 4) * ceil_div(s.ow, 4);
  const int64_t output = 10 * s.oh * s.ow, computed = 16 * ceil_div(s.oh, 4) * ceil_div(s.ow, 4);
  if constexpr (WinoChannelForm<T>::kCompiled) {
    if (winograd_channels_applies(s)) return tiles >= (kept_weights ? 4 : 128) && output >= 7 * computed;
  }
  const bool mostly_output = (channels >= 16 && output >= 9 * computed) || (channels >= 32 && output >= 7 * computed);
  return sizeof(T) == 4 && tiles >= (channels >= 64 ? 128 : 256) && mostly_output;
}

#undef CONVFORGE_WINO_BT
#undef CONVFORGE_WINO_AT

}  // namespace
}  // namespace convforge
