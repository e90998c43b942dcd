// The AVX-512F micro-kernel.
//   run: 12 rows x 32 columns (two zmm) of C in 24 registers; each step one row of B (two
//        vector loads) and 12 broadcasts of A. run_wide: up to 6 rows x 64 columns.
//   dot: 4 x 6 dot products along the pixels in 24 registers; each step 4 + 6 vector loads.
//   outer: ROWS*TAPS x KV accumulators (with the KV dy vectors and a broadcast, <= 32 zmm);
//        each pixel KV vector loads of dy and
//        ROWS*TAPS broadcasts of the input, folded into the FMAs as memory operands.
// Included only by sources compiled with -mavx512f (conv2d_avx512.cpp, dense_avx512.cpp).
#pragma once

#include "common/avx512.h"

#include "kernels/gemm/ukernel.h"

namespace convforge {
namespace {

struct UkernelAvx512 {
  using T = float;
  static constexpr int MR = 12, NR = 32, DR = 4, DC = 6;
  static constexpr int kOuterLanes = 16, kOuterRegs = 32;
  static constexpr int kWideRows = 6;  // 6 x 64 columns: 24 accumulators
  static constexpr int kDirectLanes = 16;

  // A few samples' dense forward (dense_fwd_few_rows), M rows of x (x[m*ldx + k]) against the
  // same w: every output y[m][j] = fma(x[m][k], w[k*ldw + j], .) over k = 0..kc-1 in order,
  // from init[j] (null: 0), the chain run_wide<M> computes, so the same bits.
  // gemv_regs: n <= 16 NV outputs a row in M x NV registers over all of x, each vector of w
  // loaded once for the M rows.
  static constexpr int kGemvLanes = 16, kGemvRegisters = 31;
  // The first min(cols, 16) lanes (cols >= 0).
  static __mmask16 lanes_mask(int64_t cols) {
    return cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << cols) - 1u);
  }
  template <int M, int NV>
  static void gemv_regs(int64_t kc, const float* x, int64_t ldx, const float* w, int64_t ldw, const float* init,
                        float* y, int64_t ldy, int n) {
    __mmask16 mask[NV];
    __m512 acc[M][NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      mask[v] = lanes_mask(n - 16 * v);
      const __m512 start = init != nullptr ? _mm512_maskz_loadu_ps(mask[v], init + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) acc[m][v] = start;
    }
    for (int64_t k = 0; k < kc; ++k, w += ldw) {
      __m512 wv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) wv[v] = _mm512_maskz_loadu_ps(mask[v], w + 16 * v);
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) {
        const __m512 xk = _mm512_set1_ps(x[m * ldx + k]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(xk, wv[v], acc[m][v]);
      }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(y + m * ldy + 16 * v, mask[v], acc[m][v]);
    }
  }
  // gemv_axpy: R rows of w (x's columns k..k+R-1: x[m*ldx + r]) added into M rows of outputs
  // kept in memory (wide layers): each output loaded and stored once per R rows of w, each
  // vector of w loaded once for the M rows.
  template <int R, int M>
  static void gemv_axpy(const float* w, int64_t ldw, const float* x, int64_t ldx, float* y, int64_t ldy, int64_t n) {
    __m512 xv[M][R];
#pragma GCC unroll 4
    for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) xv[m][r] = _mm512_set1_ps(x[m * ldx + r]);
    }
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 lanes = lanes_mask(n - j);
      __m512 acc[M];
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) acc[m] = _mm512_maskz_loadu_ps(lanes, y + m * ldy + j);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m512 wv = _mm512_maskz_loadu_ps(lanes, w + r * ldw + j);
#pragma GCC unroll 4
        for (int m = 0; m < M; ++m) acc[m] = _mm512_fmadd_ps(xv[m][r], wv, acc[m]);
      }
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) _mm512_mask_storeu_ps(y + m * ldy + j, lanes, acc[m]);
    }
  }

  template <int M>
  static void run_wide(int64_t kc, const float* a, const float* const* b, int64_t boff, float* c, int64_t ldc, int n,
                       bool accumulate) {
    if (n == 2 * NR) {
      body<M, 4, true>(kc, a, b, boff, c, ldc, n, accumulate);
    } else if (n > 48) {
      body<M, 4, false>(kc, a, b, boff, c, ldc, n, accumulate);
    } else if (n > 32) {
      body<M, 3, false>(kc, a, b, boff, c, ldc, n, accumulate);
    } else {
      run<M>(kc, a, b, boff, c, ldc, n, accumulate);
    }
  }

  // dst[p*ldd + o] = src[o*lds + p] for o, p < 16: a 16 x 16 transpose in registers
  // (transpose16x16) instead of 256 scattered stores.
  static void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    transpose16x16(r);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
  }

  // transpose16 for the first n < 16 source rows only: dst[p*ldd + o] = src[o*lds + p] for
  // o < n, p < 16 (masked stores of n lanes; rows o >= n neither read nor written).
  static void transpose16_rows(const float* src, int64_t lds, int n, float* dst, int64_t ldd) {
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < n ? _mm512_loadu_ps(src + i * lds) : _mm512_setzero_ps();
    transpose16x16(r);
    const __mmask16 lanes = static_cast<__mmask16>((1u << n) - 1u);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) _mm512_mask_storeu_ps(dst + i * ldd, lanes, r[i]);
  }

  template <int ROWS, int TAPS, int KV>
  static void outer(const OuterArgs<float>& a) {
    constexpr int N = ROWS * TAPS;
    __m512 acc[N][KV];
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) {
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) acc[j][v] = _mm512_loadu_ps(a.c + j * a.ldc + 16 * v);
    }
    const float* dyt = a.dyt;
    for (int64_t y = 0; y < a.rows; ++y) {
      const float* xr[ROWS];
#pragma GCC unroll 7
      for (int i = 0; i < ROWS; ++i) xr[i] = a.x[i] + y * a.xrowstep;
      for (int64_t z = 0, off = 0; z < a.cols; ++z, off += a.xstep, dyt += a.ldd) {
        __m512 d[KV];
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) d[v] = _mm512_loadu_ps(dyt + 16 * v);
#pragma GCC unroll 7
        for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 7
          for (int t = 0; t < TAPS; ++t) {
            const __m512 xv = _mm512_set1_ps(xr[i][off + t]);
#pragma GCC unroll 4
            for (int v = 0; v < KV; ++v) acc[i * TAPS + t][v] = _mm512_fmadd_ps(xv, d[v], acc[i * TAPS + t][v]);
          }
        }
      }
    }
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) {
#pragma GCC unroll 4
      for (int v = 0; v < KV; ++v) _mm512_storeu_ps(a.c + j * a.ldc + 16 * v, acc[j][v]);
    }
  }

  static constexpr int kSlideCols = 5;  // pixels per sliding block

  template <int ROWS, int TAPS>
  static void outer_slide(const OuterArgs<float>& a) {
    constexpr int N = ROWS * TAPS, C = kSlideCols;
    __m512 acc[N];
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) acc[j] = _mm512_loadu_ps(a.c + j * a.ldc);
    const float* dyt = a.dyt;
    const int64_t blocks_end = a.cols / C * C;
    for (int64_t y = 0; y < a.rows; ++y) {
      const float* xr[ROWS];
#pragma GCC unroll 7
      for (int i = 0; i < ROWS; ++i) xr[i] = a.x[i] + y * a.xrowstep;
      int64_t z = 0;
      for (; z < blocks_end; z += C, dyt += C * 16) {
        // Input column z + u is read by pixel z + u - t through tap t.
        __m512 d[C];
#pragma GCC unroll 14
        for (int u = 0; u < C + TAPS - 1; ++u) {
          if (u < C) d[u] = _mm512_loadu_ps(dyt + u * 16);
#pragma GCC unroll 7
          for (int i = 0; i < ROWS; ++i) {
            const __m512 xv = _mm512_set1_ps(xr[i][z + u]);
#pragma GCC unroll 7
            for (int t = 0; t < TAPS; ++t) {
              if (u - t >= 0 && u - t < C) acc[i * TAPS + t] = _mm512_fmadd_ps(xv, d[u - t], acc[i * TAPS + t]);
            }
          }
        }
      }
      for (; z < a.cols; ++z, dyt += 16) {  // the rest pixel by pixel, as outer
        const __m512 d = _mm512_loadu_ps(dyt);
#pragma GCC unroll 7
        for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 7
          for (int t = 0; t < TAPS; ++t)
            acc[i * TAPS + t] = _mm512_fmadd_ps(_mm512_set1_ps(xr[i][z + t]), d, acc[i * TAPS + t]);
        }
      }
    }
