// conv2d on the ref micro-kernel (gemm/ukernel_ref.h): instantiation only. Compiled with no ISA flags.
#include "kernels/conv2d/conv2d_algos.h"
#include "kernels/gemm/ukernel_ref.h"
#include "kernels/kernels.h"

namespace convforge {

#define CONVFORGE_DEFINE_CONV2D_REF(T)                                                                  \
  void conv2d_fwd__ref(const ConvShape& s, const T* src, const T* wei, const T* bias, T* dst) {          \
    conv2d_fwd<UkernelRef<T>>(s, src, wei, bias, dst);                                                  \
  }                                                                                                     \
  void conv2d_bwd_data__ref(const ConvShape& s, const T* diff_dst, const T* wei, T* diff_src) {         \
    conv2d_bwd_data<UkernelRef<T>>(s, diff_dst, wei, diff_src);                                         \
  }                                                                                                     \
  void conv2d_bwd_weights__ref(const ConvShape& s, const T* diff_dst, const T* src, T* diff_wei,        \
                               T* diff_bias) {                                                          \
    conv2d_bwd_weights<UkernelRef<T>>(s, diff_dst, src, diff_wei, diff_bias);                           \
  }
CONVFORGE_DEFINE_CONV2D_REF(float)
CONVFORGE_DEFINE_CONV2D_REF(double)

}  // namespace convforge
