#include "dispatch/dispatch.h"

namespace convforge {
namespace {

template <class Fn, std::size_t N>
const Kernel<Fn>& best(const Kernel<Fn> (&table)[N]) {
  const Isa active = active_isa();
  for (const Kernel<Fn>& k : table) {
    if (static_cast<int>(k.isa) <= static_cast<int>(active)) return k;
  }
  return table[N - 1];
}

#if CONVFORGE_HAVE_AVX512
#define CONVFORGE_AVX512_ENTRY(fn) {#fn "__avx512", Isa::avx512, &fn##__avx512},
#else
#define CONVFORGE_AVX512_ENTRY(fn)
#endif
#if CONVFORGE_HAVE_AVX2
#define CONVFORGE_AVX2_ENTRY(fn) {#fn "__avx2", Isa::avx2, &fn##__avx2},
#else
#define CONVFORGE_AVX2_ENTRY(fn)
#endif
#define CONVFORGE_REF_ENTRY(fn) {#fn "__ref", Isa::ref, &fn##__ref},

const Kernel<Conv2dFwdFn<float>> kConv2dFwdF32[] = {
    CONVFORGE_AVX512_ENTRY(conv2d_fwd) CONVFORGE_AVX2_ENTRY(conv2d_fwd) CONVFORGE_REF_ENTRY(conv2d_fwd)};
const Kernel<Conv2dBwdDataFn<float>> kConv2dBwdDataF32[] = {CONVFORGE_AVX512_ENTRY(conv2d_bwd_data)
                                                                CONVFORGE_AVX2_ENTRY(conv2d_bwd_data)
                                                                    CONVFORGE_REF_ENTRY(conv2d_bwd_data)};
const Kernel<Conv2dBwdWeightsFn<float>> kConv2dBwdWeightsF32[] = {CONVFORGE_AVX512_ENTRY(conv2d_bwd_weights)
                                                                      CONVFORGE_AVX2_ENTRY(conv2d_bwd_weights)
                                                                          CONVFORGE_REF_ENTRY(conv2d_bwd_weights)};
const Kernel<DenseFwdFn<float>> kDenseFwdF32[] = {
    CONVFORGE_AVX512_ENTRY(dense_fwd) CONVFORGE_AVX2_ENTRY(dense_fwd) CONVFORGE_REF_ENTRY(dense_fwd)};
const Kernel<DenseBwdDataFn<float>> kDenseBwdDataF32[] = {
    CONVFORGE_AVX512_ENTRY(dense_bwd_data) CONVFORGE_AVX2_ENTRY(dense_bwd_data) CONVFORGE_REF_ENTRY(dense_bwd_data)};
const Kernel<DenseBwdWeightsFn<float>> kDenseBwdWeightsF32[] = {CONVFORGE_AVX512_ENTRY(dense_bwd_weights)
                                                                    CONVFORGE_AVX2_ENTRY(dense_bwd_weights)
                                                                        CONVFORGE_REF_ENTRY(dense_bwd_weights)};
const Kernel<ReluFwdFn<float>> kReluFwdF32[] = {
    CONVFORGE_AVX512_ENTRY(relu_fwd) CONVFORGE_AVX2_ENTRY(relu_fwd) CONVFORGE_REF_ENTRY(relu_fwd)};
const Kernel<ReluBwdFn<float>> kReluBwdF32[] = {
    CONVFORGE_AVX512_ENTRY(relu_bwd) CONVFORGE_AVX2_ENTRY(relu_bwd) CONVFORGE_REF_ENTRY(relu_bwd)};

// float64 is for gradient checks: the reference kernels only.
const Kernel<Conv2dFwdFn<double>> kConv2dFwdF64[] = {CONVFORGE_REF_ENTRY(conv2d_fwd)};
const Kernel<Conv2dBwdDataFn<double>> kConv2dBwdDataF64[] = {CONVFORGE_REF_ENTRY(conv2d_bwd_data)};
const Kernel<Conv2dBwdWeightsFn<double>> kConv2dBwdWeightsF64[] = {CONVFORGE_REF_ENTRY(conv2d_bwd_weights)};
const Kernel<DenseFwdFn<double>> kDenseFwdF64[] = {CONVFORGE_REF_ENTRY(dense_fwd)};
const Kernel<DenseBwdDataFn<double>> kDenseBwdDataF64[] = {CONVFORGE_REF_ENTRY(dense_bwd_data)};
const Kernel<DenseBwdWeightsFn<double>> kDenseBwdWeightsF64[] = {CONVFORGE_REF_ENTRY(dense_bwd_weights)};
const Kernel<ReluFwdFn<double>> kReluFwdF64[] = {CONVFORGE_REF_ENTRY(relu_fwd)};
const Kernel<ReluBwdFn<double>> kReluBwdF64[] = {CONVFORGE_REF_ENTRY(relu_bwd)};

const Kernel<MaxPoolFwdFn<float>> kMaxPoolFwdF32[] = {
    CONVFORGE_AVX512_ENTRY(maxpool2d_fwd) CONVFORGE_AVX2_ENTRY(maxpool2d_fwd)
    {"maxpool2d_fwd__ref", Isa::ref, &maxpool2d_fwd__ref<float>}};
const Kernel<MaxPoolBwdFn<float>> kMaxPoolBwdF32[] = {{"maxpool2d_bwd__ref", Isa::ref, &maxpool2d_bwd__ref<float>}};
const Kernel<MaxPoolFwdFn<double>> kMaxPoolFwdF64[] = {{"maxpool2d_fwd__ref", Isa::ref, &maxpool2d_fwd__ref<double>}};
const Kernel<MaxPoolBwdFn<double>> kMaxPoolBwdF64[] = {{"maxpool2d_bwd__ref", Isa::ref, &maxpool2d_bwd__ref<double>}};

// Per-channel ops (kernels/channel_ops.h): SIMD float32, portable float64.
#define CONVFORGE_TABLES(fn, Fn)                                                                       \
  const Kernel<Fn<float>> k_##fn##_f32[] = {CONVFORGE_AVX512_ENTRY(fn) CONVFORGE_AVX2_ENTRY(fn)          \
                                                CONVFORGE_REF_ENTRY(fn)};                              \
  const Kernel<Fn<double>> k_##fn##_f64[] = {CONVFORGE_REF_ENTRY(fn)};
CONVFORGE_TABLES(batchnorm_fwd_training, BatchNormFwdTrainingFn)
CONVFORGE_TABLES(batchnorm_fwd_inference, BatchNormFwdInferenceFn)
CONVFORGE_TABLES(batchnorm_bwd, BatchNormBwdFn)
CONVFORGE_TABLES(global_avg_pool2d_fwd, GlobalAvgPoolFwdFn)
CONVFORGE_TABLES(global_avg_pool2d_bwd, GlobalAvgPoolBwdFn)
CONVFORGE_TABLES(depthwise_conv2d_fwd, Conv2dFwdFn)
CONVFORGE_TABLES(depthwise_conv2d_bwd_data, Conv2dBwdDataFn)
CONVFORGE_TABLES(depthwise_conv2d_bwd_weights, Conv2dBwdWeightsFn)
#undef CONVFORGE_TABLES
const Kernel<GlobalMaxPoolFwdFn<float>> k_global_max_pool2d_fwd_f32[] = {
    {"global_max_pool2d_fwd__ref", Isa::ref, &global_max_pool2d_fwd__ref<float>}};
const Kernel<GlobalMaxPoolFwdFn<double>> k_global_max_pool2d_fwd_f64[] = {
    {"global_max_pool2d_fwd__ref", Isa::ref, &global_max_pool2d_fwd__ref<double>}};
const Kernel<GlobalMaxPoolBwdFn<float>> k_global_max_pool2d_bwd_f32[] = {
    {"global_max_pool2d_bwd__ref", Isa::ref, &global_max_pool2d_bwd__ref<float>}};
const Kernel<GlobalMaxPoolBwdFn<double>> k_global_max_pool2d_bwd_f64[] = {
    {"global_max_pool2d_bwd__ref", Isa::ref, &global_max_pool2d_bwd__ref<double>}};

}  // namespace

