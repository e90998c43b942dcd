// Per pass, the best-first list of conv2d algorithms of one micro-kernel (oneDNN's
// implementation lists are the model). An entry is
//     {name, applies(plan, tensors), pays(plan) or nullptr, run(plan, tensors)}
// - applies: the algorithm computes this problem exactly (shape conditions, and for the forms
//   that multiply zero padding by data, finite data). Never a speed judgement.
// - pays: the speed judgement, for an algorithm that applies more widely than it is worth
//   taking by default (nullptr: wherever it applies).
// The default choice (dispatch/conv2d_dispatch.cpp) is the first entry that applies and pays;
// a forced choice (convforge.functional.force_conv2d_algorithm, CONVFORGE_CONV_ALGO) is any
// entry that applies. The last entry of each list applies to every problem. `plan` is the
// completed ConvShape, built once per call (complete_conv_shape) and passed down unchanged.
//
// To add an algorithm (e.g. Winograd):
//   1. write its driver in its own header (conv2d_<family>.h), templated on the micro-kernel;
//   2. include it here, write its applies/run (and pays if needed) next to the others below,
//      and add one line to the pass's table in list(), at its rank; mark it compiled only where
//      the micro-kernel has what it needs (as kDirect below);
//   3. name it in tests/test_conv2d.py's expectations (the cases it must run and decline).
// Names are stable API: they appear in conv2d_algorithms(), build_info() and forcing.
//
// Everything here has internal linkage and is included only by the ISA translation units (see
// gemm/ukernel.h for why).
#pragma once

#include <stdexcept>

#include "kernels/conv2d/conv2d_bwd_data.h"
#include "kernels/conv2d/conv2d_bwd_weights.h"
#include "kernels/conv2d/conv2d_direct.h"
#include "kernels/conv2d/conv2d_fwd.h"
#include "kernels/conv2d/conv2d_winograd.h"
#include "kernels/conv2d/conv2d_winograd_weights.h"
#include "kernels/kernels.h"

namespace convforge {
namespace {

template <class UK>
struct Conv2dAlgos {
  using T = typename UK::T;
  using Tensors = ConvTensors<T>;
  static constexpr bool kDirect = UK::kDirectLanes > 0;  // direct and pixels micro-kernels
  static constexpr bool kOuter = UK::kOuterLanes > 0;    // outer-product micro-kernels

  static bool always(const ConvShape&, const Tensors&) { return true; }

  // Unit stride with a padded frame not much larger than the image (frame_is_small); `rows` x
  // `cols` is the size of what the pass writes.
  static bool unit_stride_frame(const ConvShape& s, int64_t rows, int64_t cols) {
    return s.sh == 1 && s.sw == 1 && frame_is_small(s.kh, s.kw, s.dh, s.dw, rows, cols);
  }

