// Depthwise conv2d drivers, templates over a row-primitive struct (kernels/rows/). Each kernel
// tap adds a shifted input row, scaled by the tap's weight, to an output row: a contiguous run at
// stride 1, a run of a stride phase otherwise (StridePhases).
// Work items: output planes (forward), input planes (data gradient: the multiplier's output
// channels of one input channel are summed by one thread) and output channels (weight
// gradient: images summed in order), so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/parallel.h"
#include "kernels/channel_ops.h"

namespace convforge {
namespace {

// Output columns [lo, hi) whose tap at input column ow * sw + off lies inside [0, iw).
inline void tap_columns(int64_t off, int64_t sw, int64_t iw, int64_t ow, int64_t* lo, int64_t* hi) {
  *lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  *hi = iw - 1 - off < 0 ? 0 : (iw - 1 - off) / sw + 1;
  if (*hi > ow) *hi = ow;
}

// An input plane as stride phases: phase r of a row holds its columns r, r + sw, r + 2 sw, ...,
// so that a tap of a strided row is a contiguous run (tap_run). At stride 1 nothing is copied:
// the rows are the plane's own.
template <class T>
class StridePhases {
 public:
  StridePhases(int64_t rows, int64_t iw, int64_t sw) : iw_(iw), sw_(sw), len_((iw + sw - 1) / sw) {
    if (sw > 1) buf_.assign(static_cast<std::size_t>(rows * sw * len_), T(0));
  }
  bool phased() const { return sw_ > 1; }
  // Row r of plane x (rows x iw): its phases once split.
  const T* row(const T* x, int64_t r) const { return sw_ == 1 ? x + r * iw_ : buf_.data() + r * sw_ * len_; }
  template <class Rows>
  void split(const T* x, int64_t rows) {
    if (sw_ == 1) return;
    for (int64_t r = 0; r < rows; ++r) {
      T* p = buf_.data() + r * sw_ * len_;
      if (sw_ == 2) {  // the common stride, in vectors: scalar copies cost a strided forward 20%
        Rows::deinterleave2(x + r * iw_, iw_, p, p + len_);
        continue;
      }
      for (int64_t ph = 0; ph < sw_; ++ph)
        for (int64_t b = ph, q = 0; b < iw_; b += sw_, ++q) p[ph * len_ + q] = x[r * iw_ + b];
    }
  }
  // The run of the tap at input column ow * sw + off: run[ow] for the ow that tap_columns gives.
  const T* tap_run(const T* row, int64_t off) const {
    if (sw_ == 1) return row + off;
    const int64_t r = ((off % sw_) + sw_) % sw_;
    return row + r * len_ + (off - r) / sw_;
  }

