#include "kernels/kernels.h"
#include "kernels/rows/rows_ref.h"
#include "kernels/depthwise/depthwise_impl.h"

namespace convforge {
CONVFORGE_DEFINE_DEPTHWISE(ref, float, RowsRef<float>)
CONVFORGE_DEFINE_DEPTHWISE(ref, double, RowsRef<double>)
}  // namespace convforge
