// The weight gradient of a 3x3 unit-stride convolution by Winograd F(4x4, 3x3), in the
// channel-vector form (AVX-512, float, channels in whole vectors of 16; conv2d_winograd.h has
// the forward and the transforms).
//
// The forward tile is Y = A^T [(G g G^T) (.) (B^T d B)] A, bilinear in the kernel g and the 6x6
// input patch d; its derivative in g, for an output gradient dY on the tile, is
//     dg = G^T [ (A dY A^T) (.) (B^T d B) ] G,
// so for every frequency (a, b) of the 6x6 domain the sum over tiles (and images) is one matrix
// product M_ab[filter][channel] = sum over tiles t of dYt_ab[t][filter] * V_ab[t][channel], and
// dW[o][c] = G^T M[o][c] G at the end: 36 products per tile and (filter, channel) pair instead of
// the direct form's 144. The input transform is the forward's (frame, wino_input_tile); the
// output gradient's, A dY A^T (4x4 -> 6x6), runs on vectors of 16 filters from a pixel-major
// copy of dY (zeros past the output's edge).
//
// Determinism: images go in chunks fixed by the problem (image_chunks, as the outer form, with
// at most 4 MiB of partial M in all), each chunk's rows of tiles (across its images) in blocks
// fixed by the problem; within a block every accumulator runs over its tiles in order, blocks
// add into the chunk's partial M in order, and the chunks are summed in order before the final
// transform: the same bits on any number of threads. The bias gradient is summed from the
// pixel-major copy of dY, segment by segment in the same order.
//
// Accuracy: the same transforms on absolute values bound the error, with the tile sum (all the
// tiles of the batch) in place of the forward's channel sum (tests/winograd_bound.py).
// Non-finite values: an inf or NaN spreads through the transforms to terms the direct forms
// do not have, so a non-finite result sends the whole problem to the next algorithm.
#pragma once

#include "kernels/conv2d/conv2d_bwd_weights.h"
#include "kernels/conv2d/conv2d_winograd.h"

namespace convforge {
namespace {

#if defined(__AVX512F__)

// The 1-D output-gradient transform A y of 4-vectors y0..y3, 6 outputs (A = (A^T)^T).
#define CONVFORGE_WINO_A(y0, y1, y2, y3, o0, o1, o2, o3, o4, o5) \
  do {                                                          \
    const auto e_ = (y0) + (y2), f_ = (y1) + (y3);              \
    const auto g_ = (y0) + T(4) * (y2), h_ = T(2) * (y1) + T(8) * (y3); \
    o0 = (y0);                                                  \
    o1 = e_ + f_;                                               \
    o2 = e_ - f_;                                               \
    o3 = g_ + h_;                                               \
    o4 = g_ - h_;                                               \
    o5 = (y3);                                                  \
  } while (0)

// q[(a*6 + b)*ldf] = (A dY A^T)[a][b] for the 4x4 block dY[i][j] = y0[i*row + j*col]: one
// tile's output-gradient transform for one vector of 16 filters.
inline void wino_grad_tile(const float* y0, int64_t row, int64_t col, float* q, int64_t ldf) {
  using T = float;
  __m512 t[4][6];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const float* y = y0 + i * row;
    const __m512 a0 = _mm512_loadu_ps(y), a1 = _mm512_loadu_ps(y + col);
    const __m512 a2 = _mm512_loadu_ps(y + 2 * col), a3 = _mm512_loadu_ps(y + 3 * col);
    CONVFORGE_WINO_A(a0, a1, a2, a3, t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5]);
  }
#pragma GCC unroll 6
  for (int b = 0; b < 6; ++b) {
    __m512 o0, o1, o2, o3, o4, o5;
    CONVFORGE_WINO_A(t[0][b], t[1][b], t[2][b], t[3][b], o0, o1, o2, o3, o4, o5);
    wino_store_column(q, b, ldf, o0, o1, o2, o3, o4, o5);
  }
}
#undef CONVFORGE_WINO_A

