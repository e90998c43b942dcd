// Where SIMD stores may start on a cache line or vector boundary: shared by the ReLU kernels and
// the row primitives (kernels/rows/), which align their streaming stores the same way.
#pragma once

#include <cstdint>

namespace convforge {

// First element of [b, e) at a kBytes boundary of dst (only meaningful where dst is float-aligned,
// float_aligned): where the SIMD loops start after a masked head, so that their stores do not
// straddle cache lines (NumPy's buffers start 16 bytes past one) and streaming stores, which must
// be aligned, may be used.
template <int kBytes>
inline int64_t aligned_start(const float* dst, int64_t b, int64_t e) {
  const auto addr = reinterpret_cast<std::uintptr_t>(dst + b);
  const int64_t skip = static_cast<int64_t>(((kBytes - addr % kBytes) % kBytes) / sizeof(float));
  return b + skip < e ? b + skip : e;
}

inline bool float_aligned(const float* p) { return reinterpret_cast<std::uintptr_t>(p) % sizeof(float) == 0; }

}  // namespace convforge
