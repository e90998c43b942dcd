#include "common/shapes.h"

#include <limits>

namespace convforge {
namespace {

// Every size must fit comfortably in int64 arithmetic even after multiplying a few together.
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxElements = int64_t{1} << 50;

bool in_range(int64_t v, int64_t lo) { return v >= lo && v <= kMaxDim; }

// a*b*c... without overflow; false if the product exceeds kMaxElements.
bool product_ok(std::initializer_list<int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d != 0 && p > kMaxElements / d) return false;
    p *= d;
  }
  return true;
}

}  // namespace

std::string complete_conv_shape(ConvShape& s) {
  if (!in_range(s.mb, 1) || !in_range(s.ic, 1) || !in_range(s.ih, 1) || !in_range(s.iw, 1))
    return "conv2d: x must have a non-empty shape (N, C, H, W)";
  if (!in_range(s.oc, 1) || !in_range(s.kh, 1) || !in_range(s.kw, 1))
    return "conv2d: w must have a non-empty shape (K, C, R, S)";
  if (!in_range(s.sh, 1) || !in_range(s.sw, 1)) return "conv2d: stride must be >= 1";
  if (!in_range(s.dh, 1) || !in_range(s.dw, 1)) return "conv2d: dilation must be >= 1";
  if (!in_range(s.pt, 0) || !in_range(s.pb, 0) || !in_range(s.pl, 0) || !in_range(s.pr, 0))
    return "conv2d: padding must be >= 0";
  const int64_t span_h = s.dh * (s.kh - 1) + 1, span_w = s.dw * (s.kw - 1) + 1;
  const int64_t oh = (s.ih + s.pt + s.pb - span_h), ow = (s.iw + s.pl + s.pr - span_w);
  if (oh < 0 || ow < 0) return "conv2d: the (dilated) kernel is larger than the padded input";
  s.oh = oh / s.sh + 1;
  s.ow = ow / s.sw + 1;
  if (!product_ok({s.mb, s.ic, s.ih, s.iw}) || !product_ok({s.mb, s.oc, s.oh, s.ow}) ||
      !product_ok({s.oc, s.ic, s.kh, s.kw}) || !product_ok({s.ic, s.kh, s.kw, s.oh, s.ow}))
    return "conv2d: the problem is too large (element counts overflow)";
  return {};
}

std::string check_pool_shape(const PoolShape& s) {
  if (!in_range(s.mb, 1) || !in_range(s.c, 1) || !in_range(s.ih, 1) || !in_range(s.iw, 1))
    return "max_pool2d: x must have a non-empty shape (N, C, H, W)";
  if (!in_range(s.kh, 1) || !in_range(s.kw, 1)) return "max_pool2d: kernel_size must be >= 1";
  if (!in_range(s.sh, 1) || !in_range(s.sw, 1)) return "max_pool2d: stride must be >= 1";
  if (!in_range(s.ph, 0) || !in_range(s.pw, 0) || s.ph > s.kh / 2 || s.pw > s.kw / 2)
    return "max_pool2d: padding must be >= 0 and at most half the kernel size";
  if (!in_range(s.oh, 1) || !in_range(s.ow, 1)) return "max_pool2d: output size must be >= 1";
  // Every window must start inside the input or its left/top padding, so it has at least one
  // real element and its argmax is a real position.
  if ((s.oh - 1) * s.sh >= s.ih + s.ph || (s.ow - 1) * s.sw >= s.iw + s.pw)
    return "max_pool2d: output size too large: the last window would lie entirely in the padding";
  if (!product_ok({s.mb, s.c, s.ih, s.iw}) || !product_ok({s.mb, s.c, s.oh, s.ow}))
    return "max_pool2d: the problem is too large (element counts overflow)";
  return {};
}

std::string check_dense_shape(const DenseShape& s) {
  if (!in_range(s.mb, 1) || !in_range(s.ic, 1)) return "dense: x must have a non-empty shape (batch, in_features)";
  if (!in_range(s.oc, 1)) return "dense: w must have a non-empty shape (in_features, units)";
  if (!product_ok({s.mb, s.ic}) || !product_ok({s.ic, s.oc}) || !product_ok({s.mb, s.oc}))
    return "dense: the problem is too large (element counts overflow)";
  return {};
}

}  // namespace convforge
