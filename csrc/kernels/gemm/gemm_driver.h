// The blocked matrix-product driver over a micro-kernel (gemm/ukernel.h): packing of A into
// row panels, the macro-kernel that walks B's column panels, and the dot-product form, plus the
// integer and workspace helpers every driver uses. B is always addressed through row pointers,
// so conv2d (implicit im2col) and dense (plain rows) share it.
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
//
// Determinism: the drivers built on this decide their work decomposition from the problem
// alone, never from the thread count.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/parallel.h"
#include "common/workspace.h"
#include "kernels/gemm/ukernel.h"

namespace convforge {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Leading dimension for a scratch matrix: a multiple of 64 bytes would map every row of a
// micro-panel onto the same few L1 sets, so pad those by one cache line.
template <class T>
int64_t padded_ld(int64_t n) {
  const int64_t line = 64 / static_cast<int64_t>(sizeof(T));
  const int64_t ld = round_up(n, line);
  return (ld * static_cast<int64_t>(sizeof(T))) % 512 == 0 ? ld + line : ld;
}

// Micro-kernels are instantiated per block size; with_int bridges a runtime size to them.
template <int N>
struct IntTag {
  static constexpr int value = N;
};

// Calls f(IntTag<n>{}) for a runtime n in [1, N]; nothing for n outside that range (or N < 1).
template <int N, class F>
inline void with_int(int n, F&& f) {
  if constexpr (N >= 1) {
    if (n == N) {
      f(IntTag<N>{});
    } else {
      with_int<N - 1>(n, f);
    }
  }
}

// Hands out consecutive 64-byte aligned slices of one workspace buffer.
struct Carver {
  char* p;
  template <class T>
  T* take(int64_t count) {
    T* r = reinterpret_cast<T*>(p);
    p += aligned_count<T>(static_cast<std::size_t>(count)) * sizeof(T);
    return r;
  }
};
template <class T>
int64_t carve_bytes(int64_t count) {
  return static_cast<int64_t>(aligned_count<T>(static_cast<std::size_t>(count)) * sizeof(T));
}

constexpr int64_t kKc = 256;        // reduction block: one B micro-panel of kc x NR stays in L1
constexpr int64_t kDotBlock = 512;  // pixels per step of the weight-gradient dot products

// Rows per A panel for `rows` rows: as equal as possible, at most MR (16 rows -> 8 + 8, not
// 12 + 4, whose thin panel has too few accumulators to hide the FMA latency).
template <int MR>
int64_t panel_height(int64_t rows) {
  return ceil_div(rows, ceil_div(rows, MR));
}

// Packs rows [r0, r1) x columns [k0, k0 + kc) of A, element (i, k) = elem(i, k), into panels of
// panel_height rows laid out [k][i], at pa + k0*M + r0*kc: the same formula for any partition of
// the rows into consecutive panels, so packer and consumer agree without a table.
template <class T, int MR, class Elem>
void pack_a(Elem&& elem, int64_t M, int64_t r0, int64_t r1, int64_t k0, int64_t kc, T* pa) {
  const int64_t height = panel_height<MR>(r1 - r0);
  for (int64_t i0 = r0; i0 < r1; i0 += height) {
    const int64_t m = imin(height, r1 - i0);
    T* dst = pa + k0 * M + i0 * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t i = 0; i < m; ++i) dst[k * m + i] = elem(i0 + i, k0 + k);
  }
}

// C[r0:r1, 0:n] (+)= A-panels(k0, kc) x B, B's rows given by brow[0..kc) at column offset boff.
// Column panels outside, row panels inside: one B micro-panel stays in L1 across all of A.
template <class UK>
void macro_kernel(const typename UK::T* pa, int64_t M, int64_t r0, int64_t r1, int64_t k0, int64_t kc,
                  const typename UK::T* const* brow, int64_t boff, int64_t n, typename UK::T* c, int64_t ldc,
                  bool accumulate) {
  if constexpr (UK::kWideRows > 0) {
    if (r1 - r0 <= UK::kWideRows) {  // few rows: wider column panels keep enough accumulators
      const int m = static_cast<int>(r1 - r0);
      for (int64_t j = 0; j < n; j += 2 * UK::NR) {
        const int nr = static_cast<int>(imin(2 * UK::NR, n - j));
        with_int<UK::kWideRows>(m, [&](auto m_tag) {
          UK::template run_wide<decltype(m_tag)::value>(kc, pa + k0 * M + r0 * kc, brow, boff + j, c + j, ldc, nr,
                                                       accumulate);
        });
      }
      return;
    }
  }
  const int64_t height = panel_height<UK::MR>(r1 - r0);
  for (int64_t j = 0; j < n; j += UK::NR) {
    const int nr = static_cast<int>(imin(UK::NR, n - j));
    for (int64_t i0 = r0; i0 < r1; i0 += height) {
      const int m = static_cast<int>(imin(height, r1 - i0));
      with_int<UK::MR>(m, [&](auto m_tag) {
        UK::template run<decltype(m_tag)::value>(kc, pa + k0 * M + i0 * kc, brow, boff + j, c + (i0 - r0) * ldc + j,
                                                ldc, nr, accumulate);
      });
    }
  }
}

// C[M x K] += A.B^T over columns [off, off + len): A rows arows[0..M), B rows brows[0..K).
template <class UK>
void dot_kernel(int64_t M, int64_t K, const typename UK::T* const* arows, const typename UK::T* const* brows,
                int64_t off, int64_t len, typename UK::T* c, int64_t ldc) {
  for (int64_t i0 = 0; i0 < M; i0 += UK::DR) {
    const int mi = static_cast<int>(imin(UK::DR, M - i0));
    for (int64_t j0 = 0; j0 < K; j0 += UK::DC) {
      const int nj = static_cast<int>(imin(UK::DC, K - j0));
      with_int<UK::DR>(mi, [&](auto i_tag) {
        with_int<UK::DC>(nj, [&](auto j_tag) {
          constexpr int I = decltype(i_tag)::value, J = decltype(j_tag)::value;
          UK::template dot<I, J>(len, arows + i0, brows + j0, off, c + i0 * ldc + j0, ldc);
        });
      });
    }
  }
}

}  // namespace
}  // namespace convforge
