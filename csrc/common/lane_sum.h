// Sums in a fixed lane order, and the finiteness test built on them: used by the kernels (bias
// gradients, the forms that must not multiply zero padding by an inf) and by the binding that
// checks a training step's gradients and weights in one call.
// Internal linkage (anonymous namespace): included by ISA translation units compiled with
// different flags, whose instantiations must not be merged (see gemm/ukernel.h).
#pragma once

#include <cstdint>

namespace convforge {
namespace {

// Sum of f(p[i]) for i < n in 16 running sums, lane l taking i = l (mod 16), folded pairwise at
// the end. One running sum would be a chain of n dependent adds the compiler may not reorder
// (LeNet C1's bias gradient: 4,704 per image, as long as the image's weight gradient); this is
// one vector add per 16 elements, in an order spelled out here, so the same on every ISA.
template <class T, class F>
T lane_sum(const T* p, int64_t n, F&& f) {
  constexpr int64_t kLanes = 16;
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += f(p[i + l]);
  for (int64_t l = 0; i + l < n; ++l) acc[l] += f(p[i + l]);
  for (int64_t width = kLanes / 2; width > 0; width /= 2)
    for (int64_t l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

template <class T>
bool all_finite(const T* p, int64_t n) {
  // x - x is 0 for finite x and NaN for NaN/inf; a sum of those is NaN iff one of them was.
  return lane_sum(p, n, [](T v) { return v - v; }) == T(0);
}

}  // namespace
}  // namespace convforge
