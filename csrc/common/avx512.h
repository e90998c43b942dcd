// First include of every AVX-512 source (those are compiled with -mavx512f).
#pragma once

#include <immintrin.h>

// GCC 12 reports the deliberately undefined pass-through operand inside its own AVX-512
// intrinsics (_mm512_undefined_ps) as "used uninitialized": a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// r[p] = column p of the 16 x 16 matrix whose row o is r[o] (r[p] lane o = old r[o] lane p):
// a transpose in registers, in 32-bit, 64-bit and two 128-bit shuffle stages.
inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4k + j]: element j of each 128-bit lane, from rows 4k..4k+3.
#pragma GCC unroll 4
  for (int k = 0; k < 16; k += 4) {
    r[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
    r[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
    r[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
    r[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
  }
  // Column 4L + j gathers lane L of r[j], r[4 + j], r[8 + j], r[12 + j].
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44), v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44),
                 v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    t[0 + j] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
