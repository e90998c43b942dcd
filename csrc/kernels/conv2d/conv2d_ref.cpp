// conv2d's algorithm lists (conv2d_algos.h) on the ref micro-kernel (gemm/ukernel_ref.h):
// instantiation only. Compiled with no ISA flags.
#include "kernels/conv2d/conv2d_algos.h"
#include "kernels/gemm/ukernel_ref.h"
#include "kernels/kernels.h"

namespace convforge {

template <>
ConvAlgoList<float> conv2d_algorithms__ref<float>(ConvPass pass) {
  return Conv2dAlgos<UkernelRef<float>>::list(pass);
}
template <>
ConvAlgoList<double> conv2d_algorithms__ref<double>(ConvPass pass) {
  return Conv2dAlgos<UkernelRef<double>>::list(pass);
}

}  // namespace convforge