// mt[j*IC] (+)= sum over tiles t < nt of v[16t .. 16t+15] * q[t*ldq + j], for j < NO filters
// (= with `first`, else +=): one frequency's products for one vector of 16 channels (v:
// [tile][16]) and NO filters (q: [tile][filter]), the tiles in order, the accumulators in
// registers across them. (Two channel vectors against 8 filters, 10 loads for 16 FMAs instead
// of 17, measured the same: 2.82-3.01 ms either way for 128 x 64 x 7x7, one thread.)
template <int NO>
void wino_weight_gemm(const float* v, const float* q, int64_t ldq, int64_t nt, float* mt, int64_t IC, bool first) {
  __m512 acc[NO];
#pragma GCC unroll 16
  for (int j = 0; j < NO; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t t = 0; t < nt; ++t) {
    const __m512 x = _mm512_loadu_ps(v + 16 * t);
    const float* qt = q + t * ldq;
#pragma GCC unroll 16
    for (int j = 0; j < NO; ++j) acc[j] = _mm512_fmadd_ps(x, _mm512_set1_ps(qt[j]), acc[j]);
  }
#pragma GCC unroll 16
  for (int j = 0; j < NO; ++j) {
    float* p = mt + j * IC;
    _mm512_storeu_ps(p, first ? acc[j] : _mm512_add_ps(_mm512_loadu_ps(p), acc[j]));  // first: M starts here
  }
}

// dw[(o*IC + c)*9 + 3r + q] = (G^T M G)[r][q] for the 16 channels c0.. of filter o, from
// m[f*ldf] (vectors of 16 channels, f = 6a + b).
inline void wino_weight_output(const float* m, int64_t ldf, float* dw) {
  // G^T's rows: the forward's G transposed (1/4, 1/6, 1/12, 1/24 rounded as there).
  const float g[3][6] = {{0.25f, -1.0f / 6, -1.0f / 6, 1.0f / 24, 1.0f / 24, 0.0f},
                         {0.0f, -1.0f / 6, 1.0f / 6, 1.0f / 12, -1.0f / 12, 0.0f},
                         {0.0f, -1.0f / 6, -1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f}};
  __m512 t[3][6];
#pragma GCC unroll 6
  for (int b = 0; b < 6; ++b) {
    __m512 col[6];
#pragma GCC unroll 6
    for (int a = 0; a < 6; ++a) col[a] = _mm512_loadu_ps(m + (a * 6 + b) * ldf);
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r) {
      __m512 s = _mm512_setzero_ps();
#pragma GCC unroll 6
      for (int a = 0; a < 6; ++a)
        if (g[r][a] != 0.0f) s = _mm512_fmadd_ps(_mm512_set1_ps(g[r][a]), col[a], s);
      t[r][b] = s;
    }
  }
  alignas(64) float out[9][16];
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r) {
#pragma GCC unroll 3
    for (int q = 0; q < 3; ++q) {
      __m512 s = _mm512_setzero_ps();
#pragma GCC unroll 6
      for (int b = 0; b < 6; ++b)
        if (g[q][b] != 0.0f) s = _mm512_fmadd_ps(_mm512_set1_ps(g[q][b]), t[r][b], s);
      _mm512_store_ps(out[3 * r + q], s);
    }
  }
  for (int c = 0; c < 16; ++c)
    for (int k = 0; k < 9; ++k) dw[c * 9 + k] = out[k][c];
}

constexpr int64_t kWinoWeightPartialBytes = int64_t{4} << 20;  // all the chunks' partial M, at most

// The heuristic (the list's `pays`; the form is float32's): at least 2/3 of the computed 4x4
// tiles is output. Measured 2026-12-04 against the outer form (its time / Winograd's, 1 / 2
// threads): 128 x 16ch 28x28 1.60 / 1.75, 128 x 32ch 14x14 1.44 / 1.45, 128 x 64ch 7x7 1.66 /
// 1.51, 32 x 64ch 56x56 1.75-1.92 / 1.44, 16 x 112ch 7x7 (64 tiles) 2.26 / 2.26, 1 x 64ch 7x7
// (4 tiles) 1.23 / 1.17, 1 x 16ch 28x28 1.52 / 1.53, 8 x 32ch 10x10 (69% output) 1.13 / 1.08;
// against it 16 x 16ch 5x5 (39%) 0.91 / 0.91 and 2 x 96ch 6x6 (56%) 0.58 / 0.78.
inline bool winograd_weights_pays(const ConvShape& s) {
  return 3 * s.oh * s.ow >= 2 * 16 * ceil_div(s.oh, 4) * ceil_div(s.ow, 4);
}

