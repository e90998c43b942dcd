// The AVX2+FMA micro-kernel (no direct or pixels entry points).
//   run: 6 rows x 16 columns (two ymm) of C in 12 registers.
//   dot: 3 x 3 dot products along the pixels in 9 registers (16 ymm in all).
//   outer / outer_slide: UkernelAvx512's at 8 lanes in 16 registers (the weight gradient as
//        outer products; with only the dot forms, AVX2's weight gradients ran 2.7-2.9x the
//        AVX-512 ones where the other passes ran 1.0-2.3x).
// Included only by sources compiled with -mavx2 -mfma (conv2d_avx2.cpp, dense_avx2.cpp).
#pragma once

#include <immintrin.h>

#include "kernels/gemm/ukernel.h"

namespace convforge {
namespace {

// Sliding window of 8 lanes over this table gives a load/store mask for 0..8 columns.
alignas(64) const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

struct UkernelAvx2 {
  using T = float;
  static constexpr int MR = 6, NR = 16, DR = 3, DC = 3;
  static constexpr int kOuterLanes = 8, kOuterRegs = 16;  // outer: 8 lanes, 16 ymm
  static constexpr int kWideRows = 0;                    // no run_wide
  static constexpr int kDirectLanes = 0;                 // no direct forward kernel

  // A few samples' dense forward (dense_fwd_few_rows), M rows of x (x[m*ldx + k]) against the
  // same w: every output y[m][j] = fma(x[m][k], w[k*ldw + j], .) over k = 0..kc-1 in order,
  // from init[j] (null: 0), the chain run<M> computes, so the same bits.
  // gemv_regs: n <= 8 NV outputs a row in M x NV registers over all of x, each vector of w
  // loaded once for the M rows.
  static constexpr int kGemvLanes = 8, kGemvRegisters = 16;
  // The first min(cols, 8) lanes (cols >= 0), for masked loads and stores.
  static __m256i lanes_mask(int64_t cols) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - (cols >= 8 ? 8 : cols)));
  }
  template <int M, int NV>
  static void gemv_regs(int64_t kc, const float* x, int64_t ldx, const float* w, int64_t ldw, const float* init,
                        float* y, int64_t ldy, int n) {
    __m256i mask[NV];
    __m256 acc[M][NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      mask[v] = lanes_mask(n - 8 * v);
      const __m256 start = init != nullptr ? _mm256_maskload_ps(init + 8 * v, mask[v]) : _mm256_setzero_ps();
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) acc[m][v] = start;
    }
    for (int64_t k = 0; k < kc; ++k, w += ldw) {
      __m256 wv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) wv[v] = _mm256_maskload_ps(w + 8 * v, mask[v]);
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) {
        const __m256 xk = _mm256_broadcast_ss(x + m * ldx + k);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm256_fmadd_ps(xk, wv[v], acc[m][v]);
      }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) _mm256_maskstore_ps(y + m * ldy + 8 * v, mask[v], acc[m][v]);
    }
  }
  // gemv_axpy: R rows of w (x's columns k..k+R-1: x[m*ldx + r]) added into M rows of outputs
  // kept in memory (wide layers): each output loaded and stored once per R rows of w, each
  // vector of w loaded once for the M rows.
  template <int R, int M>
  static void gemv_axpy(const float* w, int64_t ldw, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t n) {
    const auto columns = [&](int64_t j, auto load, auto store) {
      __m256 acc[M];
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) acc[m] = load(y + m * ldy + j);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256 wv = load(w + r * ldw + j);
#pragma GCC unroll 4
        for (int m = 0; m < M; ++m) acc[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + m * ldx + r), wv, acc[m]);
      }
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) store(y + m * ldy + j, acc[m]);
    };
    // Whole vectors plainly, only the last part-vector masked: vmaskmovps stores are microcoded
    // on AMD cores, and masked throughout, a one-image 784 -> 512 layer took 66 us here against
    // 36 for the portable loops (AMD EPYC, CONVFORGE_MAX_ISA=avx2).
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
      columns(j, [](const float* p) { return _mm256_loadu_ps(p); }, [](float* p, __m256 v) { _mm256_storeu_ps(p, v); });
    if (j < n) {
      const __m256i lanes = lanes_mask(n - j);
      columns(j, [lanes](const float* p) { return _mm256_maskload_ps(p, lanes); },
              [lanes](float* p, __m256 v) { _mm256_maskstore_ps(p, lanes, v); });
    }
  }

  // dst[p*ldd + o] = src[o*lds + p] for o, p < kOuterLanes (8): the outer path's dy block to
  // pixel-major (the contract's transpose16, at this kernel's lane count).
  static void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
  }

  template <int ROWS, int TAPS, int KV>
  static void outer(const OuterArgs<float>& a) {
    constexpr int N = ROWS * TAPS;
    __m256 acc[N][KV];
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) {
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) acc[j][v] = _mm256_loadu_ps(a.c + j * a.ldc + 8 * v);
    }
    const float* dyt = a.dyt;
    for (int64_t y = 0; y < a.rows; ++y) {
      const float* xr[ROWS];
#pragma GCC unroll 7
      for (int i = 0; i < ROWS; ++i) xr[i] = a.x[i] + y * a.xrowstep;
      for (int64_t z = 0, off = 0; z < a.cols; ++z, off += a.xstep, dyt += a.ldd) {
        __m256 d[KV];
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) d[v] = _mm256_loadu_ps(dyt + 8 * v);
#pragma GCC unroll 7
        for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 7
          for (int t = 0; t < TAPS; ++t) {
            const __m256 xv = _mm256_broadcast_ss(xr[i] + off + t);
#pragma GCC unroll 4
            for (int v = 0; v < KV; ++v) acc[i * TAPS + t][v] = _mm256_fmadd_ps(xv, d[v], acc[i * TAPS + t][v]);
          }
        }
      }
    }
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) {
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) _mm256_storeu_ps(a.c + j * a.ldc + 8 * v, acc[j][v]);
    }
  }

  static constexpr int kSlideCols = 5;  // pixels per sliding block

  template <int ROWS, int TAPS>
  static void outer_slide(const OuterArgs<float>& a) {
    constexpr int N = ROWS * TAPS, C = kSlideCols;
    __m256 acc[N];
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) acc[j] = _mm256_loadu_ps(a.c + j * a.ldc);
    const float* dyt = a.dyt;
    const int64_t blocks_end = a.cols / C * C;
    for (int64_t y = 0; y < a.rows; ++y) {
      const float* xr[ROWS];
#pragma GCC unroll 7
      for (int i = 0; i < ROWS; ++i) xr[i] = a.x[i] + y * a.xrowstep;
      int64_t z = 0;
      for (; z < blocks_end; z += C, dyt += C * 8) {
        // Input column z + u is read by pixel z + u - t through tap t.
        __m256 d[C];
#pragma GCC unroll 14
        for (int u = 0; u < C + TAPS - 1; ++u) {
          if (u < C) d[u] = _mm256_loadu_ps(dyt + u * 8);
#pragma GCC unroll 7
          for (int i = 0; i < ROWS; ++i) {
            const __m256 xv = _mm256_broadcast_ss(xr[i] + z + u);
#pragma GCC unroll 7
            for (int t = 0; t < TAPS; ++t) {
              if (u - t >= 0 && u - t < C) acc[i * TAPS + t] = _mm256_fmadd_ps(xv, d[u - t], acc[i * TAPS + t]);
            }
          }
        }
      }
      for (; z < a.cols; ++z, dyt += 8) {  // the rest pixel by pixel, as outer
        const __m256 d = _mm256_loadu_ps(dyt);
#pragma GCC unroll 7
        for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 7
          for (int t = 0; t < TAPS; ++t)
            acc[i * TAPS + t] = _mm256_fmadd_ps(_mm256_broadcast_ss(xr[i] + z + t), d, acc[i * TAPS + t]);
        }
      }
    }
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) _mm256_storeu_ps(a.c + j * a.ldc, acc[j]);
  }

  template <int M>
  static void run(int64_t kc, const float* a, const float* const* b, int64_t boff, float* c, int64_t ldc, int n,
                  bool accumulate) {
    // A full panel (n = 16, or 8 in one vector) loads and stores plainly: vmaskmovps stores are
    // microcoded on AMD cores, and every micro-tile ends with 12 of them.
    if (n == 16) {
      body<M, 2, true>(kc, a, b, boff, c, ldc, n, accumulate);
    } else if (n > 8) {
      body<M, 2, false>(kc, a, b, boff, c, ldc, n, accumulate);
    } else if (n == 8) {
      body<M, 1, true>(kc, a, b, boff, c, ldc, n, accumulate);
    } else {
      body<M, 1, false>(kc, a, b, boff, c, ldc, n, accumulate);
    }
  }

  static float hsum(__m256 v) {
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
  }

  template <int I, int J>
  static void dot(int64_t len, const float* const* a, const float* const* b, int64_t off, float* c, int64_t ldc) {
    __m256 acc[I][J];
#pragma GCC unroll 3
    for (int i = 0; i < I; ++i) {
#pragma GCC unroll 3
      for (int j = 0; j < J; ++j) acc[i][j] = _mm256_setzero_ps();
    }
    const float* ap[I];
    const float* bp[J];
#pragma GCC unroll 3
    for (int i = 0; i < I; ++i) ap[i] = a[i] + off;
#pragma GCC unroll 3
    for (int j = 0; j < J; ++j) bp[j] = b[j] + off;
    int64_t p = 0;
    for (; p + 8 <= len; p += 8) {
      __m256 av[I];
#pragma GCC unroll 3
      for (int i = 0; i < I; ++i) av[i] = _mm256_loadu_ps(ap[i] + p);
#pragma GCC unroll 3
      for (int j = 0; j < J; ++j) {
        const __m256 bv = _mm256_loadu_ps(bp[j] + p);
#pragma GCC unroll 3
        for (int i = 0; i < I; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
      }
    }
    if (p < len) {  // masked tail: never reads past a row's end
      const __m256i m = lanes_mask(len - p);
      __m256 av[I];
#pragma GCC unroll 3
      for (int i = 0; i < I; ++i) av[i] = _mm256_maskload_ps(ap[i] + p, m);
#pragma GCC unroll 3
      for (int j = 0; j < J; ++j) {
        const __m256 bv = _mm256_maskload_ps(bp[j] + p, m);
#pragma GCC unroll 3
        for (int i = 0; i < I; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
      }
    }
#pragma GCC unroll 3
    for (int i = 0; i < I; ++i) {
#pragma GCC unroll 3
      for (int j = 0; j < J; ++j) c[i * ldc + j] += hsum(acc[i][j]);
    }
  }

  template <int M, int NV, bool kFull>
  static void body(int64_t kc, const float* a, const float* const* b, int64_t boff, float* c, int64_t ldc, int n,
                   bool accumulate) {
    __m256i mask[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      mask[v] = lanes_mask(n - 8 * v);
    }
    const auto load = [&](const float* p, int v) { return kFull ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask[v]); };
    __m256 acc[M][NV];
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = accumulate ? load(c + i * ldc + 8 * v, v) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; ++k, a += M) {
      const float* bk = b[k] + boff;
      __m256 bv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) bv[v] = load(bk + 8 * v, v);
#pragma GCC unroll 6
      for (int i = 0; i < M; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        if constexpr (kFull) _mm256_storeu_ps(c + i * ldc + 8 * v, acc[i][v]);
        else _mm256_maskstore_ps(c + i * ldc + 8 * v, mask[v], acc[i][v]);
      }
    }
  }
};

static_assert(ukernel_traits_ok<UkernelAvx2>());

}  // namespace
}  // namespace convforge
