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
// neighbours' a plane away. The transforms are therefore vectorised over tiles, not channels
// (that would need a transpose to NHWC first): tiles are numbered across the whole batch
// (image, tile row, tile column), a work item is a block of consecutive tiles, and the
// transformed values of a block are stored [frequency][channel][tile], which is exactly the
// layout the matrix products read (one B row per channel) and write (one C row per filter).
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
// 36 x OC x IC values (4x the weights; twice that while they are packed).
//
// Determinism: the block size depends on the problem only, each output is written by the one
// item that owns its tile, and every sum runs in a fixed order, so the result is the same for
// any number of threads.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/conv2d/conv2d_impl.h"
#include "kernels/conv2d/conv2d_winograd_mode.h"

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

// u[a*6 + b] = (G g G^T)[a][b] for the 3x3 kernel g (row-major).
template <class T>
void winograd_kernel_transform(const T* g, T* u) {
  T t[6][3];  // G g
  for (int q = 0; q < 3; ++q) {
    const T g0 = g[q], g1 = g[3 + q], g2 = g[6 + q];
    t[0][q] = g0 / T(4);
    t[1][q] = -(g0 + g1 + g2) / T(6);
    t[2][q] = -(g0 - g1 + g2) / T(6);
    t[3][q] = g0 / T(24) + g1 / T(12) + g2 / T(6);
    t[4][q] = g0 / T(24) - g1 / T(12) + g2 / T(6);
    t[5][q] = g2;
  }
  for (int a = 0; a < 6; ++a) {
    const T g0 = t[a][0], g1 = t[a][1], g2 = t[a][2];
    T* r = u + a * 6;
    r[0] = g0 / T(4);
    r[1] = -(g0 + g1 + g2) / T(6);
    r[2] = -(g0 - g1 + g2) / T(6);
    r[3] = g0 / T(24) + g1 / T(12) + g2 / T(6);
    r[4] = g0 / T(24) - g1 / T(12) + g2 / T(6);
    r[5] = g2;
  }
}

// The transformed weights, packed for macro_kernel: frequency f's A panels (OC x IC) at
// pa + f*OC*IC. `wei` is OIHW, or with `transposed_flipped` the kernel of the backward problem
// (filter o's tap (c, r, q) at wei[c][o][2-r][2-q], as pack_filters_per_tap). `raw` is scratch
// of 36 x OC x IC. This is the part of a call that depends on the weights alone: a caller that
// keeps the weights fixed across calls could keep `pa`.
template <class UK>
void winograd_pack_weights(const ConvShape& s, const typename UK::T* wei, bool transposed_flipped, int threads,
                           typename UK::T* raw, typename UK::T* pa) {
  using T = typename UK::T;
  const int64_t OC = s.oc, IC = s.ic, KC = imin(IC, kKc);
  parallel_for(threads, OC, [&](int64_t o, int) {
    T g[9], u[kWinoFreq];
    for (int64_t c = 0; c < IC; ++c) {
      if (transposed_flipped) {
        const T* f = wei + (c * OC + o) * 9;
        for (int k = 0; k < 9; ++k) g[k] = f[8 - k];
      } else {
        std::memcpy(g, wei + (o * IC + c) * 9, sizeof g);
      }
      winograd_kernel_transform(g, u);
      for (int64_t f = 0; f < kWinoFreq; ++f) raw[(f * OC + o) * IC + c] = u[f];
    }
  });
  parallel_for(threads, kWinoFreq, [&](int64_t f, int) {
    const T* uf = raw + f * OC * IC;
    for (int64_t k0 = 0; k0 < IC; k0 += KC)
      pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return uf[i * IC + k]; }, OC, 0, OC, k0, imin(KC, IC - k0),
                        pa + f * OC * IC);
  });
}

// ---- input transform -------------------------------------------------------------------------

