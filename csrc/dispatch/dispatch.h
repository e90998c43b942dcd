// One best-first kernel table per (op, dtype): the first entry whose ISA the CPU may run wins,
// the portable reference kernel is always last. Lookup is per call (a few comparisons), so
// lowering the ISA cap takes effect immediately.
#pragma once

#include <string>
#include <vector>

#include "common/cpu.h"
#include "kernels/kernels.h"

namespace convforge {

template <class T>
using Conv2dAlgosFn = ConvAlgoList<T> (*)(ConvPass);
// Depthwise conv2d (kernels/channel_ops.h): one kernel per pass and ISA, no algorithm list;
// the conv2d tensor arguments, named apart from conv2d's algorithm lists.
template <class T>
using DepthwiseFwdFn = void (*)(const ConvShape&, const T*, const T*, const T*, T*);
template <class T>
using DepthwiseBwdDataFn = void (*)(const ConvShape&, const T*, const T*, T*);
template <class T>
using DepthwiseBwdWeightsFn = void (*)(const ConvShape&, const T*, const T*, T*, T*);
template <class T>
using DenseFwdFn = void (*)(const DenseShape&, const T*, const T*, const T*, T*);
template <class T>
using DenseBwdDataFn = void (*)(const DenseShape&, const T*, const T*, T*);
template <class T>
using DenseBwdWeightsFn = void (*)(const DenseShape&, const T*, const T*, T*, T*);
template <class T>
using MaxPoolFwdFn = void (*)(const PoolShape&, const T*, T*, int64_t*);
template <class T>
using MaxPoolBwdFn = int64_t (*)(const PoolShape&, const T*, const int64_t*, const T*, T*);
template <class T>
using ReluFwdFn = void (*)(int64_t, const T*, T*);
template <class T>
using ReluBwdFn = void (*)(int64_t, const T*, const T*, T*);
template <class T>
using GeluFwdFn = void (*)(int64_t, const T*, T*);
template <class T>
using GeluBwdFn = void (*)(int64_t, const T*, const T*, T*);
template <class T>
using SoftmaxFwdFn = void (*)(int64_t, int64_t, const T*, T*);

// Per-channel ops (kernels/channel_ops.h).
template <class T>
using BatchNormFwdTrainingFn = void (*)(const ChannelShape&, const T*, const T*, const T*, double, bool, T*, T*, T*);
template <class T>
using BatchNormFwdInferenceFn = void (*)(const ChannelShape&, const T*, const T*, const T*, const T*, const T*,
                                         double, T*);
template <class T>
using BatchNormBwdFn = void (*)(const ChannelShape&, const T*, const T*, const T*, const T*, const T*, const T*,
                                bool, double, T*, T*, T*);
template <class T>
using GlobalAvgPoolFwdFn = void (*)(const ChannelShape&, const T*, T*);
template <class T>
using GlobalAvgPoolBwdFn = void (*)(const ChannelShape&, const T*, T*);
template <class T>
using GlobalMaxPoolFwdFn = void (*)(const ChannelShape&, const T*, T*, int64_t*);
template <class T>
using GlobalMaxPoolBwdFn = int64_t (*)(const ChannelShape&, const T*, const int64_t*, T*);

// The inference plan's digest of its kept weights (kernels.h): on bytes, the same value on every ISA.
using DigestFn = Digest (*)(const unsigned char*, int64_t);

template <class Fn>
struct Kernel {
  const char* name;
  Isa isa;
  Fn fn;
  bool (*applies)(const PoolShape&) = nullptr;  // max-pool only; null: every problem
};

// Selected kernel for the active ISA. T is float or double.
const Kernel<DigestFn>& digest_kernel();
template <class T> const Kernel<Conv2dAlgosFn<T>>& conv2d_kernel();  // the algorithm lists
template <class T> const Kernel<DenseFwdFn<T>>& dense_fwd_kernel();
template <class T> const Kernel<DenseBwdDataFn<T>>& dense_bwd_data_kernel();
template <class T> const Kernel<DenseBwdWeightsFn<T>>& dense_bwd_weights_kernel();
template <class T> const Kernel<MaxPoolFwdFn<T>>& maxpool2d_fwd_kernel(const PoolShape& s);  // first that applies
template <class T> const Kernel<MaxPoolBwdFn<T>>& maxpool2d_bwd_kernel();
template <class T> const Kernel<ReluFwdFn<T>>& relu_fwd_kernel();
template <class T> const Kernel<ReluBwdFn<T>>& relu_bwd_kernel();
template <class T> const Kernel<SoftmaxFwdFn<T>>& softmax_fwd_kernel();
template <class T> const Kernel<GeluFwdFn<T>>& gelu_fwd_kernel();
template <class T> const Kernel<GeluBwdFn<T>>& gelu_bwd_kernel();

template <class T> const Kernel<BatchNormFwdTrainingFn<T>>& batchnorm_fwd_training_kernel();
template <class T> const Kernel<BatchNormFwdInferenceFn<T>>& batchnorm_fwd_inference_kernel();
template <class T> const Kernel<BatchNormBwdFn<T>>& batchnorm_bwd_kernel();
template <class T> const Kernel<GlobalAvgPoolFwdFn<T>>& global_avg_pool2d_fwd_kernel();
template <class T> const Kernel<GlobalAvgPoolBwdFn<T>>& global_avg_pool2d_bwd_kernel();
template <class T> const Kernel<GlobalMaxPoolFwdFn<T>>& global_max_pool2d_fwd_kernel();
template <class T> const Kernel<GlobalMaxPoolBwdFn<T>>& global_max_pool2d_bwd_kernel();
template <class T> const Kernel<DepthwiseFwdFn<T>>& depthwise_conv2d_fwd_kernel();
template <class T> const Kernel<DepthwiseBwdDataFn<T>>& depthwise_conv2d_bwd_data_kernel();
template <class T> const Kernel<DepthwiseBwdWeightsFn<T>>& depthwise_conv2d_bwd_weights_kernel();

#define CONVFORGE_DECLARE_SELECTOR(getter, Fn)            \
  template <> const Kernel<Fn<float>>& getter<float>();    \
  template <> const Kernel<Fn<double>>& getter<double>();
CONVFORGE_DECLARE_SELECTOR(conv2d_kernel, Conv2dAlgosFn)
CONVFORGE_DECLARE_SELECTOR(dense_fwd_kernel, DenseFwdFn)
CONVFORGE_DECLARE_SELECTOR(dense_bwd_data_kernel, DenseBwdDataFn)
CONVFORGE_DECLARE_SELECTOR(dense_bwd_weights_kernel, DenseBwdWeightsFn)
template <> const Kernel<MaxPoolFwdFn<float>>& maxpool2d_fwd_kernel<float>(const PoolShape& s);
template <> const Kernel<MaxPoolFwdFn<double>>& maxpool2d_fwd_kernel<double>(const PoolShape& s);
CONVFORGE_DECLARE_SELECTOR(maxpool2d_bwd_kernel, MaxPoolBwdFn)
CONVFORGE_DECLARE_SELECTOR(relu_fwd_kernel, ReluFwdFn)
CONVFORGE_DECLARE_SELECTOR(relu_bwd_kernel, ReluBwdFn)
CONVFORGE_DECLARE_SELECTOR(softmax_fwd_kernel, SoftmaxFwdFn)
CONVFORGE_DECLARE_SELECTOR(gelu_fwd_kernel, GeluFwdFn)
CONVFORGE_DECLARE_SELECTOR(gelu_bwd_kernel, GeluBwdFn)
CONVFORGE_DECLARE_SELECTOR(batchnorm_fwd_training_kernel, BatchNormFwdTrainingFn)
CONVFORGE_DECLARE_SELECTOR(batchnorm_fwd_inference_kernel, BatchNormFwdInferenceFn)
CONVFORGE_DECLARE_SELECTOR(batchnorm_bwd_kernel, BatchNormBwdFn)
CONVFORGE_DECLARE_SELECTOR(global_avg_pool2d_fwd_kernel, GlobalAvgPoolFwdFn)
CONVFORGE_DECLARE_SELECTOR(global_avg_pool2d_bwd_kernel, GlobalAvgPoolBwdFn)
CONVFORGE_DECLARE_SELECTOR(global_max_pool2d_fwd_kernel, GlobalMaxPoolFwdFn)
CONVFORGE_DECLARE_SELECTOR(global_max_pool2d_bwd_kernel, GlobalMaxPoolBwdFn)
CONVFORGE_DECLARE_SELECTOR(depthwise_conv2d_fwd_kernel, DepthwiseFwdFn)
CONVFORGE_DECLARE_SELECTOR(depthwise_conv2d_bwd_data_kernel, DepthwiseBwdDataFn)
CONVFORGE_DECLARE_SELECTOR(depthwise_conv2d_bwd_weights_kernel, DepthwiseBwdWeightsFn)
#undef CONVFORGE_DECLARE_SELECTOR

// The conv2d algorithm a pass runs on the active ISA: `forced` (a name; null or empty for none)
// if that ISA has it and it applies, else the first that applies and pays. Returns null, with
// *error naming the algorithm, the pass and what there is, when a forced one cannot run.
template <class T>
const ConvAlgo<T>* choose_conv2d_algorithm(ConvPass pass, const ConvShape& plan, const ConvTensors<T>& t,
                                           const char* forced, std::string* error);
// Names of the active ISA's algorithms of `pass` that apply, best-first: those the default
// choice would take (apply and pay) first, in list order, then those that only apply.
template <class T>
std::vector<std::string> applicable_conv2d_algorithms(ConvPass pass, const ConvShape& plan, const ConvTensors<T>& t);

// The most elements of T that any forward algorithm of any compiled ISA makes of `plan`'s
// weights (ConvAlgo::prepare): room for a caller that keeps them, whatever ISA runs later.
template <class T>
int64_t conv2d_prepared_capacity(const ConvShape& plan);

// Every compiled conv2d algorithm, per ISA (float32; float64 has the ref list) and pass.
struct ConvAlgoNames {
  std::string isa, pass;
  std::vector<std::string> names;
};
std::vector<ConvAlgoNames> compiled_conv2d_algorithms();

struct KernelChoice {
  std::string op, dtype, name;
};
// What every op would run right now, for build_info().
std::vector<KernelChoice> selected_kernels();

}  // namespace convforge
