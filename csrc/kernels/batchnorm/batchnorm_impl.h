// Batch normalisation drivers, templates over a row-primitive struct (kernels/rows/): each ISA
// source instantiates them with its own rows. One work item per channel: the channel's
// statistics are reduced by one thread in image order, so the result does not depend on the
// thread count, and its N planes (hw values each) are re-read from L2 by the second and third
// pass (a ResNet channel at batch 128 and 28x28 is 400 KB).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/parallel.h"
#include "kernels/channel_ops.h"

namespace convforge {
namespace {

template <class Rows, class T>
void batchnorm_fwd_training_impl(const ChannelShape& s, const T* src, const T* gamma, const T* beta, double eps,
                                 T* dst, T* mean_out, T* var_out) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb;
  const double count = static_cast<double>(MB * HW);
  parallel_for(bandwidth_threads(C, 2.0 * sizeof(T) * s.size()), C, [&](int64_t c, int) {
    double sum = 0;
    for (int64_t n = 0; n < MB; ++n) sum += Rows::sum(src + (n * C + c) * HW, HW);
    const double mean = sum / count;
    double ssd = 0;  // second pass: squared deviations from the mean, no cancellation
    for (int64_t n = 0; n < MB; ++n) ssd += Rows::sum_sq_dev(src + (n * C + c) * HW, HW, mean);
    const double var = ssd / count;
    const double inv_std = 1.0 / std::sqrt(var + eps);
    const T a = static_cast<T>(gamma ? static_cast<double>(gamma[c]) * inv_std : inv_std);
    const T b = beta ? beta[c] : T(0);
    const T m = static_cast<T>(mean);
    for (int64_t n = 0; n < MB; ++n) Rows::scale_shift(src + (n * C + c) * HW, HW, m, a, b, dst + (n * C + c) * HW);
    mean_out[c] = m;
    var_out[c] = static_cast<T>(var);
  });
}

template <class Rows, class T>
void batchnorm_fwd_inference_impl(const ChannelShape& s, const T* src, const T* mean, const T* var, const T* gamma,
                                  const T* beta, double eps, T* dst) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb;
  parallel_for(bandwidth_threads(C, 2.0 * sizeof(T) * s.size()), C, [&](int64_t c, int) {
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
    const T a = static_cast<T>(gamma ? static_cast<double>(gamma[c]) * inv_std : inv_std);
    const T b = beta ? beta[c] : T(0);
    for (int64_t n = 0; n < MB; ++n)
      Rows::scale_shift(src + (n * C + c) * HW, HW, mean[c], a, b, dst + (n * C + c) * HW);
  });
}

// With xc = x - mean, inv = 1/sqrt(var + eps), M = N*H*W values per channel:
//   dbeta = sum(dy), dgamma = sum(dy * xc) * inv,
//   dx = gamma * inv * (dy - dbeta / M - xc * inv^2 * sum(dy * xc) / M).
template <class Rows, class T>
void batchnorm_bwd_impl(const ChannelShape& s, const T* diff_dst, const T* src, const T* mean, const T* var,
                        const T* gamma, double eps, T* diff_src, T* diff_gamma, T* diff_beta) {
  const int64_t C = s.c, HW = s.hw, MB = s.mb;
  const double count = static_cast<double>(MB * HW);
  parallel_for(bandwidth_threads(C, 3.0 * sizeof(T) * s.size()), C, [&](int64_t c, int) {
    const double m = static_cast<double>(mean[c]);
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
    double s_dy = 0, s_dy_dev = 0;
    for (int64_t n = 0; n < MB; ++n) {
      const int64_t off = (n * C + c) * HW;
      Rows::sum_dy_dy_dev(diff_dst + off, src + off, HW, m, &s_dy, &s_dy_dev);
    }
    diff_beta[c] = static_cast<T>(s_dy);
    diff_gamma[c] = static_cast<T>(s_dy_dev * inv_std);
    if (!diff_src) return;
    const double c1 = (gamma ? static_cast<double>(gamma[c]) : 1.0) * inv_std;
    const T k1 = static_cast<T>(c1);
    const T k2 = static_cast<T>(-c1 * inv_std * inv_std * s_dy_dev / count);
    const T k3 = static_cast<T>(-c1 * s_dy / count);
    for (int64_t n = 0; n < MB; ++n) {
      const int64_t off = (n * C + c) * HW;
      Rows::bn_backward(diff_dst + off, src + off, HW, k1, k2, mean[c], k3, diff_src + off);
    }
  });
}

}  // namespace
}  // namespace convforge

// Defines the three batchnorm kernels of one ISA and dtype from a rows struct.
#define CONVFORGE_DEFINE_BATCHNORM(ISA, T, ROWS)                                                                 \
  void batchnorm_fwd_training__##ISA(const ChannelShape& s, const T* src, const T* gamma, const T* beta,           \
                                     double eps, T* dst, T* mean, T* var) {                                       \
    batchnorm_fwd_training_impl<ROWS>(s, src, gamma, beta, eps, dst, mean, var);                                  \
  }                                                                                                               \
  void batchnorm_fwd_inference__##ISA(const ChannelShape& s, const T* src, const T* mean, const T* var,           \
                                      const T* gamma, const T* beta, double eps, T* dst) {                        \
    batchnorm_fwd_inference_impl<ROWS>(s, src, mean, var, gamma, beta, eps, dst);                                 \
  }                                                                                                               \
  void batchnorm_bwd__##ISA(const ChannelShape& s, const T* diff_dst, const T* src, const T* mean, const T* var,   \
                            const T* gamma, double eps, T* diff_src, T* diff_gamma, T* diff_beta) {               \
    batchnorm_bwd_impl<ROWS>(s, diff_dst, src, mean, var, gamma, eps, diff_src, diff_gamma, diff_beta);           \
  }
