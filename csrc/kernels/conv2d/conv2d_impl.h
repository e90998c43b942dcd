// conv2d forward, backward-data and backward-weights as blocked matrix products whose operands
// are gathered from the images on the fly (implicit im2col), parameterised by a register-blocked
// micro-kernel. Each ISA source includes this file with its own compiler flags and instantiates
// the passes with its micro-kernel.
//
// Everything here has internal linkage (anonymous namespace): the same template compiled with
// -mavx512f in one file and without it in another must never be merged by the linker, or the
// portable path could end up running AVX-512 instructions. For the same reason nothing from the
// C++ standard library beyond memcpy/memset is used here.
//
// Micro-kernel contract (struct UK):
//   using T; static constexpr int MR, NR;
//   template <int M> static void run(int64_t kc, const T* a, const T* b, int64_t ldb,
//                                    T* c, int64_t ldc, int n, bool accumulate);
//   computes C[M x n] = (accumulate ? C : 0) + sum_{k < kc} a[k*M + i] * b[k*ldb + j], for
//   M <= MR rows and n <= NR columns; it reads exactly n columns of b and writes n of c.
//
// Determinism: every output element is produced by one work item that sums its terms in a fixed
// order, and the work decomposition depends on the problem only, never on the thread count.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/parallel.h"
#include "common/shapes.h"
#include "common/workspace.h"

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

// Calls UK::run<m> for a runtime m in [1, MR].
template <class UK, int M = UK::MR>
struct RowDispatch {
  static void call(int m, int64_t kc, const typename UK::T* a, const typename UK::T* b, int64_t ldb,
                   typename UK::T* c, int64_t ldc, int n, bool accumulate) {
    if (m == M) {
      UK::template run<M>(kc, a, b, ldb, c, ldc, n, accumulate);
    } else {
      RowDispatch<UK, M - 1>::call(m, kc, a, b, ldb, c, ldc, n, accumulate);
    }
  }
};
template <class UK>
struct RowDispatch<UK, 0> {
  static void call(int, int64_t, const typename UK::T*, const typename UK::T*, int64_t, typename UK::T*,
                   int64_t, int, bool) {}
};

// Where row k = (c, r, q) of the virtual im2col matrix reads from: kernel row r, column q.
struct KernelTap {
  int64_t c, r, q;
};
inline KernelTap tap_of(const ConvShape& s, int64_t k) {
  const int64_t per_c = s.kh * s.kw;
  const int64_t rq = k % per_c;
  return {k / per_c, rq / s.kw, rq % s.kw};
}

// Walks output pixels [p0, p0 + len) of one im2col row, split into runs that share an output
// row, and for each run the sub-range [lo, hi) of pixels that read real input (the rest read
// padding). visit(t, ih or -1, lo, hi, run_begin, run_end, iw_offset), with t the offset of
// the run's first pixel from p0, and the input column of output column o = o*sw + iw_offset.
template <class Visit>
void for_each_run(const ConvShape& s, int64_t r, int64_t q, int64_t p0, int64_t len, Visit&& visit) {
  const int64_t off_w = q * s.dw - s.pl;
  // Output columns whose input column o*sw + off_w lies in [0, iw).
  const int64_t o_lo = imin(off_w >= 0 ? 0 : ceil_div(-off_w, s.sw), s.ow);
  const int64_t o_hi = imin(imax(s.iw - off_w > 0 ? ceil_div(s.iw - off_w, s.sw) : 0, o_lo), s.ow);
  int64_t oh = p0 / s.ow, o = p0 % s.ow;
  for (int64_t t = 0; t < len; ++oh, o = 0) {
    const int64_t run = imin(s.ow - o, len - t);
    const int64_t ih = oh * s.sh - s.pt + r * s.dh;
    const int64_t e = o + run;
    const int64_t z1 = imin(imax(o_lo, o), e), z2 = imin(imax(o_hi, z1), e);
    visit(t, (ih >= 0 && ih < s.ih) ? ih : -1, z1, z2, o, e, off_w);
    t += run;
  }
}