// The weight gradient (and the bias's, where diff_bias is not null) of s by Winograd; s must
// satisfy winograd_applies and winograd_channels_applies. Returns false, having written the
// outputs, when some value came out non-finite: the caller then recomputes them.
template <class UK>
bool conv2d_bwd_weights_winograd(const ConvShape& s, const float* diff_dst, const float* src, float* diff_wei,
                                 float* diff_bias) {
  const int64_t IC = s.ic, OC = s.oc, HW = s.ih * s.iw, OHW = s.oh * s.ow;
  const int64_t tx = ceil_div(s.ow, 4), ty = ceil_div(s.oh, 4);
  // Blocks of consecutive rows of tiles (across the images of a chunk: a 7x7 image has 4 tiles,
  // and every block adds its products into the chunk's M once), at most kWinoChannelTiles
  // tiles (their transforms, 36 x (IC + OC) values each, within kWinoBlockBytes); fixed by the
  // problem.
  const int64_t per_tile = kWinoFreq * (IC + OC) * static_cast<int64_t>(sizeof(float));
  const int64_t tiles = imax(1, imin(kWinoChannelTiles, kWinoBlockBytes / per_tile));
  const int64_t rows_per_block = imax(1, tiles / tx), ntmax = rows_per_block * tx;
  const int64_t seg_rows = imin(rows_per_block, ty);  // rows of one image in a block, at most
  const int64_t ldvf = ntmax * IC + 16, ldqf = ntmax * OC + 16;  // a vector more: L1 sets (as the forward)
  const int64_t fw = 4 * tx + 2, frame_rows = 4 * seg_rows + 2;
  const int64_t dyw = 4 * tx, dy_rows = 4 * seg_rows;
  const int64_t part_elems = kWinoFreq * OC * IC + OC;  // M [frequency][filter][channel], then the bias
  // Fewer chunks than the outer form's: each is 36 x IC x OC values (590 KB at 64 channels) to
  // make and sum, where the outer form's is 9 x IC x OC. A power of two of them, so that 2, 4, 8
  // or 16 threads share them evenly (32 images of 64 channels: 6 chunks of 6, 6, 6, 6, 6, 2
  // images ran 1.67x on two threads; 4 of 8 images are even).
  ImageChunks chunks = image_chunks<float>(s.mb, part_elems, kWinoWeightPartialBytes);
  int64_t even = 1;
  while (2 * even <= chunks.count) even *= 2;
  chunks.per_chunk = ceil_div(s.mb, even);
  chunks.count = ceil_div(s.mb, chunks.per_chunk);
  const int threads = plan_threads(chunks.count, s.flops());
  // dY as an image of OC channels, for wino_fill_frame: no padding, zeros past its edge.
  ConvShape ys{};
  ys.ic = OC, ys.ih = s.oh, ys.iw = s.ow;

  const int64_t per_thread = carve_bytes<float>(kWinoFreq * ldvf) + carve_bytes<float>(kWinoFreq * ldqf) +
                             carve_bytes<float>(frame_rows * fw * IC) + carve_bytes<float>(dy_rows * dyw * OC);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
      carve_bytes<float>(chunks.count * part_elems))))};
  float* partials = ws.template take<float>(chunks.count * part_elems);
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(per_thread), threads);

  parallel_for(threads, chunks.count, [&](int64_t chunk, int tid) {
    float* m = partials + chunk * part_elems;
    float* db = m + kWinoFreq * OC * IC;
    std::memset(db, 0, sizeof(float) * static_cast<std::size_t>(OC));
    Carver tws{areas.of(tid)};
    float* v = tws.template take<float>(kWinoFreq * ldvf);  // [frequency][channel / 16][tile][16]
    float* q = tws.template take<float>(kWinoFreq * ldqf);  // [frequency][tile][filter]
    float* frame = tws.template take<float>(frame_rows * fw * IC);
    float* dyt = tws.template take<float>(dy_rows * dyw * OC);  // dY pixel-major, zeros past the edge
    const int64_t n0 = chunk * chunks.per_chunk, n1 = imin(s.mb, n0 + chunks.per_chunk);
    for (int64_t g0 = n0 * ty; g0 < n1 * ty; g0 += rows_per_block) {
      const int64_t g1 = imin(g0 + rows_per_block, n1 * ty);
      // The block's rows in segments of one image each, transformed into v and q.
      const int64_t nt = for_each_image_segment(g0, g1, ty, tx, [&](int64_t n, int64_t r0, int64_t nr, int64_t tile) {
        wino_fill_frame(s, src + n * IC * HW, 4 * r0, 4 * nr + 2, fw, frame);
        wino_fill_frame(ys, diff_dst + n * OC * OHW, 4 * r0, 4 * nr, dyw, dyt);
        if (diff_bias != nullptr) {  // the bias gradient from the pixel-major copy (zeros past the edge)
          for (int64_t o0 = 0; o0 < OC; o0 += 16) {
            __m512 sum = _mm512_loadu_ps(db + o0);
            for (int64_t i = 0; i < 4 * nr * dyw; ++i) sum = _mm512_add_ps(sum, _mm512_loadu_ps(dyt + i * OC + o0));
            _mm512_storeu_ps(db + o0, sum);
          }
        }
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t x = 0; x < tx; ++x) {
            const int64_t t = tile + r * tx + x;
            for (int64_t c0 = 0; c0 < IC; c0 += 16)
              wino_input_tile(frame + (4 * r * fw + 4 * x) * IC + c0, fw * IC, IC, v + (c0 / 16 * ntmax + t) * 16, ldvf);
            for (int64_t o0 = 0; o0 < OC; o0 += 16)
              wino_grad_tile(dyt + (4 * r * dyw + 4 * x) * OC + o0, dyw * OC, OC, q + t * OC + o0, ldqf);
          }
      });
      const bool first = g0 == n0 * ty;  // the chunk's first block
      for (int64_t f = 0; f < kWinoFreq; ++f)
        for (int64_t c0 = 0; c0 < IC; c0 += 16)
          for (int64_t o0 = 0; o0 < OC; o0 += 16)
            wino_weight_gemm<16>(v + f * ldvf + c0 / 16 * ntmax * 16, q + f * ldqf + o0, OC, nt,
                                 m + (f * OC + o0) * IC + c0, IC, first);
    }
  });

  // The chunks summed in order into chunk 0 (each element's sum in chunk order, whichever
  // thread runs its range), then dW = G^T M G per (filter, channel vector).
  parallel_for_grains(threads, part_elems, 16 * 1024, [&](int64_t lo, int64_t hi, int) {
    for (int64_t k = 1; k < chunks.count; ++k) {
      const float* p = partials + k * part_elems;
      for (int64_t i = lo; i < hi; ++i) partials[i] += p[i];
    }
  });
  const float* m = partials;
  parallel_for(plan_threads(OC, 400.0 * static_cast<double>(IC * OC)), OC, [&](int64_t o, int) {
    for (int64_t c0 = 0; c0 < IC; c0 += 16) wino_weight_output(m + o * IC + c0, OC * IC, diff_wei + (o * IC + c0) * 9);
  });
  if (diff_bias != nullptr) std::memcpy(diff_bias, m + kWinoFreq * OC * IC, sizeof(float) * static_cast<std::size_t>(OC));
  return all_finite(diff_wei, s.wei_size()) && (diff_bias == nullptr || all_finite(diff_bias, OC));
}

#else
inline bool winograd_weights_pays(const ConvShape&) { return false; }
template <class UK>
bool conv2d_bwd_weights_winograd(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                                 typename UK::T* diff_wei, typename UK::T* diff_bias);
#endif  // __AVX512F__

}  // namespace
}  // namespace convforge
