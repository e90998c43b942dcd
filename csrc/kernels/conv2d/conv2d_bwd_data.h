// conv2d backward-data: the unit-stride correlation form, the tap-wise form for 'valid'
// convolutions, and col2im for any stride (the direct form is in conv2d_direct.h).
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
#pragma once

#include "kernels/conv2d/conv2d_common.h"

namespace convforge {
namespace {

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
      carve_bytes<T>(K * M) + carve_bytes<int64_t>(K))))};
  T* pa = ws.template take<T>(K * M);
  int64_t* tap_off = ws.template take<int64_t>(K);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  tap_offsets(s.oc, s.kh, s.kw, s.dh, s.dw, win_rows, pitch, tap_off);
  // A[c][(o, r', q')] = w[o][c][KH-1-r'][KW-1-q']
  auto elem = [&](int64_t c, int64_t k) {
    const int64_t o = k / KHW, rq = k % KHW, r = s.kh - 1 - rq / s.kw, q = s.kw - 1 - rq % s.kw;
    return wei[((o * s.ic + c) * s.kh + r) * s.kw + q];
  };
  for (int64_t k0 = 0; k0 < K; k0 += KC) pack_a<T, UK::MR>(elem, M, 0, M, k0, imin(KC, K - k0), pa);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, Pp - j0);
    Carver tws{areas.of(tid)};
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
// dropped columns). Takes unit-stride problems without padding (bwd_data_tapwise_applies); the
// default choice takes it where bwd_data_tapwise_pays.
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
      thread_workspace(static_cast<std::size_t>(carve_bytes<T>(KHW * M * K))))};
  T* pa = ws.template take<T>(KHW * M * K);  // tap t's A (IC x OC, packed) at pa + t*M*K
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  for (int64_t t = 0; t < KHW; ++t)
    for (int64_t k0 = 0; k0 < K; k0 += KC)
      pack_a<T, UK::MR>([&](int64_t c, int64_t o) { return wei[(o * s.ic + c) * KHW + t]; }, M, 0, M, k0,
                        imin(KC, K - k0), pa + t * M * K);

  parallel_for(threads, s.mb, [&](int64_t n, int tid) {
    Carver tws{areas.of(tid)};
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

inline bool bwd_data_tapwise_applies(const ConvShape& s) {
  return s.sh == 1 && s.sw == 1 && s.pt + s.pb + s.pl + s.pr == 0;
}

// The tap-wise form computes (oh-1)*iw + ow columns per tap and product, the correlation form
// (ih-1)*(iw + (KW-1)*dw) + iw; the tap-wise one also loads and stores its accumulators once per
// tap, so it is taken when it saves a quarter of the columns or more, and with images enough to
// keep threads busy (one item each). The choice depends on the problem alone.
inline bool bwd_data_tapwise_pays(const ConvShape& s) {
  if (!bwd_data_tapwise_applies(s) || s.mb < 8) return false;
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
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(K * OC))))};
  T* pa = ws.template take<T>(K * OC);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);

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
    Carver tws{areas.of(tid)};
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

}  // namespace
}  // namespace convforge
