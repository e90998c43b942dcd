// Dense (fully connected) layers on the gemm micro-kernels (kernels/gemm/). Activations are rows of features
// (batch x features) and the weights are Keras's (in_features x units):
//   forward           y[N x U]  = x[N x I] . w[I x U] (+ b)   packed rows of x times rows of w
//   backward weights  dw[I x U] = x^T . dy[N x U]             packed columns of x times rows of dy
//                     db[U]     = sum over the batch of dy
//   backward data     dx[N x I] = dy . w^T                    dot products of rows of dy and of w
// Each dense_<isa>.cpp includes this file after its micro-kernel (gemm/ukernel_<isa>.h) and
// instantiates the passes with it (same internal-linkage rule as gemm/ukernel.h).
//
// Determinism: work items are blocks of output rows or columns; each computes its elements over
// the whole reduction in a fixed order, and the blocks depend on the problem only, never on the
// threads.
#pragma once

#include "common/shapes.h"
#include "kernels/gemm/gemm_driver.h"

namespace convforge {
namespace {

// Output rows [row_begin(i), row_begin(i + 1)) of item i when `rows` rows are split into
// `items` nearly equal blocks (a 64-row batch on a 12-row kernel: 6 items of 10-11 rows, not
// five of 12 and a thin one of 4).
inline int64_t row_begin(int64_t item, int64_t items, int64_t rows) { return item * rows / items; }

// C[rows x n] (+)= A[rows x K] . B[K x n] for one block of rows: A element (i, k) = elem(i, k),
// packed per reduction block into `pa` (rows x kKc); B row k at brow[k]. accumulate: add to C.
template <class UK, class Elem>
void gemm_rows(Elem&& elem, int64_t rows, int64_t K, const typename UK::T* const* brow, int64_t n,
               typename UK::T* c, int64_t ldc, bool accumulate, typename UK::T* pa) {
  for (int64_t k0 = 0; k0 < K; k0 += kKc) {
    const int64_t kc = imin(kKc, K - k0);
    pack_a<typename UK::T, UK::MR>([&](int64_t i, int64_t k) { return elem(i, k0 + k); }, rows, 0, rows, 0, kc, pa);
    macro_kernel<UK>(pa, rows, 0, rows, 0, kc, brow + k0, 0, n, c, ldc, accumulate || k0 > 0);
  }
}

// Blocks of at most MR rows, so that each block is one A panel.
template <class UK>
int64_t row_items(int64_t rows) {
  return ceil_div(rows, UK::MR);
}

constexpr int64_t kDenseRowChunk = 1024;
constexpr int64_t kDenseColumns = 64;  // output columns per work item of the packed forms
// Backward-data packs dy once per thread up to this many values (256 KiB of float), else once.
constexpr int64_t kDenseOwnPackValues = int64_t{1} << 16;

// One item per A panel of at most MR rows, each over all of w: no scratch beyond one panel,
// and w's reduction block (kKc rows) read from L2 by every item while it fits there.
template <class UK>
void dense_fwd_row_panels(const DenseShape& s, const typename UK::T* src, const typename UK::T* wei,
                          const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  const int64_t N = s.mb, I = s.ic, U = s.oc;
  const int64_t items = row_items<UK>(N);
  const int threads = plan_threads(items, s.flops());
  Carver ws{static_cast<char*>(thread_workspace(
      static_cast<std::size_t>(carve_bytes<const T*>(I))))};
  const T** brow = ws.template take<const T*>(I);
  for (int64_t k = 0; k < I; ++k) brow[k] = wei + k * U;
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(carve_bytes<T>(UK::MR * kKc)), threads);

  parallel_for(threads, items, [&](int64_t item, int tid) {
    const int64_t r0 = row_begin(item, items, N), rows = row_begin(item + 1, items, N) - r0;
    T* y = dst + r0 * U;
    if (bias != nullptr) {
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < U; ++j) y[i * U + j] = bias[j];
    }
    Carver tws{areas.of(tid)};
    const T* x = src + r0 * I;
    gemm_rows<UK>([&](int64_t i, int64_t k) { return x[i * I + k]; }, rows, I, brow, U, y, U, bias != nullptr,
                  tws.template take<T>(UK::MR * kKc));
  });
}