// ph[r*ldp + u] = row[col0 + 4u + r] for r < 4, u < n, zero where the column is outside
// [0, iw) or row is null (a padding row).
template <class T>
void deinterleave4(const T* row, int64_t iw, int64_t col0, int64_t n, T* __restrict ph, int64_t ldp) {
  if (row == nullptr) {
    for (int r = 0; r < 4; ++r) std::memset(ph + r * ldp, 0, sizeof(T) * static_cast<std::size_t>(n));
    return;
  }
  // Entries whose 4 columns all lie inside the row: [u_lo, u_hi).
  const int64_t u_lo = imin(col0 >= 0 ? 0 : ceil_div(-col0, 4), n);
  const int64_t last = iw - 4 - col0;  // 4u <= last
  const int64_t u_hi = imax(imin(last >= 0 ? last / 4 + 1 : 0, n), u_lo);
  auto edge = [&](int64_t u) {
    for (int r = 0; r < 4; ++r) {
      const int64_t col = col0 + 4 * u + r;
      ph[r * ldp + u] = col >= 0 && col < iw ? row[col] : T(0);
    }
  };
  for (int64_t u = 0; u < u_lo; ++u) edge(u);
  const T* __restrict src = row + col0;
  T* __restrict p0 = ph;
  T* __restrict p1 = ph + ldp;
  T* __restrict p2 = ph + 2 * ldp;
  T* __restrict p3 = ph + 3 * ldp;
  for (int64_t u = u_lo; u < u_hi; ++u) {
    p0[u] = src[4 * u];
    p1[u] = src[4 * u + 1];
    p2[u] = src[4 * u + 2];
    p3[u] = src[4 * u + 3];
  }
  for (int64_t u = u_hi; u < n; ++u) edge(u);
}

// The 1-D input transform B^T x of 6-vectors x0..x5, 6 outputs.
#define CONVFORGE_WINO_BT(x0, x1, x2, x3, x4, x5, o0, o1, o2, o3, o4, o5) \
  do {                                                                    \
    const T a_ = (x4) - T(4) * (x2), b_ = (x3) - T(4) * (x1);             \
    const T c_ = (x4) - (x2), d_ = T(2) * ((x3) - (x1));                  \
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
    const T s1_ = (m1) + (m2), d1_ = (m1) - (m2);                 \
    const T s2_ = (m3) + (m4), d2_ = (m3) - (m4);                 \
    o0 = (m0) + s1_ + s2_;                                        \
    o1 = d1_ + T(2) * d2_;                                        \
    o2 = s1_ + T(4) * s2_;                                        \
    o3 = d1_ + T(8) * d2_ + (m5);                                 \
  } while (0)

// Row transform of one input row for n tiles: h[b*ldh + u] = (B^T x_u)[b], x_u the 6 columns
// 4u..4u+5 of the de-interleaved row ph (4 phases of n + 1 entries at pitch ldp).
template <class T>
void winograd_row_in(const T* ph, int64_t ldp, int64_t n, T* h, int64_t ldh) {
  const T* __restrict r0 = ph;
  const T* __restrict r1 = ph + ldp;
  const T* __restrict r2 = ph + 2 * ldp;
  const T* __restrict r3 = ph + 3 * ldp;
  T* __restrict h0 = h;
  T* __restrict h1 = h + ldh;
  T* __restrict h2 = h + 2 * ldh;
  T* __restrict h3 = h + 3 * ldh;
  T* __restrict h4 = h + 4 * ldh;
  T* __restrict h5 = h + 5 * ldh;
  for (int64_t u = 0; u < n; ++u) {
    CONVFORGE_WINO_BT(r0[u], r1[u], r2[u], r3[u], r0[u + 1], r1[u + 1], h0[u], h1[u], h2[u], h3[u], h4[u], h5[u]);
  }
}

// Column transform over nt tiles: v[(a*6 + b)*ldv_f + t] = sum_k B^T[a][k] h[(k*6 + b)*ldh + t],
// with ldv_f the distance between frequencies in v.
template <class T>
void winograd_col_in(const T* h, int64_t ldh, int64_t nt, T* v, int64_t ldv_f) {
  for (int64_t b = 0; b < 6; ++b) {
    const T* __restrict x0 = h + (0 * 6 + b) * ldh;
    const T* __restrict x1 = h + (1 * 6 + b) * ldh;
    const T* __restrict x2 = h + (2 * 6 + b) * ldh;
    const T* __restrict x3 = h + (3 * 6 + b) * ldh;
    const T* __restrict x4 = h + (4 * 6 + b) * ldh;
    const T* __restrict x5 = h + (5 * 6 + b) * ldh;
    T* __restrict v0 = v + (0 * 6 + b) * ldv_f;
    T* __restrict v1 = v + (1 * 6 + b) * ldv_f;
    T* __restrict v2 = v + (2 * 6 + b) * ldv_f;
    T* __restrict v3 = v + (3 * 6 + b) * ldv_f;
    T* __restrict v4 = v + (4 * 6 + b) * ldv_f;
    T* __restrict v5 = v + (5 * 6 + b) * ldv_f;
    for (int64_t t = 0; t < nt; ++t) {
      CONVFORGE_WINO_BT(x0[t], x1[t], x2[t], x3[t], x4[t], x5[t], v0[t], v1[t], v2[t], v3[t], v4[t], v5[t]);
    }
  }
}