// dst[t] = input value that output pixel p0 + t sees through tap (r, q) of channel plane x_c.
template <class T>
void im2col_row(const ConvShape& s, const T* x_c, int64_t r, int64_t q, int64_t p0, int64_t len, T* dst) {
  for_each_run(s, r, q, p0, len, [&](int64_t t, int64_t ih, int64_t lo, int64_t hi, int64_t b, int64_t e,
                                     int64_t off_w) {
    T* d = dst + t - b;  // indexed by output column
    if (ih < 0) {
      std::memset(d + b, 0, sizeof(T) * static_cast<std::size_t>(e - b));
      return;
    }
    const T* row = x_c + ih * s.iw + off_w;
    for (int64_t o = b; o < lo; ++o) d[o] = T(0);
    if (s.sw == 1) {
      std::memcpy(d + lo, row + lo, sizeof(T) * static_cast<std::size_t>(hi - lo));
    } else {
      for (int64_t o = lo; o < hi; ++o) d[o] = row[o * s.sw];
    }
    for (int64_t o = hi; o < e; ++o) d[o] = T(0);
  });
}

// The adjoint of im2col_row: dx_c[...] += src[t] for every pixel that reads a real input.
template <class T>
void col2im_row_add(const ConvShape& s, const T* src, int64_t r, int64_t q, int64_t p0, int64_t len, T* dx_c) {
  for_each_run(s, r, q, p0, len, [&](int64_t t, int64_t ih, int64_t lo, int64_t hi, int64_t b, int64_t,
                                     int64_t off_w) {
    if (ih < 0) return;
    const T* v = src + t - b;
    T* row = dx_c + ih * s.iw + off_w;
    if (s.sw == 1) {
      for (int64_t o = lo; o < hi; ++o) row[o] += v[o];
    } else {
      for (int64_t o = lo; o < hi; ++o) row[o * s.sw] += v[o];
    }
  });
}

// Packs rows [r0, r1) x columns [k0, k0 + kc) of A (element (i, k) at a[i*rs + k*cs]) into
// MR-row panels laid out [k][i], at pa + k0*M + r0*kc: the same formula for any partition of
// the rows into consecutive panels, so packer and consumer agree without a table.
template <class T, int MR>
void pack_a(const T* a, int64_t rs, int64_t cs, int64_t M, int64_t r0, int64_t r1, int64_t k0, int64_t kc, T* pa) {
  for (int64_t i0 = r0; i0 < r1; i0 += MR) {
    const int64_t m = imin(MR, r1 - i0);
    T* dst = pa + k0 * M + i0 * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t i = 0; i < m; ++i) dst[k * m + i] = a[(i0 + i) * rs + (k0 + k) * cs];
  }
}

// C[r0:r1, 0:n] (+)= A-panels(k0, kc) x B, for B row-major [kc x n] with leading dimension ldb.
// Column panels outside, row panels inside: one B micro-panel stays in L1 across all of A.
template <class UK>
void macro_kernel(const typename UK::T* pa, int64_t M, int64_t r0, int64_t r1, int64_t k0, int64_t kc,
                  const typename UK::T* b, int64_t ldb, int64_t n, typename UK::T* c, int64_t ldc, bool accumulate) {
  for (int64_t j = 0; j < n; j += UK::NR) {
    const int nr = static_cast<int>(imin(UK::NR, n - j));
    for (int64_t i0 = r0; i0 < r1; i0 += UK::MR) {
      const int m = static_cast<int>(imin(UK::MR, r1 - i0));
      RowDispatch<UK>::call(m, kc, pa + k0 * M + i0 * kc, b + j, ldb, c + (i0 - r0) * ldc + j, ldc, nr, accumulate);
    }
  }
}

constexpr int64_t kKc = 256;       // reduction block: one B micro-panel of kc x NR stays in L1
constexpr int64_t kPixBlock = 512;  // output pixels per work item (B block of kc x 512 in L2)

