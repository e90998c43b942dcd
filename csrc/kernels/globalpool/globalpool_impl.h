// Global average pooling drivers over (image, channel) planes, templates over a row-primitive
// struct (kernels/rows/). Planes are grouped so that one work item moves about 64 KiB.
#pragma once

#include <cstdint>

#include "kernels/channel_ops.h"

namespace convforge {
namespace {

inline int64_t plane_grain(int64_t hw) {
  const int64_t g = (int64_t{1} << 14) / (hw > 0 ? hw : 1);
  return g > 0 ? g : 1;
}

template <class Rows, class T>
void global_avg_pool2d_fwd_impl(const ChannelShape& s, const T* src, T* dst) {
  const int64_t planes = s.mb * s.c, HW = s.hw;
  const int64_t grain = plane_grain(HW);
  const int threads = bandwidth_threads((planes + grain - 1) / grain, sizeof(T) * static_cast<double>(s.size()));
  parallel_for_grains(threads, planes, grain, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p) dst[p] = static_cast<T>(Rows::sum(src + p * HW, HW) / static_cast<double>(HW));
  });
}

template <class Rows, class T>
void global_avg_pool2d_bwd_impl(const ChannelShape& s, const T* diff_dst, T* diff_src) {
  const int64_t planes = s.mb * s.c, HW = s.hw;
  const int64_t grain = plane_grain(HW);
  const int threads = bandwidth_threads((planes + grain - 1) / grain, sizeof(T) * static_cast<double>(s.size()));
  parallel_for_grains(threads, planes, grain, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p)
      Rows::fill(diff_src + p * HW, HW, static_cast<T>(static_cast<double>(diff_dst[p]) / static_cast<double>(HW)));
  });
}

// Global max with the ISA's Rows::first_max (the portable one, RowsRef's, is the scan that
// defines the rules: the first NaN, else the first of the largest).
template <class Rows, class T>
void global_max_pool2d_fwd_impl(const ChannelShape& s, const T* src, T* dst, int64_t* workspace) {
  const int64_t planes = s.mb * s.c, HW = s.hw;
  const int64_t grain = plane_grain(HW);
  const int threads = bandwidth_threads((planes + grain - 1) / grain, sizeof(T) * static_cast<double>(s.size()));
  parallel_for_grains(threads, planes, grain, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p) {
      int64_t arg = 0;
      dst[p] = Rows::first_max(src + p * HW, HW, &arg);
      if (workspace) workspace[p] = arg;
    }
  });
}

}  // namespace
}  // namespace convforge

#define CONVFORGE_DEFINE_GLOBAL_AVG(ISA, T, ROWS)                                            \
  void global_avg_pool2d_fwd__##ISA(const ChannelShape& s, const T* src, T* dst) {           \
    global_avg_pool2d_fwd_impl<ROWS>(s, src, dst);                                           \
  }                                                                                          \
  void global_avg_pool2d_bwd__##ISA(const ChannelShape& s, const T* diff_dst, T* diff_src) { \
    global_avg_pool2d_bwd_impl<ROWS>(s, diff_dst, diff_src);                                 \
  }

#define CONVFORGE_DEFINE_GLOBAL_MAX(ISA, T, ROWS)                                                       \
  void global_max_pool2d_fwd__##ISA(const ChannelShape& s, const T* src, T* dst, int64_t* workspace) { \
    global_max_pool2d_fwd_impl<ROWS>(s, src, dst, workspace);                                          \
  }
