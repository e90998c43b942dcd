// The direct conv2d form (output channels along the vector lanes), shared by the forward pass
// and by backward-data taken as a forward pass over dy (bwd_data_as_forward).
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
#pragma once

#include <cstdlib>
#include <cstring>

#include "kernels/conv2d/conv2d_common.h"

namespace convforge {
namespace {

constexpr int kDirectMaxCols = 12;  // output pixels per direct kernel call

// Most output pixels per row of a direct kernel call of `rows` rows, a KW-wide kernel row and
// KV channel vectors: KW*KV weight vectors, one broadcast and the accumulators must fit 32
// vector registers; at most `cap` (the instantiated sizes).
constexpr int direct_max_cols(int rows, int kw, int kv, int cap = kDirectMaxCols) {
  return (32 - 1 - kw * kv) / (kv * rows) < cap ? (32 - 1 - kw * kv) / (kv * rows) : cap;
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
  } else if (rows == 2 && kv == 2) {  // conv2d_direct asks for this with 1x1 kernels only
    if constexpr (KW == 1) {
      call(IntTag<2>{}, IntTag<2>{}, IntTag<1>{});
    } else {
      std::abort();  // unreachable: a silent return would leave the outputs unwritten
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

// Taps [k0, k0 + L) (fewer at the end of K) of filters [oc0, oc1) (whole vectors) into w
// (row k, column o - oc0, pitch ldw).
template <class UK>
void pack_direct_taps(const typename UK::T* wei, int64_t K, int64_t k0, int64_t oc0, int64_t oc1, typename UK::T* w,
                      int64_t ldw) {
  constexpr int64_t L = UK::kDirectLanes;
  if (k0 + L <= K) {
    for (int64_t o = oc0; o < oc1; o += L) UK::transpose16(wei + o * K + k0, K, w + k0 * ldw + (o - oc0), ldw);
  } else {
    for (int64_t k = k0; k < K; ++k)
      for (int64_t o = oc0; o < oc1; ++o) w[k * ldw + (o - oc0)] = wei[o * K + k];
  }
}

// pack_filters_per_tap for the direct form. An OIHW bank read per tap is the transpose of an
// OC x K matrix (K = IC*KH*KW taps): 16 x 16 blocks go through registers (UK::transpose16)
// instead of one strided scalar store per weight. At batch 1 the scalar pack was a fifth of a
// small ResNet's inference (76k weights per image, against 18 MFLOP). The direct form has
// whole vectors of output channels (direct_applies), so only the taps past the last full block
// of 16 are left to the scalar loop. Items are blocks of 16 taps: each writes whole rows of w.
template <class UK>
void pack_filters_direct(const ConvShape& s, const typename UK::T* wei, bool transposed_flipped, typename UK::T* w,
                         int threads) {
  if (transposed_flipped) {  // backward-data's flipped bank: not a plain transpose
    pack_filters_per_tap(s, wei, true, w, threads);
    return;
  }
  constexpr int64_t L = UK::kDirectLanes;
  const int64_t K = s.ic * s.kh * s.kw, OC = s.oc;
  parallel_for(threads, ceil_div(K, L),
               [&](int64_t item, int) { pack_direct_taps<UK>(wei, K, item * L, 0, OC, w, OC); });
}

// y[o * P + p] = yt[p * OC + o] for pixels p < np and channels [oc0, oc1) (whole vectors):
// a block of pixel-major outputs stored as NCHW rows. Channel groups outside: each y row is
// written front to back. With pixels outside, consecutive 16x16 stores hit 16 rows a plane
// apart at once, and the transposes took a third of the time of a 32x3x32x32 5x5 layer. The
// last np % 16 pixels go through a masked transpose too: one value at a time, a 14x14 plane's
// last 4 pixels took 2.6% of a 64x16x28x28 -> 32 1x1 stride-2 layer, its transposes 34%.
template <class UK>
void store_pixel_major(const typename UK::T* yt, int64_t OC, int64_t np, int64_t oc0, int64_t oc1, typename UK::T* y,
                       int64_t P) {
  constexpr int64_t L = UK::kDirectLanes;
  static_assert(L == 16, "transpose16 blocks");
  const int64_t full = np / L * L;
  for (int64_t o = oc0; o < oc1; o += L) {
    for (int64_t p = 0; p < full; p += L) UK::transpose16(yt + p * OC + o, OC, y + o * P + p, P);
    if (full < np) UK::transpose16_rows(yt + full * OC + o, OC, static_cast<int>(np - full), y + o * P + full, P);
  }
}

// fill_window for the channels [0, ic) of an image in channel blocks of 16 (ConvTensors::
// src_blocked; UK::kDirectLanes 16): channel c's rows at dst + c * plane, as fill_window writes
// them from an NCHW plane, through 16 x 16 transposes of (pixels, channels) blocks.
template <class UK>
void fill_window_blocked(const typename UK::T* x, int64_t ic, int64_t src_h, int64_t src_w, int64_t off_t, int64_t off_l,
                         int64_t a0, int64_t rows, int64_t width, typename UK::T* dst, int64_t plane) {
  using T = typename UK::T;
  static_assert(UK::kDirectLanes == 16, "blocks of 16 channels");
  const int64_t HW = src_h * src_w;
  const int64_t b_lo = imin(imax(off_l, 0), width), b_hi = imax(imin(src_w + off_l, width), b_lo);
  auto zero = [&](T* p, int64_t n) {
    if (n > 0) std::memset(p, 0, sizeof(T) * static_cast<std::size_t>(n));
  };
  for (int64_t c0 = 0; c0 < ic; c0 += 16) {
    const T* block = x + c0 * HW;
    for (int64_t a = a0; a < a0 + rows; ++a) {
      T* row = dst + c0 * plane + (a - a0) * width;  // channel c0's; channel c0 + k's k planes on
      const int64_t sr = a - off_t;
      if (sr < 0 || sr >= src_h) {
        for (int k = 0; k < 16; ++k) zero(row + k * plane, width);
        continue;
      }
      for (int k = 0; k < 16; ++k) {
        zero(row + k * plane, b_lo);
        zero(row + k * plane + b_hi, width - b_hi);
      }
      for (int64_t b = b_lo; b < b_hi; b += 16) {
        const int n = static_cast<int>(imin(16, b_hi - b));
        const T* from = block + (sr * src_w + (b - off_l)) * 16;
        if (n == 16) UK::transpose16(from, 16, row + b, plane);
        else UK::transpose16_rows(from, 16, n, row + b, plane);
      }
    }
  }
}

// The frame of a 1x1 kernel without padding on channel blocks (conv2d_direct's `compact`):
// dst[c * plane + r * ow + j] = x's channel c at pixel ((oy0 + r) * sh, j * sw), r < rows, j < ow.
template <class UK>
void fill_strided_blocked(const typename UK::T* x, int64_t ic, int64_t src_w, int64_t HW, int64_t oy0, int64_t rows,
                          int64_t ow, int64_t sh, int64_t sw, typename UK::T* dst, int64_t plane) {
  using T = typename UK::T;
  static_assert(UK::kDirectLanes == 16, "blocks of 16 channels");
  for (int64_t c0 = 0; c0 < ic; c0 += 16)
    for (int64_t r = 0; r < rows; ++r) {
      const T* from = x + c0 * HW + (oy0 + r) * sh * src_w * 16;
      T* row = dst + c0 * plane + r * ow;
      for (int64_t j = 0; j < ow; j += 16) {
        const int n = static_cast<int>(imin(16, ow - j));
        if (n == 16) UK::transpose16(from + j * sw * 16, sw * 16, row + j, plane);
        else UK::transpose16_rows(from + j * sw * 16, sw * 16, n, row + j, plane);
      }
    }
}

// Convolution with the output channels along the vector lanes: each output pixel's OC values
// live in KV vector accumulators; each input value is broadcast once per kernel row and
// multiplies the weight vectors of the taps that see it (all KW at unit stride, every other
// one at stride 2). Unlike the pitch
// form above, no product is spent on dropped columns (LeNet's C3 computes 14 columns per 10
// kept there) and no lane on a missing output channel; the price is a transpose of the output
// from pixel-major to NCHW (OC x P moves against OC x P x K products). `s` is a forward
// problem whose paddings may be negative (a crop: backward-data as a forward pass, below);
// `wei` and `transposed_flipped` as for pack_filters_per_tap; `residual` (null, or dst's shape)
// is added before the ReLU (ConvTensors). Work items are bands of output
// rows of one image; every output sums its taps in one fixed order (channel, kernel row, kernel column)
// whatever the banding or thread count. Which problems it takes: direct_applies. `prepared`
// (forward only; null: none): the bank as pack_filters_direct packs it, kept by the caller
// (an inference plan) across calls, read in place of a pack made here.
// With src_blocked / dst_blocked (ConvTensors'; UK::kDirectLanes 16), src / dst and the residual
// in channel blocks of 16: the frame filled through transposes, each band's pixel-major outputs
// copied 16 channels a pixel (no transposes), the residual added to those runs.
template <class UK>
void conv2d_direct(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei, bool transposed_flipped,
                   const typename UK::T* bias, const typename UK::T* residual, typename UK::T* dst,
                   const typename UK::T* prepared = nullptr, bool src_blocked = false, bool dst_blocked = false) {
  using T = typename UK::T;
  constexpr int64_t L = UK::kDirectLanes;
  const int64_t K = s.ic * s.kh * s.kw, pairs = s.ic * s.kh, P = s.oh * s.ow, HW = s.ih * s.iw, OC = s.oc;
  int kv = static_cast<int>(imin(OC / L, kDirectMaxKV));  // vectors per channel group
  const int sw = static_cast<int>(s.sw);
  const bool padded = s.pt != 0 || s.pb != 0 || s.pl != 0 || s.pr != 0;
  // The frame: the image itself, or the rows of its zero-padded version that a band reads,
  // as wide as the outputs read ((OW-1)*SW + KW columns; dw = 1); an image in channel blocks
  // always goes through one (as NCHW rows).
  const bool framed = padded || src_blocked;
  const int64_t reach = (s.kh - 1) * s.dh, pitch = padded ? (s.ow - 1) * s.sw + s.kw : s.iw;
  // Bands of about kPixBlock output pixels; column blocks as equal as possible (a 14-wide
  // row: 7 + 7, not 12 + 2).
  int64_t band = imax(1, imin(s.oh, kPixBlock / s.ow)), nbands = ceil_div(s.oh, band);
  // One image has one or two bands per layer: fewer work items than threads (a 14x14 or 7x7
  // layer was one item, run by one thread, at batch 1). Then the items split the output
  // channels into groups (of KV vectors, or of one where that is still too few): each item
  // writes whole planes, so threads do not share the output's cache lines as they would
  // splitting a 7x7 plane's rows (that ran 2.5x slower on two threads than on one). Only if
  // still short, thinner bands. No output's sum changes (each sums its taps in the same order
  // in every item shape): results stay bit-identical for any thread count.
  const int64_t threads_wanted = num_threads();
  int64_t groups = 1;
  // Into channel blocks, thinner bands first: a band's rows are one run of memory per block,
  // shared with no other thread's (where NCHW rows share lines and prefetch streams), and each
  // thread reads only the input rows under its band, not all of them as a group of filters
  // does. The example ResNet's one image on two threads: its 16 -> 32 stride-2 layer 13.0-13.5
  // -> 8.4-8.6 us, its 32 -> 64 one 10.2-10.4 -> 9.6-9.8 (bench/BEFORE_AFTER.md, forty-second stop).
  if (dst_blocked && s.mb * nbands < threads_wanted && s.flops() >= min_parallel_flops()) {
    band = imax(1, ceil_div(s.oh, ceil_div(threads_wanted, s.mb)));
    nbands = ceil_div(s.oh, band);
  }
  if (s.mb * nbands < threads_wanted && s.flops() >= min_parallel_flops()) {  // plan_threads' floor: below it, one thread
    if (s.mb * nbands * ceil_div(OC, kv * L) < threads_wanted) kv = 1;
    groups = ceil_div(OC, kv * L);
    if (s.mb * nbands * groups < threads_wanted) {
      band = imax(1, ceil_div(s.oh, ceil_div(threads_wanted, s.mb * groups)));
      nbands = ceil_div(s.oh, band);
    }
  }
  const int64_t group_channels = groups == 1 ? OC : kv * L;
  // Rows narrow enough for two per call (LeNet's C3: 10 pixels) give the kernel twice the
  // accumulators per weight vector: 20 instead of 10. A 1x1 kernel with two channel vectors
  // takes two rows of up to 7 pixels at any width (28 accumulators; one row of a 14-wide
  // image gave 14, of a 7-wide one 14).
  const bool pointwise_two_rows = s.kw == 1 && s.kh == 1 && kv == 2 && s.sw == 1 && s.sh == 1 && s.oh > 1;
  const int64_t rows_per_call =
      pointwise_two_rows ||
              (OC == L && s.sw == 1 && s.ow <= direct_max_cols(2, static_cast<int>(s.kw), 1))
          ? 2
          : 1;
  const int64_t max_cols = direct_max_cols(pointwise_two_rows ? 2 : 1, static_cast<int>(s.kw), kv);
  const int64_t cols = ceil_div(s.ow, ceil_div(s.ow, max_cols));
  const int64_t win_rows = (band - 1) * s.sh + reach + 1;
  // A 1x1 kernel without padding on channel blocks (a strided shortcut's projection): a frame of
  // the pixels it reads only, each band row's (oy * sh, ox * sw), read at unit stride. Each
  // output sums the same products in the same order; the whole frame's rows and columns, through
  // transposes, were twice the work of the layer (a 16 -> 32 stride-2 projection at 28x28).
  const bool compact = src_blocked && s.kh == 1 && s.kw == 1 && !padded;
  const int64_t frame_rows = compact ? band : win_rows, frame_pitch = compact ? s.ow : pitch;
  const int64_t step_rows = compact ? 1 : s.sh, step_cols = compact ? 1 : s.sw;
  const int64_t items = s.mb * nbands * groups;
  const int threads = plan_threads(items, s.flops());

  // Split into channel groups (a batch too small for its threads), each thread packs the
  // filters of the groups it computes into a buffer of its own, where its own cache keeps
  // them: packed by one thread for all, half the weights of a 64x64x3x3 bank (73 KB) crossed
  // to the other core on every call, and one 7x7 image ran slower on two threads than on one.
  // (Backward-data's flipped bank keeps the shared pack: its problems have many images.)
  // A kept pack is read by every thread and written by none: its lines stay in both cores'
  // caches from one call to the next.
  if (transposed_flipped) prepared = nullptr;
  const bool own_pack = groups > 1 && !transposed_flipped && prepared == nullptr;
  const int64_t per_thread = (framed ? carve_bytes<T>(s.ic * frame_rows * frame_pitch) : 0) + carve_bytes<T>(band * s.ow * OC) +
                             (own_pack ? carve_bytes<T>(K * group_channels) : 0);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(own_pack || prepared ? 0 : K * OC) + carve_bytes<int64_t>(pairs) + carve_bytes<int64_t>(threads))))};
  T* packed = ws.template take<T>(own_pack || prepared ? 0 : K * OC);  // [tap][OC]: one tap's weights are KV vectors
  const T* w = prepared != nullptr ? prepared : packed;
  int64_t* pair_off = ws.template take<int64_t>(pairs);
  int64_t* packed_group = ws.template take<int64_t>(threads);  // own_pack: the group in the thread's buffer
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  // Worth threads only when the filters are large against the layer (few images: the pack is
  // repeated per call, the products are not many). The ResNet example's largest bank (64x64x3x3)
  // packs in a few microseconds, about what a parallel region costs: its one-image inference
  // on two threads took 220 us with threaded packs from 16k weights, 210 us without. From 256k
  // weights (1 MiB; VGG's 256x256x3x3 has 590k) the pack is long enough to share.
  if (!own_pack && prepared == nullptr)
    pack_filters_direct<UK>(s, wei, transposed_flipped, packed, K * OC >= (int64_t{1} << 18) && s.mb <= 2 ? threads : 1);
  for (int t = 0; t < threads; ++t) packed_group[t] = -1;
  tap_offsets(s.ic, s.kh, 1, s.dh, 1, framed ? frame_rows : s.ih, frame_pitch, pair_off);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    // Image-major, then band, then channel group: a thread's items share input rows.
    const int64_t image_band = item / groups, oc0 = (item % groups) * group_channels;
    const int64_t oc1 = imin(OC, oc0 + group_channels);
    const int64_t n = image_band / nbands, oy0 = (image_band % nbands) * band, nrows = imin(band, s.oh - oy0);
    Carver tws{areas.of(tid)};
    const T* wk = w;  // the packed filters: [tap][OC], or [tap][group_channels] from oc0
    int64_t ldw = OC, wk_oc = 0;
    if (own_pack) {
      T* mine = tws.template take<T>(K * group_channels);
      if (packed_group[tid] != oc0) {
        for (int64_t k0 = 0; k0 < K; k0 += L) pack_direct_taps<UK>(wei, K, k0, oc0, oc1, mine, group_channels);
        packed_group[tid] = oc0;
      }
      wk = mine, ldw = group_channels, wk_oc = oc0;
    }
    const T* x = src + n * s.ic * HW;
    if (framed) {  // the frame rows this band reads, so that base + a*pitch is frame row a
      T* win = tws.template take<T>(s.ic * frame_rows * frame_pitch);
      const int64_t rows = (nrows - 1) * s.sh + reach + 1;
      if constexpr (L == 16) {
        if (compact) fill_strided_blocked<UK>(x, s.ic, s.iw, HW, oy0, nrows, s.ow, s.sh, s.sw, win, frame_rows * s.ow);
        else if (src_blocked) fill_window_blocked<UK>(x, s.ic, s.ih, s.iw, s.pt, s.pl, oy0 * s.sh, rows, pitch, win, win_rows * pitch);
      }
      if (!src_blocked) {
        for (int64_t c = 0; c < s.ic; ++c)
          fill_window(x + c * HW, s.ih, s.iw, s.pt, s.pl, oy0 * s.sh, rows, pitch, win + c * win_rows * pitch);
      }
      x = win - oy0 * step_rows * frame_pitch;
    }
    T* yt = tws.template take<T>(band * s.ow * OC);  // the band's outputs, pixel-major
    for (int64_t r = 0; r < nrows; r += rows_per_call) {
      const int nr = static_cast<int>(imin(rows_per_call, nrows - r));
      for (int64_t ox = 0; ox < s.ow; ox += cols) {
        const int nc = static_cast<int>(imin(cols, s.ow - ox));
        for (int64_t o0 = oc0; o0 < oc1; o0 += kv * L) {
          const int gkv = static_cast<int>(imin(kv, (oc1 - o0) / L));
          const DirectArgs<T> a{x + (oy0 + r) * step_rows * frame_pitch + ox * step_cols, step_rows * frame_pitch, pair_off,
                                pairs, wk + (o0 - wk_oc), ldw, bias != nullptr ? bias + o0 : nullptr,
                                yt + (r * s.ow + ox) * OC + o0, OC, s.ow * OC, s.relu && residual == nullptr};
          switch (s.kw) {
            case 1: direct_call<UK, 1>(nr, gkv, compact ? 1 : sw, nc, a); break;
            case 3: direct_call<UK, 3>(nr, gkv, sw, nc, a); break;
            case 5: direct_call<UK, 5>(nr, gkv, sw, nc, a); break;
            default: direct_call<UK, 7>(nr, gkv, sw, nc, a); break;
          }
        }
      }
    }
    const int64_t np = nrows * s.ow;
    if (dst_blocked) {  // block o / 16 of image n at (n * OC + o) * P; the band from pixel oy0 * ow
      for (int64_t o = oc0; o < oc1; o += 16) {
        T* y = dst + (n * OC + o) * P + oy0 * s.ow * 16;
        for (int64_t q = 0; q < np; ++q) std::memcpy(y + q * 16, yt + q * OC + o, sizeof(T) * 16);
        if (residual != nullptr) add_residual_row(y, residual + (n * OC + o) * P + oy0 * s.ow * 16, np * 16, s.relu);
      }
      return;
    }
    T* y = dst + n * OC * P + oy0 * s.ow;
    store_pixel_major<UK>(yt, OC, np, oc0, oc1, y, P);
    // The residual and then the ReLU, on the band's rows of each plane just written (in L1).
    if (residual != nullptr) {
      const T* r = residual + n * OC * P + oy0 * s.ow;
      for (int64_t o = oc0; o < oc1; ++o) add_residual_row(y + o * P, r + o * P, np, s.relu);
    }
  });
}

