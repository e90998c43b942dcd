// Softmax over the rows of a (rows, n) array: y = exp(x - max) / sum, the sum in double.
// Portable only: at a model's head (10-1000 classes) it is a small part of a forward, and one
// implementation keeps the Softmax layer and the compiled inference plan bit-identical.
#include <cmath>

#include "common/parallel.h"
#include "kernels/kernels.h"

namespace convforge {

template <class T>
void softmax_fwd__ref(int64_t rows, int64_t n, const T* src, T* dst) {
  // exp costs ~20 flops: rows go to threads once there is ~100 us of work (plan_threads).
  const int64_t grain = n >= 4096 ? 1 : 4096 / n;
  const int threads = plan_threads((rows + grain - 1) / grain, 20.0 * static_cast<double>(rows) * n);
  parallel_for_grains(threads, rows, grain, [&](int64_t begin, int64_t end, int) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x = src + r * n;
      T* y = dst + r * n;
      // A NaN (or an infinite maximum, inf - inf) makes the whole row NaN, as NumPy's max-shift does.
      T m = x[0];
      for (int64_t i = 1; i < n; ++i)
        if (x[i] > m) m = x[i];
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const T e = std::exp(x[i] - m);
        y[i] = e;
        sum += e;
      }
      const T total = static_cast<T>(sum);
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] / total;
    }
  });
}

template void softmax_fwd__ref<float>(int64_t, int64_t, const float*, float*);
template void softmax_fwd__ref<double>(int64_t, int64_t, const double*, double*);

}  // namespace convforge