#pragma GCC unroll 28
    for (int j = 0; j < N; ++j) _mm512_storeu_ps(a.c + j * a.ldc, acc[j]);
  }

  template <int OCB, int NV>
  static void pixels(const PixelArgs<float>& a) {
    __mmask16 m[NV];
    const float* xs[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      m[v] = lanes_mask(a.lanes[v]);
      xs[v] = a.x + a.xoff[v];
    }
    __m512 acc[NV][OCB];
#pragma GCC unroll 8
    for (int o = 0; o < OCB; ++o) {
      const __m512 b = a.bias != nullptr ? _mm512_set1_ps(a.bias[o]) : _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[v][o] = b;
    }
    const float* w = a.w;
    for (int64_t t = 0; t < a.taps; ++t, w += OCB) {
      const int64_t off = a.tap_off[t];
      __m512 xv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) xv[v] = _mm512_maskz_loadu_ps(m[v], xs[v] + off);
#pragma GCC unroll 8
      for (int o = 0; o < OCB; ++o) {
        const __m512 wb = _mm512_set1_ps(w[o]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[v][o] = _mm512_fmadd_ps(xv[v], wb, acc[v][o]);
      }
    }
#pragma GCC unroll 8
    for (int o = 0; o < OCB; ++o) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        __m512 y = acc[v][o];
        if (a.relu) y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NLE_UQ), y);
        _mm512_mask_storeu_ps(a.y + o * a.ldy + a.yoff[v], m[v], y);
      }
    }
  }

  template <int ROWS, int COLS, int KW, int KV, int SW>
  static void direct(const DirectArgs<float>& a) {
    __m512 acc[ROWS][COLS][KV];
#pragma GCC unroll 4
    for (int v = 0; v < KV; ++v) {
      const __m512 b = a.bias != nullptr ? _mm512_loadu_ps(a.bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 2
      for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 12
        for (int j = 0; j < COLS; ++j) acc[i][j][v] = b;
      }
    }
    const float* w = a.w;
    for (int64_t p = 0; p < a.pairs; ++p, w += KW * a.ldw) {
      __m512 wv[KW][KV];
#pragma GCC unroll 7
      for (int q = 0; q < KW; ++q) {
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) wv[q][v] = _mm512_loadu_ps(w + q * a.ldw + 16 * v);
      }
#pragma GCC unroll 2
      for (int i = 0; i < ROWS; ++i) {
        const float* xr = a.x + i * a.xrowstep + a.pair_off[p];
        // Input column c feeds output pixel (c - q) / SW through tap q.
#pragma GCC unroll 32
        for (int c = 0; c < (COLS - 1) * SW + KW; ++c) {
          const __m512 xv = _mm512_set1_ps(xr[c]);
#pragma GCC unroll 7
          for (int q = 0; q < KW; ++q) {
            if (c - q >= 0 && (c - q) % SW == 0 && (c - q) / SW < COLS) {
#pragma GCC unroll 4
              for (int v = 0; v < KV; ++v)
                acc[i][(c - q) / SW][v] = _mm512_fmadd_ps(xv, wv[q][v], acc[i][(c - q) / SW][v]);
            }
          }
        }
      }
    }