  // ---- forward ----------------------------------------------------------------------------
  // The forward entries' applies and pays read the shape (and keeps_prepared) only, never the
  // data: an inference plan chooses a chunk's algorithms, and its layouts, before its ops run.
  // A residual (t.residual) is added in the epilogue by direct and winograd_f4x3 (the forms
  // the example ResNet's shortcut convolutions take); every other form runs through
  // with_residual: conv + bias into dst, then one pass adds the residual and applies the ReLU.
  template <void (*Run)(const ConvShape&, const Tensors&)>
  static void with_residual(const ConvShape& s, const Tensors& t) {
    if (t.residual == nullptr) {
      Run(s, t);
      return;
    }
    ConvShape plain = s;
    plain.relu = false;
    Tensors u = t;
    u.residual = nullptr;
    Run(plain, u);
    add_residual(s, t.residual, t.dst);
  }
  static bool fwd_direct_applies(const ConvShape& s, const Tensors&) { return direct_applies<UK>(s); }
  static void fwd_direct(const ConvShape& s, const Tensors& t) {
    if constexpr (kDirect)
      conv2d_direct<UK>(s, t.src, t.wei, false, t.bias, t.residual, t.dst, t.prepared, t.src_blocked, t.dst_blocked);
  }
  // Channel blocks of 16 (ConvTensors::src_blocked / dst_blocked): the AVX-512 direct and pixels
  // forms (16 lanes), and Winograd's channel form (which hands a non-finite problem to the
  // direct form, in the same layouts).
  static constexpr bool kBlocks = UK::kDirectLanes == 16;
  static bool fwd_direct_blocked(const ConvShape& s, bool src, bool dst) {
    return kBlocks && (!src || s.ic % 16 == 0) && (!dst || s.oc % 16 == 0);
  }
  static bool fwd_pixels_blocked(const ConvShape& s, bool src, bool) { return kBlocks && !src && s.oc % 16 == 0; }
  // The packed filters ([tap][OC]), kept by an inference plan across runs: at batch 1 the pack
  // (a transpose of the bank) was ~10% of the example ResNet's stride-2 layers, and on two
  // threads each thread packed its own half on every call.
  static int64_t fwd_direct_prepared_size(const ConvShape& s) {
    if constexpr (kDirect) return direct_applies<UK>(s) ? s.ic * s.kh * s.kw * s.oc : 0;
    return 0;
  }
  static void fwd_direct_prepare(const ConvShape& s, const T* wei, T* prepared) {
    if constexpr (kDirect) pack_filters_direct<UK>(s, wei, false, prepared, 1);
  }
  static bool fwd_pixels_applies(const ConvShape& s, const Tensors&) { return pixels_applies<UK>(s); }
  // Few filters (at most one call's 8), or few taps per output (K = IC*KH*KW <= 45: a stem of
  // 1 to 5 channels), where the direct form's pixel-major-to-NCHW transpose (OC x P moves against
  // OC x P x K products) and the GEMMs' panels cost more than the products. Time of the pixels
  // form against the best other (1 / 2 threads, 2026-12-04, 64 images unless said): 1 -> 16
  // channels 3x3 28x28 0.23 / 0.20 ms vs 0.46 (implicit) / 0.32 (direct), 1 -> 32 0.61 / 0.38
  // vs 1.11 / 0.56 (direct), 5x5 0.45 / 0.37 vs 0.55 / 0.49, 3 -> 16 3x3 32x32 0.58 / 0.49 vs
  // 0.81 / 0.65 (implicit), 3 -> 64 2.22 / 1.72 vs 3.04 / 2.40, 3 -> 24 0.85 / 0.65 vs 1.45 /
  // 0.88; 1 -> 16 3x3 at 8 images 0.032 vs 0.045 (direct), at 1 image 0.012 vs 0.013; 4 -> 16
  // 0.64 / 0.45 vs 0.78 / 0.51, 5 -> 16 0.79 / 0.52 vs 0.91 / 0.58; at 72 taps level or slower
  // (8 -> 16 1.19 / 0.81 vs 1.22 / 0.78, 8 -> 32 2.29 / 1.52 vs 2.30 / 1.13). Only where output
  // rows fill at least 3/4 of the vectors' lanes: 1x1, 40 -> 32 channels on 9x9 (9 of 16 lanes)
  // took 0.29 / 0.16 ms against the direct form's 0.22 / 0.12; on 28x28, 16 -> 32, 1.03 / 0.54
  // against 1.38 / 0.72.
  static bool fwd_pixels_pays(const ConvShape& s, const Tensors&) {
    if constexpr (!kDirect) return false;  // not in the lists: no pixels kernel
    const bool rows_fill_lanes = 4 * s.ow >= 3 * UK::kDirectLanes * ceil_div(s.ow, int64_t{UK::kDirectLanes});
    return s.oc <= kPixelsMaxOC || (s.ic * s.kh * s.kw <= 45 && rows_fill_lanes);
  }
  static void fwd_pixels_(const ConvShape& s, const Tensors& t) {
    if constexpr (kDirect) conv2d_fwd_pixels<UK>(s, t.src, t.wei, t.bias, t.dst, t.dst_blocked);
  }
  static constexpr auto fwd_pixels = with_residual<fwd_pixels_>;
  static bool fwd_implicit_applies(const ConvShape& s, const Tensors&) { return unit_stride_frame(s, s.oh, s.ow); }
  static void fwd_implicit_(const ConvShape& s, const Tensors& t) {
    conv2d_fwd_unit_stride<UK>(s, t.src, t.wei, t.bias, t.dst);
  }
  static constexpr auto fwd_implicit = with_residual<fwd_implicit_>;
  static void fwd_im2col_(const ConvShape& s, const Tensors& t) { conv2d_fwd_im2col<UK>(s, t.src, t.wei, t.bias, t.dst); }
  static constexpr auto fwd_im2col = with_residual<fwd_im2col_>;

