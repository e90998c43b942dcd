#include "common/avx512.h"
#include "kernels/kernels.h"
#include "kernels/rows/rows_avx512.h"
#include "kernels/depthwise/depthwise_impl.h"

namespace convforge {
CONVFORGE_DEFINE_DEPTHWISE(avx512, float, RowsAvx512)
}  // namespace convforge