#pragma GCC unroll 2
    for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 12
      for (int j = 0; j < COLS; ++j) {
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) {
          __m512 y = acc[i][j][v];
          // relu_value: keep y unless y <= 0 (false for NaN, so NaN stays; -0 becomes +0).
          if (a.relu) y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NLE_UQ), y);
          _mm512_storeu_ps(a.y + i * a.yrowstep + j * a.ldy + 16 * v, y);
        }
      }
    }
  }

  template <int M>
  static void run(int64_t kc, const float* a, const float* const* b, int64_t boff, float* c, int64_t ldc, int n,
                  bool accumulate) {
    if (n == NR) {
      body<M, 2, true>(kc, a, b, boff, c, ldc, n, accumulate);
    } else if (n > 16) {
      body<M, 2, false>(kc, a, b, boff, c, ldc, n, accumulate);
    } else {
      body<M, 1, false>(kc, a, b, boff, c, ldc, n, accumulate);
    }
  }

  // Sum of the 16 lanes, folded with AVX-512F shuffles only (GCC 12 warns spuriously inside
  // _mm512_extractf64x4_pd).
  static float hsum(__m512 v) {
    __m512 t = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm512_add_ps(t, _mm512_shuffle_f32x4(t, t, _MM_SHUFFLE(2, 3, 0, 1)));
    __m128 s4 = _mm512_castps512_ps128(t);
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    return _mm_cvtss_f32(s4);
  }

  template <int I, int J>
  static void dot(int64_t len, const float* const* a, const float* const* b, int64_t off, float* c, int64_t ldc) {
    __m512 acc[I][J];
#pragma GCC unroll 4
    for (int i = 0; i < I; ++i) {
#pragma GCC unroll 6
      for (int j = 0; j < J; ++j) acc[i][j] = _mm512_setzero_ps();
    }
    const float* ap[I];
    const float* bp[J];
#pragma GCC unroll 4
    for (int i = 0; i < I; ++i) ap[i] = a[i] + off;
#pragma GCC unroll 6
    for (int j = 0; j < J; ++j) bp[j] = b[j] + off;
    int64_t p = 0;
    for (; p + 16 <= len; p += 16) {
      __m512 av[I];
#pragma GCC unroll 4
      for (int i = 0; i < I; ++i) av[i] = _mm512_loadu_ps(ap[i] + p);
#pragma GCC unroll 6
      for (int j = 0; j < J; ++j) {
        const __m512 bv = _mm512_loadu_ps(bp[j] + p);
#pragma GCC unroll 4
        for (int i = 0; i < I; ++i) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
      }
    }
    if (p < len) {  // masked tail: never reads past a row's end
      const __mmask16 m = static_cast<__mmask16>((1u << (len - p)) - 1u);
      __m512 av[I];
#pragma GCC unroll 4
      for (int i = 0; i < I; ++i) av[i] = _mm512_maskz_loadu_ps(m, ap[i] + p);
#pragma GCC unroll 6
      for (int j = 0; j < J; ++j) {
        const __m512 bv = _mm512_maskz_loadu_ps(m, bp[j] + p);
#pragma GCC unroll 4
        for (int i = 0; i < I; ++i) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < I; ++i) {
#pragma GCC unroll 6
      for (int j = 0; j < J; ++j) c[i * ldc + j] += hsum(acc[i][j]);
    }
  }

  // NV vectors of 16 columns; masks keep every load and store inside the n real columns,
  // since NumPy buffers have no slack past their end. Full panels skip the masks.
  template <int M, int NV, bool FULL>
  static void body(int64_t kc, const float* a, const float* const* b, int64_t boff, float* c, int64_t ldc, int n,
                   bool accumulate) {
    __mmask16 mask[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const int cols = n - 16 * v;
      mask[v] = lanes_mask(cols);
    }
    __m512 acc[M][NV];
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[i][v] = accumulate ? _mm512_maskz_loadu_ps(mask[v], c + i * ldc + 16 * v) : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; ++k, a += M) {
      const float* bk = b[k] + boff;
      __m512 bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = FULL ? _mm512_loadu_ps(bk + 16 * v) : _mm512_maskz_loadu_ps(mask[v], bk + 16 * v);
#pragma GCC unroll 12
      for (int i = 0; i < M; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
#pragma GCC unroll 12
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
    }
  }
};

static_assert(ukernel_traits_ok<UkernelAvx512>());

}  // namespace
}  // namespace convforge