  // ---- Winograd F(4x4, 3x3), forward and backward-data (conv2d_winograd.h) -----------------
  // Applies to every 3x3 unit-stride problem: where an inf or NaN (or an overflow) would spread
  // through its transforms, it hands the whole problem to the next algorithm of its list that
  // applies and pays, so its result is always exact in the lists' sense.
  static void run_next(ConvPass pass, void (*self)(const ConvShape&, const Tensors&), const ConvShape& s,
                       const Tensors& t) {
    const ConvAlgoList<T> l = list(pass);
    int i = 0;
    while (i < l.count && l.algos[i].run != self) ++i;
    for (++i; i < l.count; ++i) {
      const ConvAlgo<T>& a = l.algos[i];
      if (a.applies(s, t) && (a.pays == nullptr || a.pays(s, t))) {
        a.run(s, t);
        return;
      }
    }
  }
  static bool fwd_winograd_applies(const ConvShape& s, const Tensors&) { return winograd_applies(s); }
  static bool fwd_winograd_pays(const ConvShape& s, const Tensors& t) { return winograd_pays<T>(s, t.keeps_prepared); }
  static void fwd_winograd(const ConvShape& s, const Tensors& t) {
    if (t.src_blocked || t.dst_blocked) {
      if constexpr (WinoChannelForm<T>::kCompiled && kBlocks) {
        if (!conv2d_winograd_channels<UK>(s, t.src, t.wei, false, t.bias, t.residual, t.dst, t.prepared, t.src_blocked,
                                          t.dst_blocked)) {
          Tensors direct = t;
          direct.prepared = nullptr;  // Winograd's, not the direct form's pack
          fwd_direct(s, direct);
        }
        return;
      }
      throw std::logic_error("conv2d winograd_f4x3: channel blocks without the channel form");
    }
    if (!conv2d_winograd<UK>(s, t.src, t.wei, false, t.bias, t.residual, t.dst, t.prepared)) {
      // The next algorithm transforms or packs the weights itself: t.prepared holds Winograd's
      // transformed filters (kept by an inference plan), which the direct form took for its
      // own pack until the forty-second stop: a non-finite value in a plan's Winograd layer
      // then gave every output of the layer wrong.
      Tensors next = t;
      next.prepared = nullptr;
      run_next(ConvPass::fwd, fwd_winograd, s, next);
    }
  }
  static bool fwd_winograd_blocked(const ConvShape& s, bool src, bool dst) {
    if constexpr (WinoChannelForm<T>::kCompiled) {
      return winograd_channels_applies(s) && direct_applies<UK>(s) && fwd_direct_blocked(s, src, dst);
    }
    return false;
  }
  // The transformed filters, kept by an inference plan across runs (ConvTensors::prepared).
  static int64_t fwd_winograd_prepared_size(const ConvShape& s) {
    return winograd_applies(s) ? winograd_prepared_size(s) : 0;
  }
  static void fwd_winograd_prepare(const ConvShape& s, const T* wei, T* prepared) {
    winograd_prepare_weights<UK>(s, wei, prepared);
  }
  static bool bwd_data_winograd_applies(const ConvShape& s, const Tensors&) { return winograd_applies(s); }
  static bool bwd_data_winograd_pays(const ConvShape& s, const Tensors&) {
    return winograd_pays<T>(bwd_data_as_forward(s), false);
  }
  static void bwd_data_winograd(const ConvShape& s, const Tensors& t) {
    if (!conv2d_winograd<UK>(bwd_data_as_forward(s), t.diff_dst, t.wei, true, nullptr, nullptr, t.diff_src))
      run_next(ConvPass::bwd_data, bwd_data_winograd, s, t);
  }