// The forward in two phases, as the backward-data's packed form: x packed into row panels once,
// then column blocks of y, each over every row panel, so that a micro-panel of w (kKc rows x NR
// columns) is loaded once per row block rather than once per 12 rows. With one item per 12-row
// panel (the form before this one) every item streamed all of w for 24 FMAs per vector of w:
// 256 x 1024 x 1024 ran at 61 GFLOP/s on one thread of a 177 GFLOP/s Intel core (PyTorch 1.9x
// faster), while the same products in the packed backward ran at 73% of the peak. Rows go in
// chunks of at most kDenseRowChunk so that the packed x stays a bounded scratch.
template <class UK>
void dense_fwd_packed(const DenseShape& s, const typename UK::T* src, const typename UK::T* wei,
                      const typename UK::T* bias, typename UK::T* dst) {
  using T = typename UK::T;
  const int64_t N = s.mb, I = s.ic, U = s.oc;
  const int64_t KC = imin(I, kKc), kblocks = ceil_div(I, KC), col_items = ceil_div(U, kDenseColumns);
  const int64_t chunk = imin(N, kDenseRowChunk);
  const int threads = plan_threads(col_items, s.flops());  // phase 2's items: the threads that pay
  Carver ws{static_cast<char*>(
      thread_workspace(static_cast<std::size_t>(carve_bytes<T>(chunk * I) + carve_bytes<const T*>(I))))};
  T* pa = ws.template take<T>(chunk * I);
  const T** brow = ws.template take<const T*>(I);
  for (int64_t k = 0; k < I; ++k) brow[k] = wei + k * U;
  for (int64_t n0 = 0; n0 < N; n0 += chunk) {
    const int64_t rows = imin(chunk, N - n0);
    const T* x = src + n0 * I;
    T* y = dst + n0 * U;
    const int64_t height = panel_height<UK::MR>(rows), panels = ceil_div(rows, height);
    // Phase 1: one item per row panel and reduction block, the layout macro_kernel reads.
    parallel_for(threads, panels * kblocks, [&](int64_t item, int) {
      const int64_t p = item / kblocks, k0 = item % kblocks * KC;
      const int64_t r0 = p * height, r1 = imin(r0 + height, rows);
      pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return x[i * I + k]; }, rows, r0, r1, k0, imin(KC, I - k0), pa);
    });
    // Phase 2: y[:, c0:c0 + nb] over the whole reduction, in KC blocks, after the bias.
    parallel_for(threads, col_items, [&](int64_t item, int) {
      const int64_t c0 = item * kDenseColumns, nb = imin(kDenseColumns, U - c0);
      if (bias != nullptr) {
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < nb; ++j) y[i * U + c0 + j] = bias[c0 + j];
      }
      for (int64_t k0 = 0; k0 < I; k0 += KC)
        macro_kernel<UK>(pa, rows, 0, rows, k0, imin(KC, I - k0), brow + k0, c0, nb, y + c0, U,
                         bias != nullptr || k0 > 0);
    });
  }
}

// The packed form where a reduction block of w (kKc x U) no longer stays in L2 next to the
// rest and there are rows to share it: 256 x 1024 x 1024 1.6x (1 thread) and 1.7x (2) faster
// than one item per panel, while at U <= 256 (LeNet-5's layers, 4096 x 256 x 256) the
// per-panel form was 10-40% faster (no scratch pass over x, one parallel region). Both give
// the same bits: each element's sum runs over the same reduction blocks in the same order.
constexpr double kDenseL2Budget = 512.0 * 1024.0;

