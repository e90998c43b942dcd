// conv2d backward-weights: outer products read straight from the image rows (AVX-512), and dot
// products along the pixels for everything else.
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
#pragma once

#include "kernels/conv2d/conv2d_common.h"

namespace convforge {
namespace {

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
ImageChunks image_chunks(int64_t images, int64_t partial_elems, int64_t max_bytes = kMaxPartialBytes) {
  int64_t n = imin(images, kMaxChunks);
  n = imax(1, imin(n, max_bytes / static_cast<int64_t>(sizeof(T) * partial_elems)));
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
// over all (channel, row) pairs and channel groups: each call costs its FMAs (2 per cycle)
// plus a quarter cycle per load (dy vectors and broadcasts), plus one. The loads are not free
// even where the FMAs outnumber them: the earlier model, max(FMAs / 2, loads / 2.5), took 3
// vectors (and a 1-vector rest) for 64 filters and 1 for 5-wide kernels, and each of those
// choices measured slower than this one's, 2026-12-04 (one process, the vector counts
// alternating, medians of 11, 1 / 2 threads): 128x64x7x7 3x3 (64 filters) 4.06 -> 3.87 ms /
// 1.92 -> 1.83, 32x128x14x14 -> 128 16.5 -> 16.0 / 6.34 -> 6.09, 32x16x28x28 -> 64 5x5 10.7
// -> 10.3 / 4.28 -> 3.91, 32x32x14x14 -> 32 5x5 2.25 -> 2.13 / 1.18 -> 1.08; 48 filters: 3,
// as before. Kernel rows 6 or 7 wide keep one vector, as the earlier model had it: with two
// or more only one or two image rows fit a call, and no count was reliably better (four 7x7
// shapes, 64 filters, within +-5% of each other), while the 224x224 stem (8 images) ran 13%
// slower with 2 on one thread (16.1 vs 14.2 ms).
inline int outer_kv(int regs, int64_t pairs, int64_t taps, int64_t vectors) {
  if (taps >= 6) return 1;
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
        cost += static_cast<double>(m * taps * g) / 2.0 + static_cast<double>(g + m * taps) / 4.0 + 1.0;
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
// to fill a vector (bwd_weights_outer_applies).
template <class UK>
bool bwd_weights_outer_applies(const ConvShape& s) {
  if constexpr (UK::kOuterLanes > 0) {
    constexpr int L = UK::kOuterLanes;
    // Enough filters to fill most of a vector: 3/4 of AVX-512's 16 lanes, all of AVX2's 8 (LeNet's
    // C1, 6 filters of one channel, ran 1.5x slower by outer than by implicit_dot on AVX2).
    const int64_t min_filters = L >= 16 ? (3 * L) / 4 : L;
    if (s.dw != 1 || s.kw > kOuterMaxTaps || outer_rows(UK::kOuterRegs, static_cast<int>(s.kw), 1) < 1 || s.oc < min_filters)
      return false;
    // The frame is the image with its padding; padding beyond the kernel's reach (legal but
    // pointless) or a reach far larger than the output would make it larger than the work.
    return !(s.pt > (s.kh - 1) * s.dh || s.pb > (s.kh - 1) * s.dh || s.pl > s.kw - 1 || s.pr > s.kw - 1 ||
             !frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow));
  } else {
    return false;
  }
}

template <class UK>
void conv2d_bwd_weights_outer(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                              typename UK::T* diff_wei, typename UK::T* diff_bias) {
  using T = typename UK::T;
  constexpr int L = UK::kOuterLanes;
  const int64_t OC = s.oc, OCv = ceil_div(OC, L), OCp = OCv * L;
  const int64_t K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t pairs = s.ic * s.kh;  // (channel, kernel row): one image-row pointer each
  const int taps = static_cast<int>(s.kw);
  // One vector of filters and unit stride: the sliding kernel, which broadcasts each input
  // value once for all the taps that read it (LeNet's C3 and C1).
  // (Not where the registers hold no row of it: 6 or 7 taps in AVX2's 16.)
  const bool slide = OCv == 1 && s.sw == 1 && slide_rows(UK::kOuterRegs, taps) >= 1;
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
      carve_bytes<T>(chunks.count * part_elems) + carve_bytes<int64_t>(pairs))))};
  T* partials = ws.template take<T>(chunks.count * part_elems);
  int64_t* pair_off = ws.template take<int64_t>(pairs);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  for (int64_t c = 0; c < s.ic; ++c)
    for (int64_t r = 0; r < s.kh; ++r) pair_off[c * s.kh + r] = c * plane + r * s.dh * pitch;

  parallel_for(threads, chunks.count, [&](int64_t chunk, int tid) {
    T* dwt = partials + chunk * part_elems;
    T* db = dwt + K * OCp;
    std::memset(dwt, 0, sizeof(T) * static_cast<std::size_t>(part_elems));
    Carver tws{areas.of(tid)};
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
}

// The unit-stride dot form. It multiplies the dropped columns' zeros by real pixels: an inf or
// NaN pixel would make 0 * inf = NaN where the true gradient has no such term, so it applies to
// finite inputs only (`src` null: not checked; the caller vouches).
template <class T>
bool bwd_weights_dot_unit_applies(const ConvShape& s, const T* src) {
  return s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow) &&
         (src == nullptr || all_finite(src, s.src_size()));
}

// dW[OC x K] = sum over images and pixels of dy[OC x P] . col[K x P]^T, as dot products along
// the pixels. With `unit` (bwd_weights_dot_unit_applies) the im2col rows are read straight from
// the (padded) image, with dy laid out at the same pitch and zeros in the dropped columns;
// otherwise (any stride) im2col rows are gathered.
// Images are split into a fixed number of chunks (from the problem size alone); each chunk sums
// into its own partial gradient, and the partials are added in chunk order, so any thread count
// gives the same bits.
template <class UK>
void conv2d_bwd_weights_dot(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                            typename UK::T* diff_wei, typename UK::T* diff_bias, bool unit) {
  using T = typename UK::T;
  const int64_t OC = s.oc, K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t wsize = OC * K;
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
      carve_bytes<T>(partial_count) + carve_bytes<int64_t>(K))))};
  T* partials = ws.template take<T>(partial_count);
  int64_t* tap_off = ws.template take<int64_t>(K);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  if (unit) tap_offsets(s.ic, s.kh, s.kw, s.dh, s.dw, prows, pitch, tap_off);

  parallel_for(threads, nchunks, [&](int64_t chunk, int tid) {
    T* dw = nchunks > 1 ? partials + chunk * (wsize + OC) : diff_wei;
    T* db = nchunks > 1 && diff_bias != nullptr ? dw + wsize : diff_bias;
    Carver tws{areas.of(tid)};
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