template <class UK>
void conv2d_fwd(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  const int64_t M = s.oc, K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  // A 1x1 kernel with unit stride and no padding reads the image itself as the B matrix.
  const bool pointwise =
      s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pb == 0 && s.pl == 0 && s.pr == 0;
  const int64_t nblk = ceil_div(P, kPixBlock);
  const int64_t NB = imin(round_up(ceil_div(P, nblk), UK::NR), P);
  const int64_t ldb = padded_ld<T>(NB);
  const int64_t KC = imin(K, kKc);
  const int64_t items = s.mb * nblk;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = pointwise ? 0 : carve_bytes<T>(KC * ldb);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(K * M) + threads * per_thread)))};
  T* pa = ws.template take<T>(K * M);
  char* thread_area = ws.p;

  for (int64_t k0 = 0; k0 < K; k0 += KC) pack_a<T, UK::MR>(wei, K, 1, M, 0, M, k0, imin(KC, K - k0), pa);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / nblk, j0 = (item % nblk) * NB, nb = imin(NB, P - j0);
    const T* x = src + n * s.ic * HW;
    T* y = dst + n * M * P + j0;
    T* bbuf = reinterpret_cast<T*>(thread_area + tid * per_thread);
    if (bias != nullptr) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < nb; ++j) y[i * P + j] = bias[i];
    }
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = imin(KC, K - k0);
      const T* b = x + k0 * P + j0;
      int64_t ld = P;
      if (!pointwise) {
        for (int64_t k = 0; k < kc; ++k) {
          const KernelTap tap = tap_of(s, k0 + k);
          im2col_row(s, x + tap.c * HW, tap.r, tap.q, j0, nb, bbuf + k * ldb);
        }
        b = bbuf;
        ld = ldb;
      }
      macro_kernel<UK>(pa, M, 0, M, k0, kc, b, ld, nb, y, P, k0 > 0 || bias != nullptr);
    }
  });
}

template <class UK>
void conv2d_bwd_data(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                     typename UK::T* diff_src) {
  using T = typename UK::T;
  // dcol[K x P] = W^T[K x OC] . dy[OC x P], then scattered back onto dx (col2im). The rows of
  // one input channel only touch that channel's plane, so (image, channel group) items never
  // write the same memory.
  const int64_t OC = s.oc, KHW = s.kh * s.kw, K = s.ic * KHW, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t cg = imax(1, imin(s.ic, 256 / KHW));
  const int64_t ngroups = ceil_div(s.ic, cg);
  const int64_t nblk = ceil_div(P, kPixBlock);
  const int64_t NB = imin(round_up(ceil_div(P, nblk), UK::NR), P);
  const int64_t ldd = padded_ld<T>(NB);
  const int64_t KC = imin(OC, kKc);
  const int64_t items = s.mb * ngroups;
  const int threads = plan_threads(items, s.flops());

  const int64_t per_thread = carve_bytes<T>(cg * KHW * ldd);
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(K * OC) + threads * per_thread)))};
  T* pa = ws.template take<T>(K * OC);
  char* thread_area = ws.p;

  // A = W^T: element (k, oc) at wei[oc*K + k]; panels never straddle a channel group.
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t r0 = g * cg * KHW, r1 = imin(s.ic, (g + 1) * cg) * KHW;
    for (int64_t k0 = 0; k0 < OC; k0 += KC) pack_a<T, UK::MR>(wei, 1, K, K, r0, r1, k0, imin(KC, OC - k0), pa);
  }

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t n = item / ngroups, g = item % ngroups;
    const int64_t c0 = g * cg, c1 = imin(s.ic, c0 + cg), r0 = c0 * KHW, r1 = c1 * KHW;
    const T* dy = diff_dst + n * OC * P;
    T* dx = diff_src + n * s.ic * HW;
    T* dcol = reinterpret_cast<T*>(thread_area + tid * per_thread);
    std::memset(dx + c0 * HW, 0, sizeof(T) * static_cast<std::size_t>((c1 - c0) * HW));
    for (int64_t j0 = 0; j0 < P; j0 += NB) {
      const int64_t nb = imin(NB, P - j0);
      for (int64_t k0 = 0; k0 < OC; k0 += KC)
        macro_kernel<UK>(pa, K, r0, r1, k0, imin(KC, OC - k0), dy + k0 * P + j0, P, nb, dcol, ldd, k0 > 0);
      for (int64_t row = r0; row < r1; ++row) {
        const KernelTap tap = tap_of(s, row);
        col2im_row_add(s, dcol + (row - r0) * ldd, tap.r, tap.q, j0, nb, dx + tap.c * HW);
      }
    }
  });
}