// A few samples (a one-image predict, a small batch): y = x . w (+ b) reading w row after row,
// each row once for all the samples. The row-panel form read w in 64-column panels, each row's
// piece of a wide layer a page from the last, and a batch of one or two was one work item:
// 1024 x 1024 took 117 us for one image (36 GB/s of w) on one or two threads, 92 for two
// images, against NumPy's 34 for one. Items are ranges of about kGemvItemColumns columns on
// two threads or more, all of them on one (w then streams in order: 4096 x 1024 took 735 us
// in 512-column ranges on one thread, 565 in one range). Outputs that fit in registers with a
// row of w (kGemvRegisters; at most 8 vectors a row) stay there over all of x; wider ones take
// four rows of w per pass over the outputs in memory (one row per pass: 1024 x 1024 82 us on
// one thread, four: 52). Each output is the chain of multiply-adds over k = 0..I-1 from the
// bias (or 0) that the micro-kernel computes for its row: the same bits as the row-panel form.
// Past four rows the row panels reuse each vector of w for more rows than this form (at four,
// 1024 x 1024 on one thread measured 88-101 us here against their 94-96).
constexpr int64_t kGemvItemColumns = 512;
constexpr int64_t kFewRows = 4;

template <class UK>
void dense_fwd_few_rows(const DenseShape& s, const typename UK::T* x, const typename UK::T* wei,
                        const typename UK::T* bias, typename UK::T* y) {
  using T = typename UK::T;
  constexpr int64_t kLanes = UK::kGemvLanes;
  const int64_t I = s.ic, U = s.oc;
  const int rows = static_cast<int>(s.mb);
  const int64_t ranges = ceil_div(U, kGemvItemColumns);
  const int threads = plan_threads(ranges, s.flops());
  const int64_t items = threads > 1 ? ranges : 1;
  const int64_t per_item = ceil_div(ceil_div(U, items), kLanes) * kLanes;
  with_int<kFewRows>(rows, [&](auto rows_tag) {
    constexpr int M = decltype(rows_tag)::value;
    parallel_for(threads, items, [&](int64_t item, int) {
      const int64_t c0 = item * per_item;
      if (c0 >= U) return;
      const int64_t n = imin(per_item, U - c0);
      const int vectors = static_cast<int>(ceil_div(n, kLanes));
      const T* init = bias != nullptr ? bias + c0 : nullptr;
      if (vectors <= 8 && (M + 1) * vectors <= UK::kGemvRegisters) {  // M x NV sums and NV vectors of w
        with_int<8>(vectors, [&](auto vectors_tag) {
          UK::template gemv_regs<M, decltype(vectors_tag)::value>(I, x, I, wei + c0, U, init, y + c0, U,
                                                                   static_cast<int>(n));
        });
        return;
      }
      for (int m = 0; m < M; ++m)
        for (int64_t j = 0; j < n; ++j) y[m * U + c0 + j] = init != nullptr ? init[j] : T(0);
      int64_t k = 0;
      for (; k + 4 <= I; k += 4) UK::template gemv_axpy<4, M>(wei + k * U + c0, U, x + k, I, y + c0, U, n);
      for (; k < I; ++k) UK::template gemv_axpy<1, M>(wei + k * U + c0, U, x + k, I, y + c0, U, n);
    });
  });
}

template <class UK>
void dense_fwd(const DenseShape& s, const typename UK::T* src, const typename UK::T* wei,
               const typename UK::T* bias, typename UK::T* dst) {
  if (s.mb <= kFewRows) {
    dense_fwd_few_rows<UK>(s, src, wei, bias, dst);
    return;
  }
  const double w_block = static_cast<double>(imin(s.ic, kKc)) * static_cast<double>(s.oc) * sizeof(typename UK::T);
  if (w_block > kDenseL2Budget && s.mb > UK::MR) {
    dense_fwd_packed<UK>(s, src, wei, bias, dst);
  } else {
    dense_fwd_row_panels<UK>(s, src, wei, bias, dst);
  }
}

