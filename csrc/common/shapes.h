// Problem descriptions shared by kernels, dispatch and bindings (oneDNN's field names).
#pragma once

#include <cstdint>
#include <string>

namespace convforge {

// conv2d, NCHW activations and OIHW weights; padding may differ on each side ('same').
struct ConvShape {
  int64_t mb = 0, ic = 0, ih = 0, iw = 0;  // source
  int64_t oc = 0, oh = 0, ow = 0;          // destination
  int64_t kh = 0, kw = 0;                  // kernel
  int64_t sh = 1, sw = 1;                  // stride
  int64_t dh = 1, dw = 1;                  // dilation
  int64_t pt = 0, pb = 0, pl = 0, pr = 0;  // padding top, bottom, left, right
  bool relu = false;                       // forward post-op: max(y, 0), NaN kept, -0 -> +0

  int64_t src_size() const { return mb * ic * ih * iw; }
  int64_t dst_size() const { return mb * oc * oh * ow; }
  int64_t wei_size() const { return oc * ic * kh * kw; }
  double flops() const { return 2.0 * mb * oc * oh * ow * ic * kh * kw; }
};

// Fills oh/ow from the other fields and checks every one of them. Returns an empty string
// when the problem is valid, else what is wrong, in words a user can act on.
std::string complete_conv_shape(ConvShape& s);

// max_pool2d, NCHW; symmetric padding as PyTorch; the output size is given (ceil_mode is a
// rule for choosing it) and windows are clipped to the input.
struct PoolShape {
  int64_t mb = 0, c = 0, ih = 0, iw = 0, oh = 0, ow = 0;
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, ph = 0, pw = 0;

  int64_t src_size() const { return mb * c * ih * iw; }
  int64_t dst_size() const { return mb * c * oh * ow; }
};

std::string check_pool_shape(const PoolShape& s);

// dense (fully connected, Keras's Dense): src (mb x ic) rows of features, weights (ic x oc) in
// Keras's (in_features, units) layout, dst (mb x oc).
struct DenseShape {
  int64_t mb = 0, ic = 0, oc = 0;

  double flops() const { return 2.0 * mb * ic * oc; }
};

std::string check_dense_shape(const DenseShape& s);

}  // namespace convforge