// ---- output transform ------------------------------------------------------------------------

// Column transform over nt tiles: p[(i*6 + b)*ldp + t] = sum_a A^T[i][a] m[(a*6 + b)*ldm_f + t].
template <class T>
void winograd_col_out(const T* m, int64_t ldm_f, int64_t nt, T* p, int64_t ldp) {
  for (int64_t b = 0; b < 6; ++b) {
    const T* __restrict m0 = m + (0 * 6 + b) * ldm_f;
    const T* __restrict m1 = m + (1 * 6 + b) * ldm_f;
    const T* __restrict m2 = m + (2 * 6 + b) * ldm_f;
    const T* __restrict m3 = m + (3 * 6 + b) * ldm_f;
    const T* __restrict m4 = m + (4 * 6 + b) * ldm_f;
    const T* __restrict m5 = m + (5 * 6 + b) * ldm_f;
    T* __restrict p0 = p + (0 * 6 + b) * ldp;
    T* __restrict p1 = p + (1 * 6 + b) * ldp;
    T* __restrict p2 = p + (2 * 6 + b) * ldp;
    T* __restrict p3 = p + (3 * 6 + b) * ldp;
    for (int64_t t = 0; t < nt; ++t) {
      CONVFORGE_WINO_AT(m0[t], m1[t], m2[t], m3[t], m4[t], m5[t], p0[t], p1[t], p2[t], p3[t]);
    }
  }
}

// Row transform of output row i of n tiles into 4 phases: q[j*ldq + u] = (A^T p_u)[j] with
// p_u = p[(i*6 + b)*ldp + u] for b < 6. Returns the sum of q - q: 0 when every value is finite.
template <class T>
T winograd_row_out(const T* p, int64_t ldp, int64_t n, T* q, int64_t ldq) {
  const T* __restrict m0 = p;
  const T* __restrict m1 = p + ldp;
  const T* __restrict m2 = p + 2 * ldp;
  const T* __restrict m3 = p + 3 * ldp;
  const T* __restrict m4 = p + 4 * ldp;
  const T* __restrict m5 = p + 5 * ldp;
  T* __restrict q0 = q;
  T* __restrict q1 = q + ldq;
  T* __restrict q2 = q + 2 * ldq;
  T* __restrict q3 = q + 3 * ldq;
  T check = T(0);
  for (int64_t u = 0; u < n; ++u) {
    T o0, o1, o2, o3;
    CONVFORGE_WINO_AT(m0[u], m1[u], m2[u], m3[u], m4[u], m5[u], o0, o1, o2, o3);
    q0[u] = o0, q1[u] = o1, q2[u] = o2, q3[u] = o3;
    check += (o0 - o0) + (o1 - o1) + (o2 - o2) + (o3 - o3);
  }
  return check;
}