template <class UK>
void dense_bwd_weights(const DenseShape& s, const typename UK::T* diff_dst, const typename UK::T* src,
                       typename UK::T* diff_wei, typename UK::T* diff_bias) {
  using T = typename UK::T;
  const int64_t N = s.mb, I = s.ic, U = s.oc;
  const int64_t items = row_items<UK>(I);
  // One more item sums the bias gradient, in batch order.
  const int64_t all_items = items + (diff_bias != nullptr ? 1 : 0);
  const int threads = plan_threads(all_items, s.flops());
  Carver ws{static_cast<char*>(thread_workspace(
      static_cast<std::size_t>(carve_bytes<const T*>(N))))};
  const T** brow = ws.template take<const T*>(N);
  for (int64_t k = 0; k < N; ++k) brow[k] = diff_dst + k * U;
  const ThreadAreas areas = thread_areas(static_cast<std::size_t>(carve_bytes<T>(UK::MR * kKc)), threads);

  parallel_for(threads, all_items, [&](int64_t item, int tid) {
    if (item == items) {
      for (int64_t j = 0; j < U; ++j) diff_bias[j] = T(0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < U; ++j) diff_bias[j] += diff_dst[n * U + j];
      return;
    }
    const int64_t r0 = row_begin(item, items, I), rows = row_begin(item + 1, items, I) - r0;
    Carver tws{areas.of(tid)};
    // A = x^T: row i is feature r0 + i over the batch.
    gemm_rows<UK>([&](int64_t i, int64_t k) { return src[k * I + r0 + i]; }, rows, N, brow, U, diff_wei + r0 * U,
                  U, false, tws.template take<T>(UK::MR * kKc));
  });
}

// dx = dy . w^T. With an in-register 16 x 16 transpose (AVX-512) w^T costs about a tenth of the
// product, and the product then runs on the packed micro-kernel: each item transposes the
// features of w its block of dx columns needs and computes that block. Without one, dot
// products of rows of dy and of w, whose horizontal sums cost more on short rows but need no
// scratch.