#define CONVFORGE_SELECTOR(getter, Fn, table_f32, table_f64)                \
  template <> const Kernel<Fn<float>>& getter<float>() { return best(table_f32); }  \
  template <> const Kernel<Fn<double>>& getter<double>() { return best(table_f64); }
CONVFORGE_SELECTOR(conv2d_fwd_kernel, Conv2dFwdFn, kConv2dFwdF32, kConv2dFwdF64)
CONVFORGE_SELECTOR(conv2d_bwd_data_kernel, Conv2dBwdDataFn, kConv2dBwdDataF32, kConv2dBwdDataF64)
CONVFORGE_SELECTOR(conv2d_bwd_weights_kernel, Conv2dBwdWeightsFn, kConv2dBwdWeightsF32, kConv2dBwdWeightsF64)
CONVFORGE_SELECTOR(dense_fwd_kernel, DenseFwdFn, kDenseFwdF32, kDenseFwdF64)
CONVFORGE_SELECTOR(dense_bwd_data_kernel, DenseBwdDataFn, kDenseBwdDataF32, kDenseBwdDataF64)
CONVFORGE_SELECTOR(dense_bwd_weights_kernel, DenseBwdWeightsFn, kDenseBwdWeightsF32, kDenseBwdWeightsF64)
CONVFORGE_SELECTOR(maxpool2d_fwd_kernel, MaxPoolFwdFn, kMaxPoolFwdF32, kMaxPoolFwdF64)
CONVFORGE_SELECTOR(maxpool2d_bwd_kernel, MaxPoolBwdFn, kMaxPoolBwdF32, kMaxPoolBwdF64)
CONVFORGE_SELECTOR(relu_fwd_kernel, ReluFwdFn, kReluFwdF32, kReluFwdF64)
CONVFORGE_SELECTOR(relu_bwd_kernel, ReluBwdFn, kReluBwdF32, kReluBwdF64)
#define CONVFORGE_CHANNEL_SELECTOR(fn, Fn) CONVFORGE_SELECTOR(fn##_kernel, Fn, k_##fn##_f32, k_##fn##_f64)
CONVFORGE_CHANNEL_SELECTOR(batchnorm_fwd_training, BatchNormFwdTrainingFn)
CONVFORGE_CHANNEL_SELECTOR(batchnorm_fwd_inference, BatchNormFwdInferenceFn)
CONVFORGE_CHANNEL_SELECTOR(batchnorm_bwd, BatchNormBwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_avg_pool2d_fwd, GlobalAvgPoolFwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_avg_pool2d_bwd, GlobalAvgPoolBwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_max_pool2d_fwd, GlobalMaxPoolFwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_max_pool2d_bwd, GlobalMaxPoolBwdFn)
CONVFORGE_CHANNEL_SELECTOR(depthwise_conv2d_fwd, Conv2dFwdFn)
CONVFORGE_CHANNEL_SELECTOR(depthwise_conv2d_bwd_data, Conv2dBwdDataFn)
CONVFORGE_CHANNEL_SELECTOR(depthwise_conv2d_bwd_weights, Conv2dBwdWeightsFn)
#undef CONVFORGE_CHANNEL_SELECTOR