  // ---- backward data ----------------------------------------------------------------------
  // The unit-stride forms multiply weights by dy's zero padding; with an inf or NaN weight that
  // would turn 0 into NaN where the true gradient has no such term, so they apply to finite
  // weights only (checked last: it reads all the weights).
  static bool finite_weights(const ConvShape& s, const Tensors& t) {
    return t.wei == nullptr || all_finite(t.wei, s.wei_size());
  }
  static bool bwd_data_unit(const ConvShape& s) { return unit_stride_frame(s, s.ih, s.iw); }
  static bool bwd_data_direct_applies(const ConvShape& s, const Tensors& t) {
    return bwd_data_unit(s) && direct_applies<UK>(bwd_data_as_forward(s)) && finite_weights(s, t);
  }
  static void bwd_data_direct(const ConvShape& s, const Tensors& t) {
    if constexpr (kDirect) conv2d_direct<UK>(bwd_data_as_forward(s), t.diff_dst, t.wei, true, nullptr, nullptr, t.diff_src);
  }
  static bool bwd_data_phases_applies_(const ConvShape& s, const Tensors& t) {
    return bwd_data_phases_applies<UK>(s) && finite_weights(s, t);
  }
  // Where some phases have no tap (a kernel narrower than the stride: 1x1 stride 2) their
  // share of dx is zeros, stored through the band's transposes instead of col2im's memset:
  // 128x16x28x28 <- 32 1x1 filters, stride 2, 0.70x / 0.66x col2im's speed (1 / 2 threads),
  // against 1.54-2.09x on the example ResNet's 3x3 stride-2 layers.
  static bool bwd_data_phases_pays(const ConvShape& s, const Tensors&) { return s.kh >= s.sh && s.kw >= s.sw; }
  static void bwd_data_phases(const ConvShape& s, const Tensors& t) {
    if constexpr (kDirect) conv2d_bwd_data_phases<UK>(s, t.diff_dst, t.wei, t.diff_src);
  }
  static bool bwd_data_tapwise_applies_(const ConvShape& s, const Tensors& t) {
    return bwd_data_unit(s) && bwd_data_tapwise_applies(s) && finite_weights(s, t);
  }
  static bool bwd_data_tapwise_pays_(const ConvShape& s, const Tensors&) { return bwd_data_tapwise_pays(s); }
  static void bwd_data_tapwise(const ConvShape& s, const Tensors& t) {
    conv2d_bwd_data_tapwise<UK>(s, t.diff_dst, t.wei, t.diff_src);
  }
  static bool bwd_data_implicit_applies(const ConvShape& s, const Tensors& t) {
    return bwd_data_unit(s) && finite_weights(s, t);
  }
  static void bwd_data_implicit(const ConvShape& s, const Tensors& t) {
    conv2d_bwd_data_unit_stride<UK>(s, t.diff_dst, t.wei, t.diff_src);
  }
  static void bwd_data_col2im(const ConvShape& s, const Tensors& t) {
    conv2d_bwd_data_col2im<UK>(s, t.diff_dst, t.wei, t.diff_src);
  }

