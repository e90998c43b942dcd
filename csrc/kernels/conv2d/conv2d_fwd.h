// conv2d forward as blocked matrix products: the unit-stride (padded-pitch) form, the im2col
// form for any stride, and the pixels form for layers with few filters.
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
#pragma once

#include "kernels/conv2d/conv2d_common.h"

namespace convforge {
namespace {

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
      carve_bytes<T>(K * M) + carve_bytes<int64_t>(K))))};
  T* pa = ws.template take<T>(K * M);
  int64_t* tap_off = ws.template take<int64_t>(K);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  for (int64_t k0 = 0; k0 < K; k0 += KC)
    pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return wei[i * K + k]; }, M, 0, M, k0, imin(KC, K - k0), pa);
  tap_offsets(s.ic, s.kh, s.kw, s.dh, s.dw, padded ? win_rows : s.ih, pitch, tap_off);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, Pp - j0);
    Carver tws{areas.of(tid)};
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
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(K * M))))};
  T* pa = ws.template take<T>(K * M);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  for (int64_t k0 = 0; k0 < K; k0 += KC)
    pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return wei[i * K + k]; }, M, 0, M, k0, imin(KC, K - k0), pa);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, P - j0);
    const T* x = src + n * s.ic * HW;
    T* y = dst + n * M * P + j0;
    Carver tws{areas.of(tid)};
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


constexpr int kPixelsMaxOC = 8;   // filters per pixels kernel call
constexpr int kPixelsSlots = 4;   // vectors of output pixels per pixels kernel call, at most

// Vectors of output pixels per call for `filters` filters: at most 24 accumulators (6 filters
// x 4 slots, 8 x 3), leaving registers for the slots' input vectors and a broadcast weight.
constexpr int pixels_slots(int filters) { return filters <= 6 ? 4 : 3; }

