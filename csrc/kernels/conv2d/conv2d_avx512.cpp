// conv2d's algorithm lists (conv2d_algos.h) on the avx512 micro-kernel (gemm/ukernel_avx512.h):
// instantiation only. Compiled with -mavx512f.
#include "kernels/conv2d/conv2d_algos.h"
#include "kernels/gemm/ukernel_avx512.h"
#include "kernels/kernels.h"

namespace convforge {

ConvAlgoList<float> conv2d_algorithms__avx512(ConvPass pass) { return Conv2dAlgos<UkernelAvx512>::list(pass); }

}  // namespace convforge