 private:
  int64_t iw_, sw_, len_;
  std::vector<T> buf_;
};

// Output columns of each kernel column kw: its input column offset kw dw - pl and the range
// [lo, hi) of output columns whose tap lies inside the image (tap_columns); the same for every row.
struct DepthwiseColumns {
  explicit DepthwiseColumns(const ConvShape& s)
      : off(static_cast<std::size_t>(s.kw)), lo(off.size()), hi(off.size()) {
    for (int64_t kw = 0; kw < s.kw; ++kw) {
      off[kw] = kw * s.dw - s.pl;
      tap_columns(off[kw], s.sw, s.iw, s.ow, &lo[kw], &hi[kw]);
    }
  }
  std::vector<int64_t> off, lo, hi;
};

// Rows::taps_rows<R> for R = rows (1 to kDwRows) rows at once.
constexpr int kDwRows = 4;
template <class Rows, class T>
void depthwise_taps_rows(int rows, const T* const* run, int taps, int kws, const T* w, const int64_t* lo,
                         const int64_t* hi, int64_t n, T init, T* const* y) {
  switch (rows) {
    case 4: Rows::template taps_rows<4>(run, taps, kws, w, lo, hi, n, init, y); break;
    case 3: Rows::template taps_rows<3>(run, taps, kws, w, lo, hi, n, init, y); break;
    case 2: Rows::template taps_rows<2>(run, taps, kws, w, lo, hi, n, init, y); break;
    default: Rows::template taps_rows<1>(run, taps, kws, w, lo, hi, n, init, y); break;
  }
}

// The three passes take a row's taps (kh, kw) in one Rows call, kDwRows rows at a time (their
// sums independent chains in registers), the taps' column ranges worked out once a call
// (DepthwiseColumns), strided rows as runs of StridePhases. Each tap was a Rows::axpy /
// Rows::dot call on its own before, its range worked out per row: on a MobileNet-size 28x28
// plane that cost more in calls, masked tails and the row's loads and stores than in arithmetic
// (32 x 64 x 28 x 28, 3x3, one thread, AVX-512: forward 4.5 ms, backward 7.9; now 1.5 and 3.9,
// PyTorch 1.1 and 2.9-3.4 under the tuned malloc: bench/BEFORE_AFTER.md, twenty-first stop,
// which also says why it stays ahead on small planes). Every output and input-gradient
// value takes its taps in the order it did (forward: kh, kw; data gradient: multiplier, then the
// output rows it gathers from, kw), a tap outside the image skipped. The weight gradient sums
// each row's products per column in lanes (kDwFoldRows rows at a time in T, a 3x3 kernel's
// nine in registers, then added into double lanes), and at the end a tap's double lanes in
// column order.
template <class Rows, class T>
void depthwise_fwd_impl(const ConvShape& s, const T* src, const T* wei, const T* bias, T* dst) {
  const int64_t M = s.oc / s.ic, KK = s.kh * s.kw;
  const DepthwiseColumns cols(s);
  const int threads = plan_threads(s.mb * s.oc, 2.0 * static_cast<double>(s.dst_size() * KK));
  // Per thread, made once a call (not per plane: a 7x7 plane's whole work is ~500 cycles).
  std::vector<StridePhases<T>> phases_of(static_cast<std::size_t>(threads), StridePhases<T>(s.ih, s.iw, s.sw));
  std::vector<const T*> runs(static_cast<std::size_t>(threads * kDwRows * KK));
  parallel_for(threads, s.mb * s.oc, [&](int64_t plane, int tid) {
                 const int64_t n = plane / s.oc, o = plane % s.oc, c = o / M;
                 const T* x = src + (n * s.ic + c) * s.ih * s.iw;
                 T* y = dst + plane * s.oh * s.ow;
                 StridePhases<T>& phases = phases_of[static_cast<std::size_t>(tid)];
                 phases.template split<Rows>(x, s.ih);
                 const T** run = runs.data() + tid * kDwRows * KK;
                 T* out[kDwRows];
                 for (int64_t oh0 = 0; oh0 < s.oh; oh0 += kDwRows) {
                   const int rows = static_cast<int>(std::min<int64_t>(kDwRows, s.oh - oh0));
                   for (int r = 0; r < rows; ++r) {
                     out[r] = y + (oh0 + r) * s.ow;
                     for (int64_t kh = 0; kh < s.kh; ++kh) {
                       const int64_t ih = (oh0 + r) * s.sh - s.pt + kh * s.dh;
                       const bool inside = ih >= 0 && ih < s.ih;
                       for (int64_t kw = 0; kw < s.kw; ++kw)
                         run[r * KK + kh * s.kw + kw] = inside ? phases.tap_run(phases.row(x, ih), cols.off[kw]) : nullptr;
                     }
                   }
                   depthwise_taps_rows<Rows>(rows, run, static_cast<int>(KK), static_cast<int>(s.kw), wei + o * KK,
                                             cols.lo.data(), cols.hi.data(), s.ow, bias ? bias[o] : T(0), out);
                 }
               });
}

// The data gradient gathers: input row ih, column col takes w[kh][kw] * dy[oh][ow] where
// oh sh - pt + kh dh = ih and ow sw - pl + kw dw = col, over the multiplier's output channels,
// kh from the last (the scatter's order of output rows), kw. A strided row goes by phases of
// its columns (col = q sw + ph: the kernel columns whose offset ph + pl - kw dw is a multiple
// of sw, each a run of dy), through phase buffers.
template <class Rows, class T>
void depthwise_bwd_data_impl(const ConvShape& s, const T* diff_dst, const T* wei, T* diff_src) {
  const int64_t M = s.oc / s.ic, KK = s.kh * s.kw, KT = M * KK;  // taps of an input row
  const int64_t phase_len = (s.iw + s.sw - 1) / s.sw;
  const int threads = plan_threads(s.mb * s.ic, 2.0 * static_cast<double>(s.dst_size() * KK));
  struct Scratch {  // per thread, made once a call
    std::vector<T> w, phase;
    std::vector<const T*> run;
    std::vector<int64_t> lo, hi, shift;
  };
  std::vector<Scratch> scratch(static_cast<std::size_t>(threads));
  for (Scratch& a : scratch) {
    a.w.resize(static_cast<std::size_t>(KT)), a.run.resize(static_cast<std::size_t>(kDwRows * KT));
    a.lo.resize(static_cast<std::size_t>(s.kw)), a.hi.resize(a.lo.size()), a.shift.resize(a.lo.size());
    a.phase.resize(static_cast<std::size_t>(s.sw > 1 ? kDwRows * phase_len : 0));
  }
  parallel_for(threads, s.mb * s.ic, [&](int64_t plane, int tid) {
                 const int64_t n = plane / s.ic, c = plane % s.ic;
                 T* dx = diff_src + plane * s.ih * s.iw;
                 Scratch& a = scratch[static_cast<std::size_t>(tid)];
                 std::vector<T>& w = a.w;
                 for (int64_t m = 0, t = 0; m < M; ++m)
                   for (int64_t kh = s.kh - 1; kh >= 0; --kh)
                     for (int64_t kw = 0; kw < s.kw; ++kw) w[t++] = wei[(c * M + m) * KK + kh * s.kw + kw];
                 std::vector<const T*>& run = a.run;
                 std::vector<int64_t>&lo = a.lo, &hi = a.hi, &shift = a.shift;
                 std::vector<T>& phase = a.phase;
                 T* out[kDwRows];
                 for (int64_t ph = 0; ph < s.sw; ++ph) {
                   const int64_t len = (s.iw - ph + s.sw - 1) / s.sw;  // columns q of this phase: col = q sw + ph
                   for (int64_t kw = 0; kw < s.kw; ++kw) {  // ow = q + shift: a run of dy, or no tap
                     const int64_t d = ph + s.pl - kw * s.dw;
                     shift[kw] = d % s.sw == 0 ? d / s.sw : INT64_MIN;
                     lo[kw] = hi[kw] = 0;
                     if (shift[kw] != INT64_MIN) lo[kw] = std::max<int64_t>(0, -shift[kw]), hi[kw] = std::min(len, s.ow - shift[kw]);
                   }
                   for (int64_t ih0 = 0; ih0 < s.ih; ih0 += kDwRows) {
                     const int rows = static_cast<int>(std::min<int64_t>(kDwRows, s.ih - ih0));
                     for (int r = 0; r < rows; ++r) {
                       out[r] = s.sw == 1 ? dx + (ih0 + r) * s.iw : phase.data() + r * phase_len;
                       for (int64_t m = 0, t = 0; m < M; ++m) {
                         const T* dy = diff_dst + (n * s.oc + c * M + m) * s.oh * s.ow;
                         for (int64_t kh = s.kh - 1; kh >= 0; --kh) {
                           const int64_t num = ih0 + r + s.pt - kh * s.dh;  // oh sh
                           const bool inside = num >= 0 && num % s.sh == 0 && num / s.sh < s.oh;
                           for (int64_t kw = 0; kw < s.kw; ++kw, ++t)
                             run[r * KT + t] = inside && shift[kw] != INT64_MIN ? dy + (num / s.sh) * s.ow + shift[kw] : nullptr;
                         }
                       }
                     }
                     depthwise_taps_rows<Rows>(rows, run.data(), static_cast<int>(KT), static_cast<int>(s.kw), w.data(),
                                               lo.data(), hi.data(), len, T(0), out);
                     if (s.sw > 1)
                       for (int r = 0; r < rows; ++r)
                         for (int64_t q = 0; q < len; ++q) dx[(ih0 + r) * s.iw + q * s.sw + ph] = out[r][q];
                   }
                 }
               });
}

constexpr int kDwFoldRows = 8;  // rows of products a lane sums in T before they go to double
template <class Rows, class T>
void depthwise_bwd_weights_impl(const ConvShape& s, const T* diff_dst, const T* src, T* diff_wei, T* diff_bias) {
  const int64_t M = s.oc / s.ic, KK = s.kh * s.kw;
  const int64_t ld = (s.ow + 15) / 16 * 16;  // lanes of a tap: whole vectors
  const DepthwiseColumns cols(s);
  parallel_for(plan_threads(s.oc, 2.0 * static_cast<double>(s.dst_size() * KK)), s.oc, [&](int64_t o, int) {
    const int64_t c = o / M;
    std::vector<T> lanes(static_cast<std::size_t>(KK * ld), T(0));
    // The lanes added up per column, then per tap in column order at the end. (A std::vector
    // here drew GCC 12's false -Wfree-nonheap-object at -O3.)
    const std::unique_ptr<double[]> wide(new double[lanes.size()]());
    std::vector<const T*> run(static_cast<std::size_t>(kDwFoldRows * KK));
    const T* dyrows[kDwFoldRows];
    int rows = 0;  // rows gathered for the next taps_products
    const auto products = [&]() {
      Rows::taps_products(dyrows, run.data(), rows, static_cast<int>(KK), static_cast<int>(s.kw), cols.lo.data(),
                          cols.hi.data(), s.ow, lanes.data(), ld);
      const T* l = lanes.data();
      double* d = wide.get();
      for (int64_t j = 0, size = KK * ld; j < size; ++j) d[j] += static_cast<double>(l[j]);
      rows = 0;
    };
    double acc_bias = 0;
    StridePhases<T> phases(s.ih, s.iw, s.sw);
    for (int64_t n = 0; n < s.mb; ++n) {
      const T* x = src + (n * s.ic + c) * s.ih * s.iw;
      const T* dy = diff_dst + (n * s.oc + o) * s.oh * s.ow;
      if (diff_bias) acc_bias += Rows::sum(dy, s.oh * s.ow);
      phases.template split<Rows>(x, s.ih);  // the image's rows are taken before the next image is split
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        dyrows[rows] = dy + oh * s.ow;
        for (int64_t kh = 0; kh < s.kh; ++kh) {
          const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
          const bool inside = ih >= 0 && ih < s.ih;
          for (int64_t kw = 0; kw < s.kw; ++kw)
            run[rows * KK + kh * s.kw + kw] = inside ? phases.tap_run(phases.row(x, ih), cols.off[kw]) : nullptr;
        }
        if (++rows == kDwFoldRows) products();
      }
      if (phases.phased() && rows > 0) products();  // the phases are overwritten by the next image
    }
    if (rows > 0) products();
    for (int64_t t = 0; t < KK; ++t) {
      double sum = 0;  // the columns in order
      for (int64_t j = 0; j < s.ow; ++j) sum += wide[static_cast<std::size_t>(t * ld + j)];
      diff_wei[o * KK + t] = static_cast<T>(sum);
    }
    if (diff_bias) diff_bias[o] = static_cast<T>(acc_bias);
  });
}

}  // namespace
}  // namespace convforge

#define CONVFORGE_DEFINE_DEPTHWISE(ISA, T, ROWS)                                                                  \
  void depthwise_conv2d_fwd__##ISA(const ConvShape& s, const T* src, const T* wei, const T* bias, T* dst) {        \
    depthwise_fwd_impl<ROWS>(s, src, wei, bias, dst);                                                              \
  }                                                                                                                \
  void depthwise_conv2d_bwd_data__##ISA(const ConvShape& s, const T* diff_dst, const T* wei, T* diff_src) {        \
    depthwise_bwd_data_impl<ROWS>(s, diff_dst, wei, diff_src);                                                     \
  }                                                                                                                \
  void depthwise_conv2d_bwd_weights__##ISA(const ConvShape& s, const T* diff_dst, const T* src, T* diff_wei,      \
                                           T* diff_bias) {                                                         \
    depthwise_bwd_weights_impl<ROWS>(s, diff_dst, src, diff_wei, diff_bias);                                       \
  }
