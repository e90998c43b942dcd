// Dense layers on the avx512 micro-kernel (gemm/ukernel_avx512.h): instantiation only. Compiled with -mavx512f.
#include "kernels/dense/dense_impl.h"
#include "kernels/gemm/ukernel_avx512.h"
#include "kernels/kernels.h"

namespace convforge {

void dense_fwd__avx512(const DenseShape& s, const float* src, const float* wei, const float* bias, float* dst) {
  dense_fwd<UkernelAvx512>(s, src, wei, bias, dst);
}
void dense_bwd_data__avx512(const DenseShape& s, const float* diff_dst, const float* wei, float* diff_src) {
  dense_bwd_data<UkernelAvx512>(s, diff_dst, wei, diff_src);
}
void dense_bwd_weights__avx512(const DenseShape& s, const float* diff_dst, const float* src, float* diff_wei,
                              float* diff_bias) {
  dense_bwd_weights<UkernelAvx512>(s, diff_dst, src, diff_wei, diff_bias);
}

}  // namespace convforge