// The direct form takes (forward) problems of stride 1 or 2 with kernel rows 1, 3, 5 or 7 wide
// without column dilation (the sliding broadcast), whole vectors of output channels, and a
// kernel whose reach fits the frame. Measured against the pitch form on one thread, it was as
// fast or faster on every such unit-stride layer tried: LeNet's C3 0.146 vs 0.226 ms, 32 3x3
// filters on 64x1x28x28 0.24 vs 0.35 ms, on 64x32x26x26 2.9 vs 3.5 ms, on 16x32x56x56 ('same')
// 4.2 vs 4.5 ms, 16 7x7 filters on 8x16x64x64 3.7 vs 4.1 ms, level (within 1%) on 32x16x32x32
// and 32x3x32x32 (5x5); and against the im2col form on the 7x7 stride-2 stem, 9.0 vs 10.1-10.4
// ms (hence its place first in the forward list, conv2d_algos.h). 1x1 kernels (a plain matrix
// product, no sliding reuse) were measured on one thread against the GEMM forms, 2026-12-03:
// 32x256x14x14 -> 256 8.2-9.0 ms vs 9.4-10.0 (implicit_gemm) and 9.1-9.5 (im2col_gemm);
// 32x256x56x56 -> 64 37 vs 55 and 43-45; 32x512x7x7 -> 512 8.2-8.4 vs 10.0-10.6; 64x32x28x28 -> 64
// 2.9-3.2 vs 3.4-6.2; 16x2048x7x7 -> 512 18.5-21.0 vs 20.8-20.9; stride 2 level with im2col or
// faster; backward-data 1x1 (as a forward over dy) 8.5 vs 9.2-10.6 ms (tapwise/implicit) on the
// first shape. The output's pixel-major-to-NCHW transpose costs OC x P moves against OC x P x IC
// products.
template <class UK>
bool direct_applies(const ConvShape& s) {
  if constexpr (UK::kDirectLanes > 0) {
    return (s.sh == 1 || s.sh == 2) && (s.sw == 1 || s.sw == 2) && s.dw == 1 && (s.kw == 1 || s.kw == 3 || s.kw == 5 || s.kw == 7) &&
           s.oc % UK::kDirectLanes == 0 &&
           frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow);
  } else {
    return false;
  }
}