// row[4u + j] = post(q[j*ldq + u] + bias) for the columns 4u + j < ow, u < n.
template <class T>
void winograd_interleave_row(const T* q, int64_t ldq, int64_t n, int64_t ow, T bias, bool relu, T* row) {
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

// The forward problem s by Winograd (s must satisfy winograd_applies). Returns false, having
// written dst only partly, when some output came out non-finite: the caller then recomputes
// all of dst with a direct form (see the header comment).
template <class UK>
bool conv2d_winograd(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei, bool transposed_flipped,
                     const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  const int64_t IC = s.ic, OC = s.oc, HW = s.ih * s.iw, OHW = s.oh * s.ow;
  const WinoPlan p = wino_plan<UK>(s);
  const int64_t ldv = p.ldv, KC = imin(IC, kKc);
  const int64_t ldp = p.tx + 1;  // entries per phase of a de-interleaved row (n + 1 for n tiles)
  const int threads = plan_threads(p.items, s.flops());

  const int64_t per_thread = carve_bytes<const T*>(IC) + carve_bytes<T>(6 * 4 * ldp) +
                             carve_bytes<T>(kWinoFreq * ldv) + carve_bytes<T>(kWinoFreq * IC * ldv) +
                             carve_bytes<T>(kWinoFreq * OC * ldv) + carve_bytes<T>(4 * ldp);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      2 * carve_bytes<T>(kWinoFreq * OC * IC) + carve_bytes<T>(threads) + threads * per_thread)))};
  T* raw = ws.template take<T>(kWinoFreq * OC * IC);
  T* pa = ws.template take<T>(kWinoFreq * OC * IC);
  T* checks = ws.template take<T>(threads);
  char* thread_area = ws.p;
  winograd_pack_weights<UK>(s, wei, transposed_flipped, threads, raw, pa);
  for (int i = 0; i < threads; ++i) checks[i] = T(0);

  parallel_for(threads, p.items, [&](int64_t item, int tid) {
    const int64_t t0 = item * p.nt, nt = imin(p.nt, p.total - t0);
    Carver tws{thread_area + tid * per_thread};
    const T** brow = tws.template take<const T*>(IC);
    T* ph = tws.template take<T>(6 * 4 * ldp);          // 6 rows x 4 phases
    T* h = tws.template take<T>(kWinoFreq * ldv);       // row-transformed inputs / column-transformed outputs
    T* v = tws.template take<T>(kWinoFreq * IC * ldv);  // [frequency][channel][tile]
    T* m = tws.template take<T>(kWinoFreq * OC * ldv);  // [frequency][filter][tile]
    T* q = tws.template take<T>(4 * ldp);               // one output row, 4 phases

    // Input transform, channel by channel.
    for (int64_t c = 0; c < IC; ++c) {
      for_each_tile_run(p, t0, nt, [&](const TileRun& run) {
        const T* x = src + (run.n * IC + c) * HW;
        for (int64_t k = 0; k < 6; ++k) {
          const int64_t iy = 4 * run.ty + k - s.pt;
          deinterleave4<T>(iy >= 0 && iy < s.ih ? x + iy * s.iw : nullptr, s.iw, 4 * run.tx - s.pl, run.count + 1,
                           ph + k * 4 * ldp, ldp);
          winograd_row_in(ph + k * 4 * ldp, ldp, run.count, h + k * 6 * ldv + run.offset, ldv);
        }
      });
      winograd_col_in(h, ldv, nt, v + c * ldv, IC * ldv);
    }

    // 36 products M_f[OC x nt] = U_f[OC x IC] . V_f[IC x nt].
    for (int64_t f = 0; f < kWinoFreq; ++f) {
      for (int64_t c = 0; c < IC; ++c) brow[c] = v + (f * IC + c) * ldv;
      for (int64_t k0 = 0; k0 < IC; k0 += KC)
        macro_kernel<UK>(pa + f * OC * IC, OC, 0, OC, k0, imin(KC, IC - k0), brow + k0, 0, nt, m + f * OC * ldv, ldv,
                         k0 > 0);
    }

    // Output transform, filter by filter.
    T check = T(0);
    for (int64_t o = 0; o < OC; ++o) {
      winograd_col_out(m + o * ldv, OC * ldv, nt, h, ldv);
      const T b = bias != nullptr ? bias[o] : T(0);
      for_each_tile_run(p, t0, nt, [&](const TileRun& run) {
        T* y = dst + (run.n * OC + o) * OHW;
        for (int64_t i = 0; i < 4; ++i) {
          const int64_t oy = 4 * run.ty + i;
          if (oy >= s.oh) break;
          check += winograd_row_out(h + i * 6 * ldv + run.offset, ldv, run.count, q, ldp);
          winograd_interleave_row(q, ldp, run.count, s.ow - 4 * run.tx, b, s.relu, y + oy * s.ow + 4 * run.tx);
        }
      });
    }
    checks[tid] += check;
  });

  T all = T(0);
  for (int i = 0; i < threads; ++i) all += checks[i];
  return all == T(0);
}

// The heuristic: which 3x3 unit-stride problems Winograd takes by default. Only float32 (see
// the accuracy note above), and only where the matrix products dominate the transforms.
template <class UK>
bool winograd_pays(const ConvShape& s) {
  return sizeof(typename UK::T) == 4 && s.ic >= 16 && s.oc >= 16;
}

// Runs the Winograd form if the mode and heuristic choose it for s; false when it did not run
// or met a non-finite value (then dst must be written by another form).
template <class UK>
bool conv2d_fwd_winograd_hook(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                              bool transposed_flipped, const typename UK::T* bias, typename UK::T* dst) {
  if (!winograd_applies(s)) return false;
  switch (winograd_mode()) {
    case WinogradMode::never: return false;
    case WinogradMode::automatic:
      if (!winograd_pays<UK>(s)) return false;
      break;
    case WinogradMode::always: break;
  }
  return conv2d_winograd<UK>(s, src, wei, transposed_flipped, bias, dst);
}

#undef CONVFORGE_WINO_BT
#undef CONVFORGE_WINO_AT

}  // namespace
}  // namespace convforge
