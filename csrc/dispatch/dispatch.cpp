#include "dispatch/dispatch.h"

#include <algorithm>

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

// The first entry the CPU may run that applies to `s` (the last, portable one always does).
template <class Fn, std::size_t N>
const Kernel<Fn>& best_for(const Kernel<Fn> (&table)[N], const PoolShape& s) {
  const Isa active = active_isa();
  for (const Kernel<Fn>& k : table) {
    if (static_cast<int>(k.isa) <= static_cast<int>(active) && (k.applies == nullptr || k.applies(s))) return k;
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

const Kernel<Conv2dAlgosFn<float>> kConv2dF32[] = {CONVFORGE_AVX512_ENTRY(conv2d_algorithms)
                                                       CONVFORGE_AVX2_ENTRY(conv2d_algorithms)
                                                           {"conv2d_algorithms__ref", Isa::ref, &conv2d_algorithms__ref<float>}};
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
const Kernel<GeluFwdFn<float>> kGeluFwdF32[] = {
    CONVFORGE_AVX512_ENTRY(gelu_fwd) CONVFORGE_AVX2_ENTRY(gelu_fwd) CONVFORGE_REF_ENTRY(gelu_fwd)};
const Kernel<GeluBwdFn<float>> kGeluBwdF32[] = {
    CONVFORGE_AVX512_ENTRY(gelu_bwd) CONVFORGE_AVX2_ENTRY(gelu_bwd) CONVFORGE_REF_ENTRY(gelu_bwd)};

// float64 is for gradient checks: the reference kernels only.
const Kernel<Conv2dAlgosFn<double>> kConv2dF64[] = {{"conv2d_algorithms__ref", Isa::ref, &conv2d_algorithms__ref<double>}};
const Kernel<DenseFwdFn<double>> kDenseFwdF64[] = {CONVFORGE_REF_ENTRY(dense_fwd)};
const Kernel<DenseBwdDataFn<double>> kDenseBwdDataF64[] = {CONVFORGE_REF_ENTRY(dense_bwd_data)};
const Kernel<DenseBwdWeightsFn<double>> kDenseBwdWeightsF64[] = {CONVFORGE_REF_ENTRY(dense_bwd_weights)};
const Kernel<ReluFwdFn<double>> kReluFwdF64[] = {CONVFORGE_REF_ENTRY(relu_fwd)};
const Kernel<ReluBwdFn<double>> kReluBwdF64[] = {CONVFORGE_REF_ENTRY(relu_bwd)};
const Kernel<GeluFwdFn<double>> kGeluFwdF64[] = {CONVFORGE_REF_ENTRY(gelu_fwd)};
const Kernel<GeluBwdFn<double>> kGeluBwdF64[] = {CONVFORGE_REF_ENTRY(gelu_bwd)};

// The SIMD forward kernels take 2x2 windows of stride 2 only; everything else runs the ref.
const Kernel<MaxPoolFwdFn<float>> kMaxPoolFwdF32[] = {
#if CONVFORGE_HAVE_AVX512
    {"maxpool2d_fwd__avx512", Isa::avx512, &maxpool2d_fwd__avx512, &maxpool2d_2x2_s2_applies},
#endif
#if CONVFORGE_HAVE_AVX2
    {"maxpool2d_fwd__avx2", Isa::avx2, &maxpool2d_fwd__avx2, &maxpool2d_2x2_s2_applies},
#endif
    {"maxpool2d_fwd__ref", Isa::ref, &maxpool2d_fwd__ref<float>}};
const Kernel<MaxPoolBwdFn<float>> kMaxPoolBwdF32[] = {{"maxpool2d_bwd__ref", Isa::ref, &maxpool2d_bwd__ref<float>}};
const Kernel<MaxPoolFwdFn<double>> kMaxPoolFwdF64[] = {{"maxpool2d_fwd__ref", Isa::ref, &maxpool2d_fwd__ref<double>}};
const Kernel<MaxPoolBwdFn<double>> kMaxPoolBwdF64[] = {{"maxpool2d_bwd__ref", Isa::ref, &maxpool2d_bwd__ref<double>}};

const Kernel<SoftmaxFwdFn<float>> kSoftmaxFwdF32[] = {{"softmax_fwd__ref", Isa::ref, &softmax_fwd__ref<float>}};
const Kernel<SoftmaxFwdFn<double>> kSoftmaxFwdF64[] = {{"softmax_fwd__ref", Isa::ref, &softmax_fwd__ref<double>}};

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
CONVFORGE_TABLES(depthwise_conv2d_fwd, DepthwiseFwdFn)
CONVFORGE_TABLES(depthwise_conv2d_bwd_data, DepthwiseBwdDataFn)
CONVFORGE_TABLES(depthwise_conv2d_bwd_weights, DepthwiseBwdWeightsFn)
#undef CONVFORGE_TABLES
const Kernel<GlobalMaxPoolFwdFn<float>> k_global_max_pool2d_fwd_f32[] = {
    CONVFORGE_AVX512_ENTRY(global_max_pool2d_fwd) CONVFORGE_AVX2_ENTRY(global_max_pool2d_fwd)
    {"global_max_pool2d_fwd__ref", Isa::ref, &global_max_pool2d_fwd__ref<float>}};
const Kernel<GlobalMaxPoolFwdFn<double>> k_global_max_pool2d_fwd_f64[] = {
    {"global_max_pool2d_fwd__ref", Isa::ref, &global_max_pool2d_fwd__ref<double>}};
const Kernel<GlobalMaxPoolBwdFn<float>> k_global_max_pool2d_bwd_f32[] = {
    {"global_max_pool2d_bwd__ref", Isa::ref, &global_max_pool2d_bwd__ref<float>}};
const Kernel<GlobalMaxPoolBwdFn<double>> k_global_max_pool2d_bwd_f64[] = {
    {"global_max_pool2d_bwd__ref", Isa::ref, &global_max_pool2d_bwd__ref<double>}};

const Kernel<DigestFn> kDigest[] = {
    CONVFORGE_AVX512_ENTRY(digest) CONVFORGE_AVX2_ENTRY(digest) CONVFORGE_REF_ENTRY(digest)};

}  // namespace

const Kernel<DigestFn>& digest_kernel() { return best(kDigest); }

#define CONVFORGE_SELECTOR(getter, Fn, table_f32, table_f64)                \
  template <> const Kernel<Fn<float>>& getter<float>() { return best(table_f32); }  \
  template <> const Kernel<Fn<double>>& getter<double>() { return best(table_f64); }
CONVFORGE_SELECTOR(conv2d_kernel, Conv2dAlgosFn, kConv2dF32, kConv2dF64)
CONVFORGE_SELECTOR(dense_fwd_kernel, DenseFwdFn, kDenseFwdF32, kDenseFwdF64)
CONVFORGE_SELECTOR(dense_bwd_data_kernel, DenseBwdDataFn, kDenseBwdDataF32, kDenseBwdDataF64)
CONVFORGE_SELECTOR(dense_bwd_weights_kernel, DenseBwdWeightsFn, kDenseBwdWeightsF32, kDenseBwdWeightsF64)
template <>
const Kernel<MaxPoolFwdFn<float>>& maxpool2d_fwd_kernel<float>(const PoolShape& s) {
  return best_for(kMaxPoolFwdF32, s);
}
template <>
const Kernel<MaxPoolFwdFn<double>>& maxpool2d_fwd_kernel<double>(const PoolShape& s) {
  return best_for(kMaxPoolFwdF64, s);
}
CONVFORGE_SELECTOR(maxpool2d_bwd_kernel, MaxPoolBwdFn, kMaxPoolBwdF32, kMaxPoolBwdF64)
CONVFORGE_SELECTOR(relu_fwd_kernel, ReluFwdFn, kReluFwdF32, kReluFwdF64)
CONVFORGE_SELECTOR(gelu_fwd_kernel, GeluFwdFn, kGeluFwdF32, kGeluFwdF64)
CONVFORGE_SELECTOR(gelu_bwd_kernel, GeluBwdFn, kGeluBwdF32, kGeluBwdF64)
CONVFORGE_SELECTOR(relu_bwd_kernel, ReluBwdFn, kReluBwdF32, kReluBwdF64)
CONVFORGE_SELECTOR(softmax_fwd_kernel, SoftmaxFwdFn, kSoftmaxFwdF32, kSoftmaxFwdF64)
#define CONVFORGE_CHANNEL_SELECTOR(fn, Fn) CONVFORGE_SELECTOR(fn##_kernel, Fn, k_##fn##_f32, k_##fn##_f64)
CONVFORGE_CHANNEL_SELECTOR(batchnorm_fwd_training, BatchNormFwdTrainingFn)
CONVFORGE_CHANNEL_SELECTOR(batchnorm_fwd_inference, BatchNormFwdInferenceFn)
CONVFORGE_CHANNEL_SELECTOR(batchnorm_bwd, BatchNormBwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_avg_pool2d_fwd, GlobalAvgPoolFwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_avg_pool2d_bwd, GlobalAvgPoolBwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_max_pool2d_fwd, GlobalMaxPoolFwdFn)
CONVFORGE_CHANNEL_SELECTOR(global_max_pool2d_bwd, GlobalMaxPoolBwdFn)
CONVFORGE_CHANNEL_SELECTOR(depthwise_conv2d_fwd, DepthwiseFwdFn)
CONVFORGE_CHANNEL_SELECTOR(depthwise_conv2d_bwd_data, DepthwiseBwdDataFn)
CONVFORGE_CHANNEL_SELECTOR(depthwise_conv2d_bwd_weights, DepthwiseBwdWeightsFn)
#undef CONVFORGE_CHANNEL_SELECTOR

const char* conv_pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::fwd: return "fwd";
    case ConvPass::bwd_data: return "bwd_data";
    default: return "bwd_weights";
  }
}