// ---- strided backward-data by stride phases ------------------------------------------------
// With stride S, dx's rows split into S phases by iy mod S; row phase a (iy = S*q + a) is
// reached only by the kernel rows ky = r + S*j (r = (a + pt) mod S, j < J = ceil((KH - r)/S)),
// from dy row q + (a + pt - r)/S - j. So each phase of dx is a unit-stride correlation of dy
// with a J-row slice of the flipped kernel: a direct forward pass over dy, whose products are
// exactly the gradient's terms. The col2im form computes the same products as a matrix
// product with dy's few channels as its reduction (32 for the example ResNet's stride-2
// layers) and then scatters them, and ran at a third of the unit-stride passes' rate.
// Columns likewise; a (row, column) phase pair is one sub-problem, its kernel J x J' taps.
constexpr int64_t kMaxStridePhases = 4;  // strides up to 4 (larger ones take col2im)

struct StridePhase {
  int64_t first_tap;  // r: the first kernel row (column) of the phase's slice
  int64_t taps;       // J: slice rows (0: no kernel row reaches this phase; its dx is zero)
  int64_t lead;       // dy rows the slice reads before q: it reads q - lead .. q - lead + J - 1
  int64_t count;      // dx rows (columns) in the phase: S*q + a < dx size
};

inline StridePhase stride_phase(int64_t a, int64_t stride, int64_t kernel, int64_t pad_before, int64_t dx_size) {
  StridePhase ph;
  ph.first_tap = (a + pad_before) % stride;
  ph.taps = ph.first_tap < kernel ? ceil_div(kernel - ph.first_tap, stride) : 0;
  ph.lead = ph.taps - 1 - (a + pad_before) / stride;
  ph.count = a < dx_size ? ceil_div(dx_size - a, stride) : 0;
  return ph;
}

