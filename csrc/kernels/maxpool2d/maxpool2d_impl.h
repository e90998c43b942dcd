// Plane loop shared by the SIMD 2x2/stride-2 max-pool kernels, and the work split shared with
// the portable ones (internal linkage, see gemm/ukernel.h for why).
#pragma once

#include <cstdint>

#include "common/parallel.h"
#include "common/shapes.h"

namespace convforge {
namespace {

// The geometry the SIMD kernels implement: 2x2 window, stride 2, no padding, and an output no
// larger than floor mode gives (ceil mode's partial windows go to the portable kernel).
inline bool is_pool_2x2_s2(const PoolShape& s) {
  return s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.ph == 0 && s.pw == 0 && 2 * s.oh <= s.ih &&
         2 * s.ow <= s.iw;
}

// Planes per work item: about 64 KB of input each.
inline int64_t planes_per_item(int64_t plane_elems) {
  return plane_elems >= 16384 ? 1 : 16384 / (plane_elems < 1 ? 1 : plane_elems);
}

// Work of a pooling pass for the thread threshold. Memory-bound: bytes moved (input, output,
// argmax), plus ~400 per output row (a 5-wide row took 9 ns, as long as 400 bytes take).
inline double pool_work(const PoolShape& s, int64_t value_bytes, bool with_argmax) {
  return static_cast<double>(value_bytes) * static_cast<double>(s.src_size() + s.dst_size()) +
         (with_argmax ? 8.0 * static_cast<double>(s.dst_size()) : 0.0) + 400.0 * static_cast<double>(s.mb * s.c * s.oh);
}

// Calls Pool::step for every run of up to LANES outputs of every output row of every plane.
template <class Pool, int LANES>
void maxpool_2x2_planes(const PoolShape& s, const float* src, float* dst, int64_t* workspace) {
  const int64_t planes = s.mb * s.c, in_plane = s.ih * s.iw, out_plane = s.oh * s.ow;
  parallel_for_grains(plan_threads(planes, pool_work(s, 4, workspace != nullptr)), planes, planes_per_item(in_plane), [&](int64_t p0, int64_t p1, int) {
    for (int64_t plane = p0; plane < p1; ++plane) {
      const float* x = src + plane * in_plane;
      float* y = dst + plane * out_plane;
      int64_t* idx = workspace != nullptr ? workspace + plane * out_plane : nullptr;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const float* r0 = x + 2 * oh * s.iw;
        for (int64_t o0 = 0; o0 < s.ow; o0 += LANES) {
          const int n = static_cast<int>(s.ow - o0 < LANES ? s.ow - o0 : LANES);
          Pool::step(r0, r0 + s.iw, s.iw, 2 * oh * s.iw, o0, n, y + oh * s.ow,
                     idx != nullptr ? idx + oh * s.ow : nullptr);
        }
      }
    }
  });
}

}  // namespace
}  // namespace convforge
