// Depthwise conv2d drivers, templates over a row-primitive struct (kernels/rows/). Each kernel
// tap adds a shifted input row, scaled by the tap's weight, to an output row: for stride 1 the
// shifted row is contiguous and runs on the SIMD axpy/dot; other strides use scalar loops.
// Work items: output planes (forward), input planes (data gradient: the multiplier's output
// channels of one input channel are summed by one thread) and output channels (weight
// gradient: images summed in order), so results do not depend on the thread count.
#pragma once

#include <cstdint>
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

template <class Rows, class T>
void depthwise_fwd_impl(const ConvShape& s, const T* src, const T* wei, const T* bias, T* dst) {
  const int64_t M = s.oc / s.ic, KK = s.kh * s.kw;
  parallel_for(plan_threads(s.mb * s.oc, 2.0 * static_cast<double>(s.dst_size() * KK)), s.mb * s.oc,
               [&](int64_t plane, int) {
                 const int64_t n = plane / s.oc, o = plane % s.oc, c = o / M;
                 const T* x = src + (n * s.ic + c) * s.ih * s.iw;
                 T* y = dst + plane * s.oh * s.ow;
                 Rows::fill(y, s.oh * s.ow, bias ? bias[o] : T(0));
                 for (int64_t oh = 0; oh < s.oh; ++oh) {
                   T* yrow = y + oh * s.ow;
                   for (int64_t kh = 0; kh < s.kh; ++kh) {
                     const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
                     if (ih < 0 || ih >= s.ih) continue;
                     const T* xrow = x + ih * s.iw;
                     for (int64_t kw = 0; kw < s.kw; ++kw) {
                       const T w = wei[o * KK + kh * s.kw + kw];
                       const int64_t off = kw * s.dw - s.pl;
                       int64_t lo, hi;
                       tap_columns(off, s.sw, s.iw, s.ow, &lo, &hi);
                       if (lo >= hi) continue;
                       if (s.sw == 1) {
                         Rows::axpy(yrow + lo, xrow + lo + off, w, hi - lo);
                       } else {
                         for (int64_t ow = lo; ow < hi; ++ow) yrow[ow] += w * xrow[ow * s.sw + off];
                       }
                     }
                   }
                 }
               });
}

template <class Rows, class T>
void depthwise_bwd_data_impl(const ConvShape& s, const T* diff_dst, const T* wei, T* diff_src) {
  const int64_t M = s.oc / s.ic, KK = s.kh * s.kw;
  parallel_for(plan_threads(s.mb * s.ic, 2.0 * static_cast<double>(s.dst_size() * KK)), s.mb * s.ic,
               [&](int64_t plane, int) {
                 const int64_t n = plane / s.ic, c = plane % s.ic;
                 T* dx = diff_src + plane * s.ih * s.iw;
                 Rows::fill(dx, s.ih * s.iw, T(0));
                 for (int64_t m = 0; m < M; ++m) {
                   const int64_t o = c * M + m;
                   const T* dy = diff_dst + (n * s.oc + o) * s.oh * s.ow;
                   for (int64_t oh = 0; oh < s.oh; ++oh) {
                     const T* dyrow = dy + oh * s.ow;
                     for (int64_t kh = 0; kh < s.kh; ++kh) {
                       const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
                       if (ih < 0 || ih >= s.ih) continue;
                       T* dxrow = dx + ih * s.iw;
                       for (int64_t kw = 0; kw < s.kw; ++kw) {
                         const T w = wei[o * KK + kh * s.kw + kw];
                         const int64_t off = kw * s.dw - s.pl;
                         int64_t lo, hi;
                         tap_columns(off, s.sw, s.iw, s.ow, &lo, &hi);
                         if (lo >= hi) continue;
                         if (s.sw == 1) {
                           Rows::axpy(dxrow + lo + off, dyrow + lo, w, hi - lo);
                         } else {
                           for (int64_t ow = lo; ow < hi; ++ow) dxrow[ow * s.sw + off] += w * dyrow[ow];
                         }
                       }
                     }
                   }
                 }
               });
}

template <class Rows, class T>
void depthwise_bwd_weights_impl(const ConvShape& s, const T* diff_dst, const T* src, T* diff_wei, T* diff_bias) {
  const int64_t M = s.oc / s.ic, KK = s.kh * s.kw;
  parallel_for(plan_threads(s.oc, 2.0 * static_cast<double>(s.dst_size() * KK)), s.oc, [&](int64_t o, int) {
    const int64_t c = o / M;
    std::vector<double> acc(static_cast<size_t>(KK), 0.0);
    double acc_bias = 0;
    for (int64_t n = 0; n < s.mb; ++n) {
      const T* x = src + (n * s.ic + c) * s.ih * s.iw;
      const T* dy = diff_dst + (n * s.oc + o) * s.oh * s.ow;
      if (diff_bias) acc_bias += Rows::sum(dy, s.oh * s.ow);
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const T* dyrow = dy + oh * s.ow;
        for (int64_t kh = 0; kh < s.kh; ++kh) {
          const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
          if (ih < 0 || ih >= s.ih) continue;
          const T* xrow = x + ih * s.iw;
          for (int64_t kw = 0; kw < s.kw; ++kw) {
            const int64_t off = kw * s.dw - s.pl;
            int64_t lo, hi;
            tap_columns(off, s.sw, s.iw, s.ow, &lo, &hi);
            if (lo >= hi) continue;
            double d = 0;
            if (s.sw == 1) {
              d = Rows::dot(dyrow + lo, xrow + lo + off, hi - lo);
            } else {
              for (int64_t ow = lo; ow < hi; ++ow)
                d += static_cast<double>(dyrow[ow]) * static_cast<double>(xrow[ow * s.sw + off]);
            }
            acc[static_cast<size_t>(kh * s.kw + kw)] += d;
          }
        }
      }
    }
    for (int64_t t = 0; t < KK; ++t) diff_wei[o * KK + t] = static_cast<T>(acc[static_cast<size_t>(t)]);
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