// Which kernel widths the slices may have: the direct micro-kernel's (2 is a 3-wide kernel's
// even phase, 3 a 5-wide one's).
inline bool phase_width_ok(int64_t j) { return j == 0 || j == 1 || j == 2 || j == 3 || j == 5 || j == 7; }

// Backward data of a strided convolution (either stride > 1) without dilation, whose input
// channels fill whole vectors, with every padding smaller than the kernel (the frame stays
// the size of dy) and every column slice a width the micro-kernel has.
template <class UK>
bool bwd_data_phases_applies(const ConvShape& s) {
  if constexpr (UK::kDirectLanes > 0) {
    if (!(s.sh > 1 || s.sw > 1) || s.sh > kMaxStridePhases || s.sw > kMaxStridePhases) return false;
    if (s.dh != 1 || s.dw != 1 || s.ic % UK::kDirectLanes != 0) return false;
    if (s.pt >= s.kh || s.pb >= s.kh || s.pl >= s.kw || s.pr >= s.kw) return false;
    for (int64_t b = 0; b < s.sw; ++b)
      if (!phase_width_ok(stride_phase(b, s.sw, s.kw, s.pl, s.iw).taps)) return false;
    return true;
  } else {
    return false;
  }
}

// The phases' direct calls: unit column stride, and up to 14 pixels a row where the
// registers allow (a phase of a 28-wide dx is 14 wide: two rows of 14 are 28 accumulators;
// the forward form's cap of 12 made that two calls of one row of 7, and halved the rate).
constexpr int kPhaseMaxCols = 14;

