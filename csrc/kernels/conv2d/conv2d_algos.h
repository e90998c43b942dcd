// The choice between the conv2d forms, per pass.
// Everything here has internal linkage (anonymous namespace) and is included only by the ISA
// translation units (see gemm/ukernel.h for why).
#pragma once

#include "kernels/conv2d/conv2d_bwd_data.h"
#include "kernels/conv2d/conv2d_bwd_weights.h"
#include "kernels/conv2d/conv2d_direct.h"
#include "kernels/conv2d/conv2d_fwd.h"

namespace convforge {
namespace {

template <class UK>
void conv2d_fwd(const ConvShape& s, const typename UK::T* src, const typename UK::T* wei,
                const typename UK::T* bias, typename UK::T* dst) {
  if constexpr (UK::kDirectLanes > 0) {
    if (direct_pays<UK>(s)) {
      conv2d_direct<UK>(s, src, wei, false, bias, dst);
      return;
    }
    if (pixels_pays<UK>(s)) {
      conv2d_fwd_pixels<UK>(s, src, wei, bias, dst);
      return;
    }
  }
  if (s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.oh, s.ow)) {
    conv2d_fwd_unit_stride<UK>(s, src, wei, bias, dst);
  } else {
    conv2d_fwd_im2col<UK>(s, src, wei, bias, dst);
  }
}

template <class UK>
void conv2d_bwd_data(const ConvShape& s, const typename UK::T* diff_dst, const typename UK::T* wei,
                     typename UK::T* diff_src) {
  // The unit-stride form multiplies weights by dy's zero padding; with an inf or NaN weight that
  // would turn 0 into NaN where the true gradient has no such term, so those weights take the
  // exact col2im path.
  if (s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, s.ih, s.iw) &&
      all_finite(wei, s.wei_size())) {
    if constexpr (UK::kDirectLanes > 0) {
      if (const ConvShape f = bwd_data_as_forward(s); direct_pays<UK>(f)) {
        conv2d_direct<UK>(f, diff_dst, wei, true, nullptr, diff_src);
        return;
      }
    }
    if (bwd_data_tapwise_pays(s)) {
      conv2d_bwd_data_tapwise<UK>(s, diff_dst, wei, diff_src);
      return;
    }
    conv2d_bwd_data_unit_stride<UK>(s, diff_dst, wei, diff_src);
  } else {
    conv2d_bwd_data_col2im<UK>(s, diff_dst, wei, diff_src);
  }
}

}  // namespace
}  // namespace convforge
