#include "common/avx512.h"
#include "kernels/kernels.h"
#include "kernels/rows/rows_avx512.h"
#include "kernels/globalpool/globalpool_impl.h"

namespace convforge {
CONVFORGE_DEFINE_GLOBAL_AVG(avx512, float, RowsAvx512)
CONVFORGE_DEFINE_GLOBAL_MAX(avx512, float, RowsAvx512)
}  // namespace convforge