template <class UK, int KW>
void phase_call(int rows, int kv, int cols, const DirectArgs<typename UK::T>& a) {
  auto call = [&](auto rows_tag, auto kv_tag) {
    constexpr int R = decltype(rows_tag)::value, V = decltype(kv_tag)::value;
    with_int<direct_max_cols(R, KW, V, kPhaseMaxCols)>(cols, [&](auto cols_tag) { UK::template direct<R, decltype(cols_tag)::value, KW, V, 1>(a); });
  };
  if (rows == 2) {  // one channel vector only (conv2d_bwd_data_phases)
    call(IntTag<2>{}, IntTag<1>{});
  } else if (kv == 1) {
    call(IntTag<1>{}, IntTag<1>{});
  } else {
    call(IntTag<1>{}, IntTag<2>{});
  }
}

template <class UK>
void phase_call_width(int64_t width, int rows, int kv, int cols, const DirectArgs<typename UK::T>& a) {
  switch (width) {
    case 1: phase_call<UK, 1>(rows, kv, cols, a); break;
    case 2: phase_call<UK, 2>(rows, kv, cols, a); break;
    case 3: phase_call<UK, 3>(rows, kv, cols, a); break;
    case 5: phase_call<UK, 5>(rows, kv, cols, a); break;
    default: phase_call<UK, 7>(rows, kv, cols, a); break;
  }
}

