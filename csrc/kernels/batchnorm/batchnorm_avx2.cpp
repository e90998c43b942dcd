#include "kernels/kernels.h"
#include "kernels/rows/rows_avx2.h"
#include "kernels/batchnorm/batchnorm_impl.h"

namespace convforge {
CONVFORGE_DEFINE_BATCHNORM(avx2, float, RowsAvx2)
}  // namespace convforge