template <class T>
const ConvAlgo<T>* choose_conv2d_algorithm(ConvPass pass, const ConvShape& plan, const ConvTensors<T>& t,
                                           const char* forced, std::string* error) {
  const Kernel<Conv2dAlgosFn<T>>& k = conv2d_kernel<T>();
  const ConvAlgoList<T> list = k.fn(pass);
  if (forced == nullptr || *forced == '\0') {
    for (int i = 0; i < list.count; ++i) {
      const ConvAlgo<T>& a = list.algos[i];
      if (a.applies(plan, t) && (a.pays == nullptr || a.pays(plan, t))) return &a;
    }
    return &list.algos[list.count - 1];  // unreachable: the last entry applies to every problem
  }
  std::string names;
  for (int i = 0; i < list.count; ++i) {
    const ConvAlgo<T>& a = list.algos[i];
    if (std::string(a.name) == forced) {
      if (a.applies(plan, t)) return &a;
      const std::vector<std::string> ok = applicable_conv2d_algorithms(pass, plan, t);
      std::string ok_names;
      for (const std::string& n : ok) ok_names += (ok_names.empty() ? "" : ", ") + n;
      *error = std::string("conv2d ") + conv_pass_name(pass) + " algorithm '" + forced +
               "' does not apply to this problem (stride, padding, kernel size, channel count or non-finite "
               "data); these do: " + ok_names;
      return nullptr;
    }
    names += (names.empty() ? "" : ", ") + std::string(a.name);
  }
  *error = std::string("conv2d ") + conv_pass_name(pass) + " has no algorithm '" + forced + "' on " +
           isa_name(k.isa) + " (" + (sizeof(T) == 4 ? "float32" : "float64") + "); it has: " + names;
  return nullptr;
}