// dx (s.mb x s.ic x s.ih x s.iw) from dy and the OIHW weights, phase by phase as above. Work
// items are bands of q rows of one image: every phase of those rows, so that the band's
// outputs, gathered pixel-major in the order of dx's own rows, go out as whole NCHW rows
// (store_pixel_major) with no interleaving pass. Each dx element sums its taps in one fixed
// order (dy channel, slice row, slice column) whatever the banding or thread count. Like the
// unit-stride direct form it multiplies weights by dy's zero frame: finite weights only.
template <class UK>
void conv2d_bwd_data_phases(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                            typename UK::T* diff_src) {
  using T = typename UK::T;
  constexpr int64_t L = UK::kDirectLanes;
  const int64_t SH = s.sh, SW = s.sw, C = s.ic, O = s.oc, P = s.oh * s.ow, HW = s.ih * s.iw;
  StridePhase rows_ph[kMaxStridePhases], cols_ph[kMaxStridePhases];
  int64_t lead_t = 0, lead_l = 0;  // the frame's zero rows (columns) before dy's first
  for (int64_t a = 0; a < SH; ++a) {
    rows_ph[a] = stride_phase(a, SH, s.kh, s.pt, s.ih);
    if (rows_ph[a].taps > 0) lead_t = imax(lead_t, rows_ph[a].lead);
  }
  for (int64_t b = 0; b < SW; ++b) {
    cols_ph[b] = stride_phase(b, SW, s.kw, s.pl, s.iw);
    if (cols_ph[b].taps > 0) lead_l = imax(lead_l, cols_ph[b].lead);
  }
  // Bands of about kPixBlock dx pixels (whole groups of SH rows), as equal as possible.
  const int64_t q_rows = rows_ph[0].count;  // phase 0 has the most rows
  int64_t band = imax(1, imin(q_rows, kPixBlock / (SH * s.iw))), nbands = ceil_div(q_rows, band);
  const int64_t threads_wanted = num_threads();
  if (s.mb * nbands < threads_wanted) nbands = imin(q_rows, ceil_div(threads_wanted, s.mb));
  band = ceil_div(q_rows, nbands), nbands = ceil_div(q_rows, band);
  // Frame rows a band reads (from its first q, shifted by lead_t) and the frame's width.
  int64_t reach_rows = 0, pitch = 1, taps_total = 0, pairs_total = 0;
  for (int64_t a = 0; a < SH; ++a)
    if (rows_ph[a].taps > 0) reach_rows = imax(reach_rows, lead_t - rows_ph[a].lead + rows_ph[a].taps - 1);
  for (int64_t b = 0; b < SW; ++b)
    if (cols_ph[b].taps > 0) pitch = imax(pitch, cols_ph[b].count + lead_l - cols_ph[b].lead + cols_ph[b].taps - 1);
  for (int64_t a = 0; a < SH; ++a) pairs_total += O * rows_ph[a].taps;
  for (int64_t a = 0; a < SH; ++a)
    for (int64_t b = 0; b < SW; ++b) taps_total += O * rows_ph[a].taps * cols_ph[b].taps;
  const int64_t win_rows = band + reach_rows;
  const int kv = static_cast<int>(imin(C / L, kDirectMaxKV));
  const int64_t items = s.mb * nbands;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = carve_bytes<T>(O * win_rows * pitch) + carve_bytes<T>(band * SH * s.iw * C);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<T>(taps_total * C) + carve_bytes<int64_t>(pairs_total))))};
  T* w = ws.template take<T>(taps_total * C);
  int64_t* pair_off = ws.template take<int64_t>(pairs_total);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);
  // Phase (a, b)'s slice, flipped, as [tap (o, j, j')][C]: tap (j, j') is kernel element
  // (r + SH*(J-1-j), r' + SW*(J'-1-j')), so that slice row j reads dy row q - lead + j.
  T* w_ph[kMaxStridePhases][kMaxStridePhases];
  const int64_t* off_ph[kMaxStridePhases];
  {
    T* wp = w;
    int64_t* op = pair_off;
    for (int64_t a = 0; a < SH; ++a) {
      const StridePhase& ra = rows_ph[a];
      tap_offsets(O, ra.taps, 1, 1, 1, win_rows, pitch, op);
      off_ph[a] = op;
      op += O * ra.taps;
      for (int64_t b = 0; b < SW; ++b) {
        const StridePhase& cb = cols_ph[b];
        w_ph[a][b] = wp;
        for (int64_t o = 0; o < O; ++o)
          for (int64_t j = 0; j < ra.taps; ++j)
            for (int64_t jj = 0; jj < cb.taps; ++jj, wp += C) {
              const int64_t ky = ra.first_tap + SH * (ra.taps - 1 - j), kx = cb.first_tap + SW * (cb.taps - 1 - jj);
              for (int64_t c = 0; c < C; ++c) wp[c] = wei[((o * C + c) * s.kh + ky) * s.kw + kx];
            }
      }
    }
  }

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nbands, q0 = (item % nbands) * band, nq = imin(band, q_rows - q0);
    Carver tws{areas.of(tid)};
    T* win = tws.template take<T>(O * win_rows * pitch);
    T* yt = tws.template take<T>(band * SH * s.iw * C);  // the band's dx rows, pixel-major
    const T* dy = diff_dst + n * O * P;
    for (int64_t o = 0; o < O; ++o)
      fill_window(dy + o * P, s.oh, s.ow, lead_t, lead_l, q0, win_rows, pitch, win + o * win_rows * pitch);
    for (int64_t a = 0; a < SH; ++a) {
      const StridePhase& ra = rows_ph[a];
      const int64_t rows = imin(nq, ra.count - q0);
      for (int64_t b = 0; b < SW; ++b) {
        const StridePhase& cb = cols_ph[b];
        // dx pixel (S*r + a, S'*qx + b) of the band is yt's pixel (S*r + a) * iw + S'*qx + b.
        T* y0 = yt + (a * s.iw + b) * C;
        if (ra.taps == 0 || cb.taps == 0) {
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t qx = 0; qx < cb.count; ++qx)
              std::memset(y0 + (r * SH * s.iw + qx * SW) * C, 0, sizeof(T) * static_cast<std::size_t>(C));
          continue;
        }
        // Two rows per call with one channel vector (twice the accumulators per weight).
        const int width = static_cast<int>(cb.taps);
        const bool two_rows = kv == 1;
        const int64_t max_cols = direct_max_cols(two_rows ? 2 : 1, width, kv, kPhaseMaxCols);
        const int64_t cols = ceil_div(cb.count, ceil_div(cb.count, max_cols));
        const T* x0 = win + (lead_t - ra.lead) * pitch + (lead_l - cb.lead);
        for (int64_t r = 0; r < rows; r += two_rows ? 2 : 1) {
          const int nr = two_rows ? static_cast<int>(imin(2, rows - r)) : 1;
          for (int64_t qx = 0; qx < cb.count; qx += cols) {
            const int nc = static_cast<int>(imin(cols, cb.count - qx));
            for (int64_t o0 = 0; o0 < C; o0 += kv * L) {
              const int gkv = static_cast<int>(imin(kv, (C - o0) / L));
              const DirectArgs<T> da{x0 + r * pitch + qx, pitch, off_ph[a], O * ra.taps, w_ph[a][b] + o0, C,
                                     nullptr, y0 + (r * SH * s.iw + qx * SW) * C + o0, SW * C, SH * s.iw * C, false};
              phase_call_width<UK>(cb.taps, nr, gkv, nc, da);
            }
          }
        }
      }
    }
    const int64_t np = imin(nq * SH, s.ih - q0 * SH) * s.iw;
    store_pixel_major<UK>(yt, C, np, 0, C, diff_src + n * C * HW + q0 * SH * s.iw, HW);
  });
}

}  // namespace
}  // namespace convforge