// Unit-stride forward with the output pixels along the vector lanes, for layers with few
// filters (LeNet's C1: 6 filters of 1x5x5) or few taps (a 1- or 3-channel stem: 9 or 27). The
// pitch form's micro-kernel gives its 12 rows to 6 filters and reloads its accumulators every
// 25 taps; here each slot of 16 pixels of an output row keeps its filters' sums in registers
// for the whole reduction, each tap one load of 16 input values per slot and one broadcast
// weight per filter, and writes NCHW rows as it goes (no transpose). More than 8 filters run
// in groups of at most 8 (16 -> 8 + 8), each group's taps packed [tap][filter]. One work item
// per image; every output sums its taps in order (channel, kernel row, kernel column).
// With dst_blocked (ConvTensors'; UK::kDirectLanes 16): dst in channel blocks of 16, each band
// computed kPixelsBlockRows rows at a time into NCHW rows of the thread's (in L1) and transposed
// into place. (Through an NCHW copy of the whole image, a one-image 1 -> 16 stem at 28x28 took
// 4.3-4.9 us against 3.1-3.7 writing NCHW.)
template <class UK>
void conv2d_fwd_pixels(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                       const typename UK::T* bias, typename UK::T* dst, bool dst_blocked = false) {
  using T = typename UK::T;
  constexpr int64_t L = UK::kDirectLanes;
  const int64_t K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw, OC = s.oc;
  const bool padded = s.pt + s.pb + s.pl + s.pr > 0;
  const int64_t pitch = s.iw + s.pl + s.pr, prows = s.ih + s.pt + s.pb;
  const int64_t row_slots = ceil_div(s.ow, L), slots = s.oh * row_slots;
  const int64_t groups = ceil_div(OC, kPixelsMaxOC), group = ceil_div(OC, groups);
  // One item per image; fewer images than threads split each image into bands of output rows
  // (a one-image stem on two threads: each thread writes, and keeps in its cache, the rows the
  // next layer's items there read). Every output sums the same taps in the same order in any
  // band: the bits do not depend on the split.
  const int64_t threads_wanted = num_threads();
  const int64_t bands = s.mb < threads_wanted && s.flops() >= min_parallel_flops()
                            ? imin(s.oh, ceil_div(threads_wanted, s.mb))
                            : 1;
  const int64_t band_rows = ceil_div(s.oh, bands);
  const int threads = plan_threads(s.mb * bands, s.flops());

  constexpr int64_t kPixelsBlockRows = 4;
  const int64_t chunk_plane = kPixelsBlockRows * s.ow;  // dst_blocked: a chunk's NCHW plane
  const int64_t per_thread = (padded ? carve_bytes<T>(s.ic * prows * pitch) : 0) + (dst_blocked ? carve_bytes<T>(OC * chunk_plane) : 0);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(K * OC) + carve_bytes<int64_t>(K) + 2 * carve_bytes<int64_t>(slots) + carve_bytes<int>(slots))))};
  T* w = ws.template take<T>(K * OC);  // [group][tap][filter of the group]
  int64_t* tap_off = ws.template take<int64_t>(K);
  int64_t* xoff = ws.template take<int64_t>(slots);
  int64_t* yoff = ws.template take<int64_t>(slots);
  int* lanes = ws.template take<int>(slots);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  for (int64_t o0 = 0; o0 < OC; o0 += group) {
    const int64_t g = imin(group, OC - o0);
    for (int64_t t = 0; t < K; ++t)
      for (int64_t o = 0; o < g; ++o) w[o0 * K + t * g + o] = wei[(o0 + o) * K + t];
  }
  tap_offsets(s.ic, s.kh, s.kw, s.dh, s.dw, padded ? prows : s.ih, pitch, tap_off);
  for (int64_t oy = 0, v = 0; oy < s.oh; ++oy) {
    for (int64_t ox = 0; ox < s.ow; ox += L, ++v) {
      xoff[v] = oy * pitch + ox, yoff[v] = oy * s.ow + ox;
      lanes[v] = static_cast<int>(imin(L, s.ow - ox));
    }
  }

  parallel_for(threads, s.mb * bands, [&](int64_t item, int tid) {
    const int64_t n = item / bands, oy0 = (item % bands) * band_rows, oy1 = imin(s.oh, oy0 + band_rows);
    if (oy0 >= oy1) return;
    const T* x = src + n * s.ic * HW;
    Carver tws{areas.of(tid)};
    T* frame = tws.template take<T>(padded ? s.ic * prows * pitch : 0);
    T* nchw = tws.template take<T>(dst_blocked ? OC * chunk_plane : 0);  // dst_blocked: a chunk's outputs, NCHW
    if (padded) {
      // The frame's rows this band reads, at their places in the padded image.
      const int64_t a0 = oy0, rows = oy1 - 1 - oy0 + (s.kh - 1) * s.dh + 1;
      for (int64_t c = 0; c < s.ic; ++c)
        fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, a0, rows, pitch, frame + (c * prows + a0) * pitch);
      x = frame;
    }
    // Output rows [r0, r1): filter o's at y + o * plane + yoff (yoff: oy * ow + ox). Each slot's
    // sums are its own: any grouping of slots into calls gives the same bits.
    auto rows = [&](int64_t r0, int64_t r1, T* y, int64_t plane) {
      const int64_t first = r0 * row_slots, last = r1 * row_slots;
      for (int64_t o0 = 0; o0 < OC; o0 += group) {
        const int g = static_cast<int>(imin(group, OC - o0));
        const int per_call = pixels_slots(g);
        for (int64_t v0 = first; v0 < last; v0 += per_call) {
          const int nv = static_cast<int>(imin(per_call, last - v0));
          const PixelArgs<T> a{x, xoff + v0, tap_off, K, w + o0 * K, bias != nullptr ? bias + o0 : nullptr,
                               y + o0 * plane, plane, yoff + v0, lanes + v0, s.relu};
          with_int<kPixelsMaxOC>(g, [&](auto oc_tag) {
            with_int<kPixelsSlots>(nv, [&](auto nv_tag) {
              UK::template pixels<decltype(oc_tag)::value, decltype(nv_tag)::value>(a);
            });
          });
        }
      }
    };
    if (!dst_blocked) {
      rows(oy0, oy1, dst + n * OC * P, P);
      return;
    }
    if constexpr (UK::kDirectLanes == 16) {
      for (int64_t r0 = oy0; r0 < oy1; r0 += kPixelsBlockRows) {
        const int64_t r1 = imin(oy1, r0 + kPixelsBlockRows);
        rows(r0, r1, nchw - r0 * s.ow, chunk_plane);
        // The chunk's pixels [r0 * ow, r1 * ow) of each block of 16 channels.
        const int64_t np = (r1 - r0) * s.ow;
        for (int64_t o = 0; o < OC; o += 16) {
          T* block = dst + (n * OC + o) * P + r0 * s.ow * 16;
          const T* planes = nchw + o * chunk_plane;
          int64_t q = 0;
          for (; q + 16 <= np; q += 16) UK::transpose16(planes + q, chunk_plane, block + q * 16, 16);
          for (; q < np; ++q)
            for (int k = 0; k < 16; ++k) block[q * 16 + k] = planes[k * chunk_plane + q];
        }
      }
    }
  });
}

// The pixels form: unit stride and a frame no larger than the image's reach allows.
template <class UK>
bool pixels_applies(const ConvShape& s) {
  if constexpr (UK::kDirectLanes > 0) {
    return s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow);
  } else {
    return false;
  }
}

}  // namespace
}  // namespace convforge
