// Per-channel ops of the ResNet/MobileNet layers: batch normalisation, global pooling and
// depthwise convolution, NCHW. Declared apart from kernels.h (which includes this file) so that
// these ops are one block to read and to merge.
//
// Determinism: every kernel here splits its work by channel (or block of channels), by (image,
// channel) plane or (batch norm's backward below 8 MiB) by chunks of images and blocks of
// channels fixed by the shape; each reduction runs in one fixed order inside a work item, and
// partial sums of several items are combined in a fixed order after them, so results are
// bit-identical for any thread count.
#pragma once

#include <cstdint>

#include "common/parallel.h"
#include "common/shapes.h"

namespace convforge {

// mb images of c channels of hw values each (NCHW with hw = H*W; (N, C) data has hw = 1).
struct ChannelShape {
  int64_t mb = 0, c = 0, hw = 0;
  int64_t size() const { return mb * c * hw; }
};

// Threads for a bandwidth-bound pass over `items` work items: they pay off from about 256 KiB
// moved (the threshold relu uses, measured there).
inline int bandwidth_threads(int64_t items, double bytes) {
  return bytes >= 256.0 * 1024.0 ? plan_threads(items, 1e300) : 1;
}

// ---- batch normalisation over (N, H, W) per channel. Statistics: each row's sum in double and
// its squared deviations from its own mean, the rows combined exactly in double (RowMoments,
// rows/bn_affine.h), or for rows under 256 values the channel's sum, then the squared
// deviations from its mean (batchnorm_impl.h): no E[x^2] - E[x]^2 cancellation, float32
// accuracy at any batch size. var
// is the biased (population) variance, as Keras uses for its moving variance. gamma/beta may be
// null (scale=False / center=False).
// relu: the training forward writes max(y, 0) (a ReLU after the layer, fused; NaN kept, -0 -> +0,
// as the relu kernels), and the backward's dy is the gradient of that ReLU's output: passed where
// the pre-activation, recomputed from x, mean, var, gamma, beta, is > 0 (as relu_bwd would).
#define CONVFORGE_DECLARE_BATCHNORM(ISA, T)                                                                     \
  void batchnorm_fwd_training__##ISA(const ChannelShape& s, const T* src, const T* gamma, const T* beta,         \
                                     double eps, bool relu, T* dst, T* mean, T* var);                           \
  void batchnorm_fwd_inference__##ISA(const ChannelShape& s, const T* src, const T* mean, const T* var,         \
                                      const T* gamma, const T* beta, double eps, T* dst);                       \
  /* diff_src may be null (no input gradient wanted). */                                                       \
  void batchnorm_bwd__##ISA(const ChannelShape& s, const T* diff_dst, const T* src, const T* mean, const T* var,   \
                            const T* gamma, const T* beta, bool relu, double eps, T* diff_src, T* diff_gamma,     \
                            T* diff_beta);
CONVFORGE_DECLARE_BATCHNORM(ref, float)
CONVFORGE_DECLARE_BATCHNORM(ref, double)
CONVFORGE_DECLARE_BATCHNORM(avx2, float)
CONVFORGE_DECLARE_BATCHNORM(avx512, float)
#undef CONVFORGE_DECLARE_BATCHNORM

// ---- global pooling: dst (mb, c) from src (mb, c, hw). The average sums in double. The max
// keeps the first maximum of each plane (a NaN if there is one, as max_pool2d) and writes its
// position in the plane to workspace (may be null).
#define CONVFORGE_DECLARE_GLOBAL_AVG(ISA, T)                                          \
  void global_avg_pool2d_fwd__##ISA(const ChannelShape& s, const T* src, T* dst);     \
  void global_avg_pool2d_bwd__##ISA(const ChannelShape& s, const T* diff_dst, T* diff_src);
CONVFORGE_DECLARE_GLOBAL_AVG(ref, float)
CONVFORGE_DECLARE_GLOBAL_AVG(ref, double)
CONVFORGE_DECLARE_GLOBAL_AVG(avx2, float)
CONVFORGE_DECLARE_GLOBAL_AVG(avx512, float)
#undef CONVFORGE_DECLARE_GLOBAL_AVG
template <class T>
void global_max_pool2d_fwd__ref(const ChannelShape& s, const T* src, T* dst, int64_t* workspace);
void global_max_pool2d_fwd__avx2(const ChannelShape& s, const float* src, float* dst, int64_t* workspace);
void global_max_pool2d_fwd__avx512(const ChannelShape& s, const float* src, float* dst, int64_t* workspace);
// Returns the first (n*c order) plane whose index is outside [0, hw), leaving it zero; -1 if none.
template <class T>
int64_t global_max_pool2d_bwd__ref(const ChannelShape& s, const T* diff_dst, const int64_t* workspace, T* diff_src);

// ---- depthwise conv2d: s.ic input channels, s.oc = ic * multiplier outputs; output channel
// o reads input channel o / multiplier (Keras's and PyTorch's groups=ic order); weights
// (oc, 1, kh, kw). bias / diff_bias may be null.
#define CONVFORGE_DECLARE_DEPTHWISE(ISA, T)                                                                     \
  void depthwise_conv2d_fwd__##ISA(const ConvShape& s, const T* src, const T* wei, const T* bias, T* dst);      \
  void depthwise_conv2d_bwd_data__##ISA(const ConvShape& s, const T* diff_dst, const T* wei, T* diff_src);      \
  void depthwise_conv2d_bwd_weights__##ISA(const ConvShape& s, const T* diff_dst, const T* src, T* diff_wei,    \
                                           T* diff_bias);
CONVFORGE_DECLARE_DEPTHWISE(ref, float)
CONVFORGE_DECLARE_DEPTHWISE(ref, double)
CONVFORGE_DECLARE_DEPTHWISE(avx2, float)
CONVFORGE_DECLARE_DEPTHWISE(avx512, float)
#undef CONVFORGE_DECLARE_DEPTHWISE

}  // namespace convforge