template <class T>
std::vector<std::string> applicable_conv2d_algorithms(ConvPass pass, const ConvShape& plan, const ConvTensors<T>& t) {
  const ConvAlgoList<T> list = conv2d_kernel<T>().fn(pass);
  std::vector<std::string> preferred, others;
  for (int i = 0; i < list.count; ++i) {
    const ConvAlgo<T>& a = list.algos[i];
    if (!a.applies(plan, t)) continue;
    ((a.pays == nullptr || a.pays(plan, t)) ? preferred : others).push_back(a.name);
  }
  preferred.insert(preferred.end(), others.begin(), others.end());
  return preferred;
}

template const ConvAlgo<float>* choose_conv2d_algorithm(ConvPass, const ConvShape&, const ConvTensors<float>&,
                                                        const char*, std::string*);
template const ConvAlgo<double>* choose_conv2d_algorithm(ConvPass, const ConvShape&, const ConvTensors<double>&,
                                                         const char*, std::string*);
template std::vector<std::string> applicable_conv2d_algorithms(ConvPass, const ConvShape&, const ConvTensors<float>&);
template std::vector<std::string> applicable_conv2d_algorithms(ConvPass, const ConvShape&, const ConvTensors<double>&);

namespace {
template <class T, std::size_t N>
int64_t prepared_capacity(const Kernel<Conv2dAlgosFn<T>> (&kernels)[N], const ConvShape& plan) {
  int64_t most = 0;
  for (const Kernel<Conv2dAlgosFn<T>>& k : kernels) {
    const ConvAlgoList<T> list = k.fn(ConvPass::fwd);
    for (int i = 0; i < list.count; ++i)
      if (list.algos[i].prepared_size != nullptr) most = std::max(most, list.algos[i].prepared_size(plan));
  }
  return most;
}
}  // namespace

