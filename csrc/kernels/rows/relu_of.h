// What a batch normalisation's backward needs to apply the gradient of a ReLU fused after it
// (batchnorm_fwd_training with relu): the per-channel constants of the forward's pre-activation
// z = (x - mean) * scale + shift, so that the rows recompute z from x exactly as scale_shift did
// (same operations, same rounding) and pass dy where z > 0 (relu_value's mask: 0 at NaN).
// Recomputing costs no memory stream; reading the ReLU's output instead was a third input
// array in both passes (+70% time on 128x16x28x28).
#pragma once

namespace convforge {

template <class T>
struct ReluOf {
  T mean, scale, shift;
};

}  // namespace convforge
