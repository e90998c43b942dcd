#include "kernels/kernels.h"
#include "kernels/rows/rows_ref.h"
#include "kernels/globalpool/globalpool_impl.h"

namespace convforge {

CONVFORGE_DEFINE_GLOBAL_AVG(ref, float, RowsRef<float>)
CONVFORGE_DEFINE_GLOBAL_AVG(ref, double, RowsRef<double>)

// Global max: the portable kernel is the SIMD kernels' driver over RowsRef::first_max, the scan
// whose rules they follow.
template <class T>
void global_max_pool2d_fwd__ref(const ChannelShape& s, const T* src, T* dst, int64_t* workspace) {
  global_max_pool2d_fwd_impl<RowsRef<T>>(s, src, dst, workspace);
}

template <class T>
int64_t global_max_pool2d_bwd__ref(const ChannelShape& s, const T* diff_dst, const int64_t* workspace, T* diff_src) {
  const int64_t planes = s.mb * s.c, HW = s.hw;
  const int64_t grain = plane_grain(HW);
  const int threads = bandwidth_threads((planes + grain - 1) / grain, sizeof(T) * static_cast<double>(s.size()));
  int64_t first_bad = planes;
  parallel_for_grains(threads, planes, grain, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p) {
      T* dx = diff_src + p * HW;
      for (int64_t i = 0; i < HW; ++i) dx[i] = T(0);
      const int64_t arg = workspace[p];
      if (arg < 0 || arg >= HW) {
        atomic_min(&first_bad, p);
        continue;
      }
      dx[arg] = diff_dst[p];
    }
  });
  return first_bad == planes ? -1 : first_bad;
}

template void global_max_pool2d_fwd__ref<float>(const ChannelShape&, const float*, float*, int64_t*);
template void global_max_pool2d_fwd__ref<double>(const ChannelShape&, const double*, double*, int64_t*);
template int64_t global_max_pool2d_bwd__ref<float>(const ChannelShape&, const float*, const int64_t*, float*);
template int64_t global_max_pool2d_bwd__ref<double>(const ChannelShape&, const double*, const int64_t*, double*);

}  // namespace convforge