template <>
int64_t conv2d_prepared_capacity<float>(const ConvShape& plan) {
  return prepared_capacity(kConv2dF32, plan);
}
// float64 takes no transformed-weight form by default (Winograd is float32's): nothing kept.
template <>
int64_t conv2d_prepared_capacity<double>(const ConvShape&) {
  return 0;
}

std::vector<ConvAlgoNames> compiled_conv2d_algorithms() {
  std::vector<ConvAlgoNames> out;
  for (const Kernel<Conv2dAlgosFn<float>>& k : kConv2dF32) {
    for (ConvPass pass : {ConvPass::fwd, ConvPass::bwd_data, ConvPass::bwd_weights}) {
      ConvAlgoNames entry{isa_name(k.isa), conv_pass_name(pass), {}};
      const ConvAlgoList<float> list = k.fn(pass);
      for (int i = 0; i < list.count; ++i) entry.names.push_back(list.algos[i].name);
      out.push_back(entry);
    }
  }
  return out;
}

std::vector<KernelChoice> selected_kernels() {
  std::vector<KernelChoice> out;
  auto add = [&](const char* op, const char* f32, const char* f64) {
    out.push_back({op, "float32", f32});
    out.push_back({op, "float64", f64});
  };
  // conv2d: the ISA whose algorithm lists run (conv2d_algorithms() says which algorithm).
  for (const char* op : {"conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weights"}) {
    out.push_back({op, "float32", std::string(op) + "__" + isa_name(conv2d_kernel<float>().isa)});
    out.push_back({op, "float64", std::string(op) + "__" + isa_name(conv2d_kernel<double>().isa)});
  }
  add("dense_fwd", dense_fwd_kernel<float>().name, dense_fwd_kernel<double>().name);
  add("dense_bwd_data", dense_bwd_data_kernel<float>().name, dense_bwd_data_kernel<double>().name);
  add("dense_bwd_weights", dense_bwd_weights_kernel<float>().name, dense_bwd_weights_kernel<double>().name);
  // max-pool: the kernel for 2x2 windows of stride 2 (other geometries run the ref).
  PoolShape p;
  p.kh = p.kw = p.sh = p.sw = 2, p.ih = p.iw = 2, p.oh = p.ow = 1;
  add("maxpool2d_fwd", maxpool2d_fwd_kernel<float>(p).name, maxpool2d_fwd_kernel<double>(p).name);
  add("maxpool2d_bwd", maxpool2d_bwd_kernel<float>().name, maxpool2d_bwd_kernel<double>().name);
  add("relu_fwd", relu_fwd_kernel<float>().name, relu_fwd_kernel<double>().name);
  add("relu_bwd", relu_bwd_kernel<float>().name, relu_bwd_kernel<double>().name);
  add("softmax_fwd", softmax_fwd_kernel<float>().name, softmax_fwd_kernel<double>().name);
  add("gelu_fwd", gelu_fwd_kernel<float>().name, gelu_fwd_kernel<double>().name);
  add("gelu_bwd", gelu_bwd_kernel<float>().name, gelu_bwd_kernel<double>().name);
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
