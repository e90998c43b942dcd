#include "kernels/kernels.h"
#include "kernels/rows/rows_avx2.h"
#include "kernels/globalpool/globalpool_impl.h"

namespace convforge {
CONVFORGE_DEFINE_GLOBAL_AVG(avx2, float, RowsAvx2)
CONVFORGE_DEFINE_GLOBAL_MAX(avx2, float, RowsAvx2)
}  // namespace convforge
