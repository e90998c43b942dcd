#include "kernels/kernels.h"
#include "kernels/rows/rows_avx2.h"
#include "kernels/depthwise/depthwise_impl.h"

namespace convforge {
CONVFORGE_DEFINE_DEPTHWISE(avx2, float, RowsAvx2)
}  // namespace convforge