constexpr int64_t kMaxChunks = 16;                     // partial weight gradients reduced in order
constexpr int64_t kMaxPartialBytes = int64_t{64} << 20;  // bound on their memory
constexpr int64_t kPixChunk = 128;                     // pixels per reduction step

template <class UK>
void conv2d_bwd_weights(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                        typename UK::T* diff_wei, typename UK::T* diff_bias) {
  using T = typename UK::T;
  // dW[OC x K] = sum over images and pixels of dy[OC x P] . col^T[P x K]. Images are split into
  // a fixed number of chunks (from the problem size alone); each chunk sums into its own partial
  // gradient, and the partials are added in chunk order, so any thread count gives the same bits.
  const int64_t OC = s.oc, K = s.ic * s.kh * s.kw, P = s.oh * s.ow, HW = s.ih * s.iw;
  const int64_t wsize = OC * K;
  int64_t nchunks = imin(s.mb, kMaxChunks);
  nchunks = imax(1, imin(nchunks, kMaxPartialBytes / static_cast<int64_t>(sizeof(T) * (wsize + OC))));
  const int64_t per_chunk = ceil_div(s.mb, nchunks);
  nchunks = ceil_div(s.mb, per_chunk);
  const int64_t PB = imin(P, kPixChunk);
  const int64_t ldb = padded_ld<T>(K), ldt = padded_ld<T>(PB);
  const int threads = plan_threads(nchunks, s.flops());

  const int64_t per_thread = carve_bytes<T>(K * ldt) + carve_bytes<T>(PB * ldb) + carve_bytes<T>(PB * OC);
  const int64_t partial_count = nchunks > 1 ? nchunks * (wsize + OC) : 0;
  Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(carve_bytes<T>(partial_count) + threads * per_thread)))};
  T* partials = ws.template take<T>(partial_count);
  char* thread_area = ws.p;

  parallel_for(threads, nchunks, [&](int64_t chunk, int tid) {
    T* dw = nchunks > 1 ? partials + chunk * (wsize + OC) : diff_wei;
    T* db = nchunks > 1 && diff_bias != nullptr ? dw + wsize : diff_bias;
    Carver tws{thread_area + tid * per_thread};
    T* col = tws.template take<T>(K * ldt);   // [K x PB]: im2col of the pixel block
    T* colt = tws.template take<T>(PB * ldb);  // [PB x K]: its transpose, the B operand
    T* pa = tws.template take<T>(PB * OC);     // dy block packed as the A operand
    std::memset(dw, 0, sizeof(T) * static_cast<std::size_t>(wsize));
    if (db != nullptr) std::memset(db, 0, sizeof(T) * static_cast<std::size_t>(OC));
    const int64_t n_end = imin(s.mb, (chunk + 1) * per_chunk);
    for (int64_t n = chunk * per_chunk; n < n_end; ++n) {
      const T* x = src + n * s.ic * HW;
      const T* dy = diff_dst + n * OC * P;
      if (db != nullptr) {
        for (int64_t o = 0; o < OC; ++o) {
          T sum = T(0);
          for (int64_t p = 0; p < P; ++p) sum += dy[o * P + p];
          db[o] += sum;
        }
      }
      for (int64_t p0 = 0; p0 < P; p0 += PB) {
        const int64_t pb = imin(PB, P - p0);
        for (int64_t k = 0; k < K; ++k) {
          const KernelTap tap = tap_of(s, k);
          im2col_row(s, x + tap.c * HW, tap.r, tap.q, p0, pb, col + k * ldt);
        }
        for (int64_t p = 0; p < pb; ++p)
          for (int64_t k = 0; k < K; ++k) colt[p * ldb + k] = col[k * ldt + p];
        pack_a<T, UK::MR>(dy + p0, P, 1, OC, 0, OC, 0, pb, pa);
        macro_kernel<UK>(pa, OC, 0, OC, 0, pb, colt, ldb, K, dw, K, true);
      }
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
