// Portable max-pooling over NCHW planes, one (image, channel) plane per work item.
//
// Semantics (PyTorch's): windows clipped to the input, padding never selected; the first
// maximum in row-major window order wins ties; a NaN is the maximum of its window (the first
// NaN wins). Every window holds at least one real element (check_pool_shape), so the argmax
// is always a valid position in [0, ih*iw).
#include <cstring>

#include "common/parallel.h"
#include "kernels/maxpool2d/maxpool2d_impl.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

}  // namespace

template <class T>
void maxpool2d_fwd__ref(const PoolShape& s, const T* src, T* dst, int64_t* workspace) {
  const int64_t planes = s.mb * s.c, in_plane = s.ih * s.iw, out_plane = s.oh * s.ow;
  const double work = static_cast<double>(s.dst_size()) * static_cast<double>(s.kh * s.kw);
  parallel_for_grains(plan_threads(planes, work), planes, planes_per_item(in_plane), [&](int64_t p0, int64_t p1, int) {
    for (int64_t plane = p0; plane < p1; ++plane) {
      const T* x = src + plane * in_plane;
      T* y = dst + plane * out_plane;
      int64_t* idx = workspace != nullptr ? workspace + plane * out_plane : nullptr;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const int64_t h0 = imax(oh * s.sh - s.ph, 0), h1 = imin(oh * s.sh - s.ph + s.kh, s.ih);
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          const int64_t w0 = imax(ow * s.sw - s.pw, 0), w1 = imin(ow * s.sw - s.pw + s.kw, s.iw);
          int64_t best_at = h0 * s.iw + w0;
          T best = x[best_at];
          for (int64_t h = h0; h < h1 && best == best; ++h) {
            for (int64_t w = w0; w < w1; ++w) {
              const T v = x[h * s.iw + w];
              // `v != v` catches NaN: it wins at once and ends the search (outer loop test).
              if (v > best || v != v) {
                best = v;
                best_at = h * s.iw + w;
                if (v != v) break;
              }
            }
          }
          y[oh * s.ow + ow] = best;
          if (idx != nullptr) idx[oh * s.ow + ow] = best_at;
        }
      }
    }
  });
}

template <class T>
int64_t maxpool2d_bwd__ref(const PoolShape& s, const T* diff_dst, const int64_t* workspace, const T* gate,
                           T* diff_src) {
  const int64_t planes = s.mb * s.c, in_plane = s.ih * s.iw, out_plane = s.oh * s.ow;
  int64_t first_bad_plane = planes;
  parallel_for_grains(plan_threads(planes, pool_work(s, sizeof(T), true)), planes, planes_per_item(in_plane), [&](int64_t p0, int64_t p1, int) {
    std::memset(diff_src + p0 * in_plane, 0, sizeof(T) * static_cast<std::size_t>((p1 - p0) * in_plane));
    for (int64_t plane = p0; plane < p1; ++plane) {
      T* dx = diff_src + plane * in_plane;
      const T* dy = diff_dst + plane * out_plane;
      const int64_t* idx = workspace + plane * out_plane;
      // The indices may come from the user: check the plane's before scattering it (they are
      // then in L1 for the scatter). Branch-free, so it vectorises: in unsigned arithmetic
      // (wrapping, no overflow), v | (in_plane - 1 - v) has its top bit set exactly when v < 0
      // or v >= in_plane. (A serial check in the binding, before the kernel, took 40% of the
      // call on 2 threads.)
      const uint64_t last = static_cast<uint64_t>(in_plane - 1);
      uint64_t outside = 0;
      for (int64_t o = 0; o < out_plane; ++o) {
        const uint64_t v = static_cast<uint64_t>(idx[o]);
        outside |= v | (last - v);
      }
      if (outside >> 63) {
        atomic_min(&first_bad_plane, plane);
        continue;
      }
      if (gate != nullptr) {
        const T* g = gate + plane * in_plane;
        for (int64_t o = 0; o < out_plane; ++o) {
          if (g[idx[o]] > T(0)) dx[idx[o]] += dy[o];
        }
      } else {
        for (int64_t o = 0; o < out_plane; ++o) dx[idx[o]] += dy[o];
      }
    }
  });
  return first_bad_plane < planes ? first_bad_plane : -1;
}

// The SIMD kernels' geometry (is_pool_2x2_s2); they keep in-plane column indices in 32-bit lanes.
bool maxpool2d_2x2_s2_applies(const PoolShape& s) { return is_pool_2x2_s2(s) && s.iw < (int64_t{1} << 30); }

template void maxpool2d_fwd__ref<float>(const PoolShape&, const float*, float*, int64_t*);
template void maxpool2d_fwd__ref<double>(const PoolShape&, const double*, double*, int64_t*);
template int64_t maxpool2d_bwd__ref<float>(const PoolShape&, const float*, const int64_t*, const float*, float*);
template int64_t maxpool2d_bwd__ref<double>(const PoolShape&, const double*, const int64_t*, const double*, double*);

}  // namespace convforge
