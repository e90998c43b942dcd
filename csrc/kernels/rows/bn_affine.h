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

// One row's contribution to a channel's statistics: sum(x) in double (Rows::sum), a shift near
// the row's mean (sum / n rounded to the data's type) and q = sum((x - shift)^2) (Rows::sq_dev).
// The rows of a channel combine exactly (BnForwardBlock::settle): with mu the channel's
// mean, sum((x - mu)^2) over a row = q + 2 (shift - mu) (sum - n shift) + n (shift - mu)^2.
struct RowMoments {
  double sum, shift, q;
};

}  // namespace convforge