std::vector<KernelChoice> selected_kernels() {
  std::vector<KernelChoice> out;
  auto add = [&](const char* op, const char* f32, const char* f64) {
    out.push_back({op, "float32", f32});
    out.push_back({op, "float64", f64});
  };
  add("conv2d_fwd", conv2d_fwd_kernel<float>().name, conv2d_fwd_kernel<double>().name);
  add("conv2d_bwd_data", conv2d_bwd_data_kernel<float>().name, conv2d_bwd_data_kernel<double>().name);
  add("conv2d_bwd_weights", conv2d_bwd_weights_kernel<float>().name, conv2d_bwd_weights_kernel<double>().name);
  add("dense_fwd", dense_fwd_kernel<float>().name, dense_fwd_kernel<double>().name);
  add("dense_bwd_data", dense_bwd_data_kernel<float>().name, dense_bwd_data_kernel<double>().name);
  add("dense_bwd_weights", dense_bwd_weights_kernel<float>().name, dense_bwd_weights_kernel<double>().name);
  add("maxpool2d_fwd", maxpool2d_fwd_kernel<float>().name, maxpool2d_fwd_kernel<double>().name);
  add("maxpool2d_bwd", maxpool2d_bwd_kernel<float>().name, maxpool2d_bwd_kernel<double>().name);
  add("relu_fwd", relu_fwd_kernel<float>().name, relu_fwd_kernel<double>().name);
  add("relu_bwd", relu_bwd_kernel<float>().name, relu_bwd_kernel<double>().name);
#define CONVFORGE_ADD(fn) add(#fn, fn##_kernel<float>().name, fn##_kernel<double>().name);
  CONVFORGE_ADD(batchnorm_fwd_training)
  CONVFORGE_ADD(batchnorm_fwd_inference)
  CONVFORGE_ADD(batchnorm_bwd)
  CONVFORGE_ADD(global_avg_pool2d_fwd)
  CONVFORGE_ADD(global_avg_pool2d_bwd)
  CONVFORGE_ADD(global_max_pool2d_fwd)
  CONVFORGE_ADD(global_max_pool2d_bwd)
  CONVFORGE_ADD(depthwise_conv2d_fwd)
  CONVFORGE_ADD(depthwise_conv2d_bwd_data)
  CONVFORGE_ADD(depthwise_conv2d_bwd_weights)
#undef CONVFORGE_ADD
  return out;
}

}  // namespace convforge
