// Dense layers on the ref micro-kernel (gemm/ukernel_ref.h): instantiation only. Compiled with no ISA flags.
#include "kernels/dense/dense_impl.h"
#include "kernels/gemm/ukernel_ref.h"
#include "kernels/kernels.h"

namespace convforge {

#define CONVFORGE_DEFINE_DENSE_REF(T)                                                                   \
  void dense_fwd__ref(const DenseShape& s, const T* src, const T* wei, const T* bias, T* dst) {          \
    dense_fwd<UkernelRef<T>>(s, src, wei, bias, dst);                                                   \
  }                                                                                                     \
  void dense_bwd_data__ref(const DenseShape& s, const T* diff_dst, const T* wei, T* diff_src) {         \
    dense_bwd_data<UkernelRef<T>>(s, diff_dst, wei, diff_src);                                          \
  }                                                                                                     \
  void dense_bwd_weights__ref(const DenseShape& s, const T* diff_dst, const T* src, T* diff_wei,        \
                              T* diff_bias) {                                                           \
    dense_bwd_weights<UkernelRef<T>>(s, diff_dst, src, diff_wei, diff_bias);                            \
  }
CONVFORGE_DEFINE_DENSE_REF(float)
CONVFORGE_DEFINE_DENSE_REF(double)

}  // namespace convforge
