// A batch normalisation's per-channel constants, y = (x - mean) * scale + shift, in the data's
// type: what the row primitives apply (scale_shift) and, for a ReLU fused after the layer, what
// its backward recomputes the pre-activation from, exactly as the forward computed it (same
// operations, same rounding), to pass dy where it was > 0 (relu_value's mask: 0 at NaN).
// Recomputing costs no memory stream; reading the ReLU's output instead was a third input
// array in both backward passes (+70% time on 128x16x28x28).
#pragma once

namespace convforge {

template <class T>
struct BnAffine {
  T mean, scale, shift;
};

}  // namespace convforge
