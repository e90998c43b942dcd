// conv2d on the avx512 micro-kernel (gemm/ukernel_avx512.h): instantiation only. Compiled with -mavx512f.
#include "kernels/conv2d/conv2d_algos.h"
#include "kernels/gemm/ukernel_avx512.h"
#include "kernels/kernels.h"

namespace convforge {

void conv2d_fwd__avx512(const ConvShape& s, const float* src, const float* wei, const float* bias, float* dst) {
  conv2d_fwd<UkernelAvx512>(s, src, wei, bias, dst);
}
void conv2d_bwd_data__avx512(const ConvShape& s, const float* diff_dst, const float* wei, float* diff_src) {
  conv2d_bwd_data<UkernelAvx512>(s, diff_dst, wei, diff_src);
}
void conv2d_bwd_weights__avx512(const ConvShape& s, const float* diff_dst, const float* src, float* diff_wei,
                                float* diff_bias) {
  conv2d_bwd_weights<UkernelAvx512>(s, diff_dst, src, diff_wei, diff_bias);
}

}  // namespace convforge
