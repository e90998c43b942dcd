#include "kernels/kernels.h"
#include "kernels/rows/rows_ref.h"
#include "kernels/batchnorm/batchnorm_impl.h"

namespace convforge {
CONVFORGE_DEFINE_BATCHNORM(ref, float, RowsRef<float>)
CONVFORGE_DEFINE_BATCHNORM(ref, double, RowsRef<double>)
}  // namespace convforge
