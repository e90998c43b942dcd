// ReLU driver shared by the ISA sources: fixed-size blocks over the flat array, one vector body
// per ISA. Internal linkage for the same reason as gemm/ukernel.h.
//
// Semantics, identical on every path: relu(x) = x for x > 0 and for NaN (NaN propagates, as in
// NumPy and PyTorch), +0.0 otherwise (so relu(-0.0) = +0.0); the gradient is dy where x > 0 and
// 0 elsewhere (0 at x = 0 and at NaN).
#pragma once

#include <cstdint>

#include "common/alignment.h"
#include "common/parallel.h"

namespace convforge {
namespace {

// Elements per work item (64 KiB of floats): large enough to amortise scheduling, small enough to
// split LeNet-sized tensors between threads.
constexpr int64_t kReluBlock = int64_t{1} << 14;

// Threads pay off from about 256 KiB moved: ~3 us from L2 on one core, where the spinning
// workers start in ~1 us (LeNet's 64x16x10x10 tensor, 800 KB moved, took 10 us on one thread;
// PyTorch takes 5 us on two). plan_threads' threshold is for compute-bound work.
constexpr double kReluThreadBytes = 256.0 * 1024.0;

// Calls body(begin, end) for blocks of kReluBlock elements, on threads for large tensors.
// SIMD bodies should call a function that takes the array pointers as parameters rather than
// use the lambda's captures: intrinsic stores are __may_alias__, so the compiler reloads
// captured pointers after every store (two extra loads per vector, which made LeNet's
// 64x16x10x10 ReLU take 6.6-9.5 us instead of 4.6-5.0).
template <class Body>
void relu_blocks(int64_t n, double bytes_per_element, Body&& body) {
  const int64_t blocks = (n + kReluBlock - 1) / kReluBlock;
  const bool worth_threads = static_cast<double>(n) * bytes_per_element >= kReluThreadBytes;
  parallel_for(worth_threads ? plan_threads(blocks, 1e300) : 1, blocks, [&](int64_t blk, int) {
    const int64_t begin = blk * kReluBlock;
    const int64_t end = begin + kReluBlock < n ? begin + kReluBlock : n;
    body(begin, end);
  });
}

// Passes that move at least this many bytes (inputs and output together) write with
// non-temporal stores, bypassing the caches: the arrays would not stay cached anyway, and an
// ordinary store first reads each line it writes, one more memory stream. Below it, ordinary
// stores let the last-level cache (32 MB here) keep part of the arrays between calls: on
// 32x64x56x56 (25.7 MB per array) the forward, 51 MB moved, took 0.79-1.06 ms with ordinary
// stores and 0.97-1.24 ms streaming; the backward, 77 MB moved, 1.48-1.76 ms streaming and
// 1.75-2.03 ms with ordinary stores (PyTorch: 0.77-1.03 and 1.47-1.96 ms).
constexpr double kStreamingBytes = 64.0 * 1024 * 1024;

template <class T>
inline T relu_scalar(T x) {
  return (x > T(0) || x != x) ? x : T(0);
}
template <class T>
inline T relu_grad_scalar(T dy, T x) {
  return x > T(0) ? dy : T(0);
}

}  // namespace
}  // namespace convforge