template <class UK>
void dense_bwd_data(const DenseShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                    typename UK::T* diff_src) {
  using T = typename UK::T;
  const int64_t N = s.mb, I = s.ic, U = s.oc;
  if constexpr (UK::kOuterLanes == 16) {
    constexpr int64_t L = 16;
    const int64_t ldw = padded_ld<T>(I), KC = imin(U, kKc);
    const int64_t panels = ceil_div(N, UK::MR);
    // Blocks of 32 columns of dx: LeNet's F5 (400 features) is 13 items, where 64-column
    // blocks made 7 (4 and 3 on two threads): 36.8 against 41.7 us on two threads (a 2-vCPU Xeon).
    constexpr int64_t kColumns = 32;
    static_assert(kColumns % L == 0, "an item's columns are whole 16-feature blocks of w");
    const int64_t col_items = ceil_div(I, kColumns);
    const int threads = plan_threads(col_items, s.flops());
    // dy packed once per thread where it is small (its copy then stays in that core's cache),
    // else once, shared: per thread, a 1024 x 4096 dy would be 16 MiB a thread.
    const bool own_pack = threads > 1 && N * U <= kDenseOwnPackValues;
    Carver ws{static_cast<char*>(thread_workspace(static_cast<std::size_t>(
        carve_bytes<T>(U * ldw) + carve_bytes<const T*>(U) + carve_bytes<int>(threads) +
        carve_bytes<T>(own_pack ? 0 : N * U))))};
    T* wt = ws.template take<T>(U * ldw);
    const T** brow = ws.template take<const T*>(U);
    int* packed = ws.template take<int>(threads);  // own_pack: per thread, its copy is made
    T* shared_pa = ws.template take<T>(own_pack ? 0 : N * U);
    for (int64_t u = 0; u < U; ++u) brow[u] = wt + u * ldw;
    for (int t = 0; t < threads; ++t) packed[t] = 0;
    const ThreadAreas areas = thread_areas(static_cast<std::size_t>(carve_bytes<T>(own_pack ? N * U : 0)), threads);
    auto pack_panel = [&](int64_t p, T* pa) {  // row panel p of dy, all its reduction blocks
      const int64_t height = panel_height<UK::MR>(N), r0 = imin(p * height, N), r1 = imin(r0 + height, N);
      if (r0 < r1)
        for (int64_t k0 = 0; k0 < U; k0 += KC)
          pack_a<T, UK::MR>([&](int64_t i, int64_t k) { return diff_dst[i * U + k]; }, N, r0, r1, k0,
                            imin(KC, U - k0), pa);
    };
    if (!own_pack) parallel_for(threads, panels, [&](int64_t p, int) { pack_panel(p, shared_pa); });
    // Then one pass of items, each a block of kColumns columns of dx: it transposes its own
    // features of w into wt (the slab it reads) and runs the product. As two passes (w^T and
    // packed dy shared by all, then the products; half of what the second read had been written
    // by the other core, and a barrier between), LeNet's F5 backward-data (64 x 120 -> 400) took
    // 40-41 us on two threads against 47-49 on one, F6 (64 x 84 -> 120) 14.4-15.8 against
    // 11.6-12.2, 64 x 1200 -> 400 542-554 against 581-610; in one pass with dy packed per thread
    // 39-40, 10.6-10.7 and 387-400 (a 2-vCPU Xeon). Why F5 gains so little from a second thread
    // is not known. Each column of dx is the same product of the same packed values whoever
    // packs them: same bits.
    parallel_for(threads, col_items, [&](int64_t item, int tid) {
      const T* pa = shared_pa;
      if (own_pack) {
        Carver tws{areas.of(tid)};
        T* mine = tws.template take<T>(N * U);
        if (!packed[tid]) {
          for (int64_t p = 0; p < panels; ++p) pack_panel(p, mine);
          packed[tid] = 1;
        }
        pa = mine;
      }
      const int64_t c0 = item * kColumns, nb = imin(kColumns, I - c0);
      for (int64_t i0 = c0; i0 < c0 + nb; i0 += L) {
        const int64_t fi = imin(L, I - i0);
        int64_t u0 = 0;
        if (fi == L) {
          for (; u0 + L <= U; u0 += L) UK::transpose16(wei + i0 * U + u0, U, wt + u0 * ldw + i0, ldw);
        }
        for (int64_t u = u0; u < U; ++u)
          for (int64_t i = 0; i < fi; ++i) wt[u * ldw + i0 + i] = wei[(i0 + i) * U + u];
      }
      for (int64_t k0 = 0; k0 < U; k0 += KC)
        macro_kernel<UK>(pa, N, 0, N, k0, imin(KC, U - k0), brow + k0, c0, nb, diff_src + c0, I, k0 > 0);
    });
  } else {
    // Items of 2 x DR rows of dx: each reads its rows of dy and all of w.
    const int64_t rows_per_item = 2 * UK::DR;
    const int64_t items = ceil_div(N, rows_per_item);
    const int threads = plan_threads(items, s.flops());
    Carver ws{static_cast<char*>(
        thread_workspace(static_cast<std::size_t>(carve_bytes<const T*>(N) + carve_bytes<const T*>(I))))};
    const T** arow = ws.template take<const T*>(N);
    const T** brow = ws.template take<const T*>(I);
    for (int64_t n = 0; n < N; ++n) arow[n] = diff_dst + n * U;
    for (int64_t i = 0; i < I; ++i) brow[i] = wei + i * U;

    parallel_for(threads, items, [&](int64_t item, int) {
      const int64_t r0 = item * rows_per_item, rows = imin(rows_per_item, N - r0);
      T* dx = diff_src + r0 * I;
      std::memset(dx, 0, sizeof(T) * static_cast<std::size_t>(rows * I));
      for (int64_t p0 = 0; p0 < U; p0 += kDotBlock)
        dot_kernel<UK>(rows, I, arow + r0, brow, p0, imin(kDotBlock, U - p0), dx, I);
    });
  }
}

}  // namespace
}  // namespace convforge
