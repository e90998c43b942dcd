// conv2d's algorithm lists (conv2d_algos.h) on the avx2 micro-kernel (gemm/ukernel_avx2.h):
// instantiation only. Compiled with -mavx2 -mfma.
#include "kernels/conv2d/conv2d_algos.h"
#include "kernels/gemm/ukernel_avx2.h"
#include "kernels/kernels.h"

namespace convforge {

ConvAlgoList<float> conv2d_algorithms__avx2(ConvPass pass) { return Conv2dAlgos<UkernelAvx2>::list(pass); }

}  // namespace convforge