  // ---- backward weights -------------------------------------------------------------------
  // Winograd's weight gradient (conv2d_winograd_weights.h): AVX-512's channel-vector form only.
  static constexpr bool kWinoWeights = WinoChannelForm<T>::kCompiled;
  static bool bwd_weights_winograd_applies(const ConvShape& s, const Tensors&) {
    return winograd_applies(s) && winograd_channels_applies(s);
  }
  static bool bwd_weights_winograd_pays(const ConvShape& s, const Tensors&) { return winograd_weights_pays(s); }
  static void bwd_weights_winograd(const ConvShape& s, const Tensors& t) {
    if constexpr (kWinoWeights) {
      if (!conv2d_bwd_weights_winograd<UK>(s, t.diff_dst, t.src, t.diff_wei, t.diff_bias))
        run_next(ConvPass::bwd_weights, bwd_weights_winograd, s, t);
    }
  }
  static bool bwd_weights_outer_applies_(const ConvShape& s, const Tensors&) { return bwd_weights_outer_applies<UK>(s); }
  static void bwd_weights_outer(const ConvShape& s, const Tensors& t) {
    if constexpr (kOuter) conv2d_bwd_weights_outer<UK>(s, t.diff_dst, t.src, t.diff_wei, t.diff_bias);
  }
  static bool bwd_weights_implicit_applies(const ConvShape& s, const Tensors& t) {
    return bwd_weights_dot_unit_applies(s, t.src);
  }
  static void bwd_weights_implicit(const ConvShape& s, const Tensors& t) {
    conv2d_bwd_weights_dot<UK>(s, t.diff_dst, t.src, t.diff_wei, t.diff_bias, true);
  }
  static void bwd_weights_im2col(const ConvShape& s, const Tensors& t) {
    conv2d_bwd_weights_dot<UK>(s, t.diff_dst, t.src, t.diff_wei, t.diff_bias, false);
  }

  struct Entry {
    bool compiled;  // this micro-kernel has what the algorithm needs
    ConvAlgo<T> algo;
  };

  // The compiled entries of `all`, in order; built once per pass (the pass is the key).
  template <ConvPass P, std::size_t N>
  static ConvAlgoList<T> compiled_only(const Entry (&all)[N]) {
    struct Kept {
      ConvAlgo<T> algos[N];
      int count = 0;
    };
    static const Kept kept = [&] {
      Kept k;
      for (const Entry& e : all)
        if (e.compiled) k.algos[k.count++] = e.algo;
      return k;
    }();
    return {kept.algos, kept.count};
  }

  static ConvAlgoList<T> list(ConvPass pass) {
    static const Entry fwd[] = {
        {true, {"winograd_f4x3", fwd_winograd_applies, fwd_winograd_pays, fwd_winograd, fwd_winograd_prepared_size,
                fwd_winograd_prepare, fwd_winograd_blocked}},
        {kDirect, {"pixels", fwd_pixels_applies, fwd_pixels_pays, fwd_pixels, nullptr, nullptr, fwd_pixels_blocked}},
        {kDirect, {"direct", fwd_direct_applies, nullptr, fwd_direct, fwd_direct_prepared_size, fwd_direct_prepare,
                   fwd_direct_blocked}},
        {true, {"implicit_gemm", fwd_implicit_applies, nullptr, fwd_implicit}},
        {true, {"im2col_gemm", always, nullptr, fwd_im2col}},
    };
    static const Entry bwd_data[] = {
        {true, {"winograd_f4x3", bwd_data_winograd_applies, bwd_data_winograd_pays, bwd_data_winograd}},
        {kDirect, {"direct", bwd_data_direct_applies, nullptr, bwd_data_direct}},
        {kDirect, {"direct_phases", bwd_data_phases_applies_, bwd_data_phases_pays, bwd_data_phases}},
        {true, {"tapwise_gemm", bwd_data_tapwise_applies_, bwd_data_tapwise_pays_, bwd_data_tapwise}},
        {true, {"implicit_gemm", bwd_data_implicit_applies, nullptr, bwd_data_implicit}},
        {true, {"col2im_gemm", always, nullptr, bwd_data_col2im}},
    };
    static const Entry bwd_weights[] = {
        {kWinoWeights, {"winograd_f4x3", bwd_weights_winograd_applies, bwd_weights_winograd_pays, bwd_weights_winograd}},
        {kOuter, {"outer", bwd_weights_outer_applies_, nullptr, bwd_weights_outer}},
        {true, {"implicit_dot", bwd_weights_implicit_applies, nullptr, bwd_weights_implicit}},
        {true, {"im2col_dot", always, nullptr, bwd_weights_im2col}},
    };
    switch (pass) {
      case ConvPass::fwd: return compiled_only<ConvPass::fwd>(fwd);
      case ConvPass::bwd_data: return compiled_only<ConvPass::bwd_data>(bwd_data);
      default: return compiled_only<ConvPass::bwd_weights>(bwd_weights);
    }
  }
};

}  // namespace
}  // namespace convforge
