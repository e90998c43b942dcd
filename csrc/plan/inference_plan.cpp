#include "plan/inference_plan.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <stdexcept>
#include <type_traits>

#include "common/parallel.h"
#include "dispatch/dispatch.h"
#include "kernels/channel_ops.h"

namespace convforge {
namespace {

constexpr int64_t kAlign = 16;  // elements: every slot starts on a cache line (64 bytes of float, 128 of double)

int64_t round_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The most room a team's run gives its values in places of their own (own_places, run_ops),
// about a core's L2 with room to spare: above it, the values share slots.
constexpr int64_t kOwnPlacesBytes = int64_t{1} << 20;

// Values a digest covers (kept_blocks_): the pieces a thread team shares, small enough that two
// threads end within a piece of each other (16 KiB of floats: ~0.5 us of digest on one core).
constexpr int64_t kKeptBlockValues = 4096;

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("inference plan: " + what); }

int64_t product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 1) fail("dimensions must be positive, got " + dims_text(dims));
    if (__builtin_mul_overflow(n, d, &n)) fail("a value of " + dims_text(dims) + " is too large");
  }
  return n;
}

const char* kind_name(PlanOpKind k) {
  switch (k) {
    case PlanOpKind::conv2d: return "conv2d";
    case PlanOpKind::dense: return "dense";
    case PlanOpKind::maxpool2d: return "maxpool2d";
    case PlanOpKind::relu: return "relu";
    case PlanOpKind::batchnorm: return "batchnorm";
    case PlanOpKind::global_avg_pool: return "global_avg_pool";
    case PlanOpKind::global_max_pool: return "global_max_pool";
    case PlanOpKind::add: return "add";
    case PlanOpKind::subtract: return "subtract";
    case PlanOpKind::multiply: return "multiply";
    case PlanOpKind::average: return "average";
    case PlanOpKind::concat: return "concat";
    case PlanOpKind::softmax: return "softmax";
    case PlanOpKind::copy: return "copy";
    case PlanOpKind::rescale: return "rescale";
    case PlanOpKind::depthwise: return "depthwise";
    case PlanOpKind::window: return "window";
    case PlanOpKind::upsample: return "upsample";
    case PlanOpKind::avgpool: return "avgpool";
    case PlanOpKind::reorder: return "reorder";
    case PlanOpKind::conv_transpose: return "conv_transpose";
    case PlanOpKind::leaky_relu: return "leaky_relu";
    case PlanOpKind::clip_max: return "clip_max";
    case PlanOpKind::gelu: return "gelu";
  }
  return "?";
}

// Threads for an elementwise pass over n elements of T: bandwidth-bound, worth it from 256 KiB.
template <class T>
int elementwise_threads(int64_t n, int inputs) {
  return bandwidth_threads(n, static_cast<double>(n) * sizeof(T) * (inputs + 1));
}

// The first sample of chunk c of `chunks` over mb samples (chunk_sizes).
int64_t chunk_first(int64_t c, int64_t chunks, int64_t mb) {
  return static_cast<int64_t>(static_cast<__int128>(c) * mb / chunks);
}

constexpr int64_t kGrain = 16 * 1024;  // elements per work item of an elementwise pass

// The folded conv's weights and bias: w * scale and the BatchNormalization's shift, where
// scale = gamma / sqrt(var + eps) and shift = beta - mean * scale (+ bias * scale), the scale
// and shift in float64 as the layer computes them, the weights scaled in T (one rounding of
// the product: the whole fold is a pass over the weights, not over the feature maps).
template <class T>
void fold_batchnorm(const ConvShape& s, const T* w, const T* b, const PlanBatchNorm<T>& bn, T* wf, T* bf) {
  const int64_t per_oc = s.ic * s.kh * s.kw;
  for (int64_t o = 0; o < s.oc; ++o) {
    double scale = 1.0 / std::sqrt(static_cast<double>(bn.var[o]) + bn.eps);
    if (bn.gamma) scale = scale * static_cast<double>(bn.gamma[o]);
    double shift = static_cast<double>(-bn.mean[o]) * scale;
    if (bn.beta) shift = shift + static_cast<double>(bn.beta[o]);
    if (b) shift = shift + static_cast<double>(b[o]) * scale;
    const T sc = static_cast<T>(scale);
    const T* src = w + o * per_oc;
    T* dst = wf + o * per_oc;
    for (int64_t i = 0; i < per_oc; ++i) dst[i] = src[i] * sc;
    bf[o] = static_cast<T>(shift);
  }
}

}  // namespace

// ------------------------------------------------------------------------------ building

template <class T>
void InferencePlan<T>::check_open() const {
  if (finished_) fail("no op can be added after finish()");
}

template <class T>
void InferencePlan<T>::check_value(int v, const char* what) const {
  if (v < 0 || v >= static_cast<int>(values_.size()))
    fail(std::string(what) + " is value " + std::to_string(v) + ", which the plan does not have");
}

template <class T>
int InferencePlan<T>::add_value(std::vector<int64_t> dims, int producer) {
  Value v;
  v.size = product(dims);
  v.dims = std::move(dims);
  v.producer = producer;
  values_.push_back(std::move(v));
  return static_cast<int>(values_.size()) - 1;
}

template <class T>
int InferencePlan<T>::append(Op op, std::vector<int64_t> out_dims) {
  const int index = static_cast<int>(ops_.size());
  for (int v : op.in) values_[v].last_read = std::max(values_[v].last_read, index);
  op.out = add_value(std::move(out_dims), index);
  ops_.push_back(std::move(op));
  return ops_.back().out;
}

template <class T>
const std::vector<int64_t>& InferencePlan<T>::dims(int value) const {
  check_value(value, "dims()");
  return values_[value].dims;
}

template <class T>
int64_t InferencePlan<T>::sample_size(int value) const {
  check_value(value, "sample_size()");
  return values_[value].size;
}

template <class T>
int InferencePlan<T>::input(const std::vector<int64_t>& dims) {
  check_open();
  if (dims.empty()) fail("an input needs at least one dimension per sample");
  const int v = add_value(dims, -1);
  values_[v].input = static_cast<int>(inputs_.size());
  inputs_.push_back(v);
  return v;
}

template <class T>
int InferencePlan<T>::conv2d(int x, ConvShape s, const T* w, const T* b, const PlanBatchNorm<T>* bn, bool relu) {
  check_open();
  check_value(x, "conv2d's input");
  const std::vector<int64_t>& d = values_[x].dims;
  if (d.size() != 3 || d[0] != s.ic || d[1] != s.ih || d[2] != s.iw)
    fail("conv2d expects input " + dims_text({s.ic, s.ih, s.iw}) + " per sample, got " + dims_text(d));
  if (w == nullptr) fail("conv2d needs weights");
  if (bn && (bn->mean == nullptr || bn->var == nullptr)) fail("a folded batch norm needs its moving mean and variance");
  s.mb = 1;
  s.relu = false;  // applied by the op (after the fold's bias)
  const std::string err = complete_conv_shape(s);
  if (!err.empty()) fail(err);
  Op op;
  op.kind = PlanOpKind::conv2d;
  op.in = {x};
  op.conv = s;
  op.w = w, op.b = b, op.relu = relu;
  if (bn) op.bn = *bn, op.fold = true;
  // Prepared weights (Winograd's 36 x IC x OC) are kept up to 8 MiB a conv: a larger layer's
  // per-image work dwarfs their transform, and a VGG's would hold hundreds of MiB.
  constexpr int64_t kMaxPreparedBytes = int64_t{8} << 20;
  const int64_t prepared = conv2d_prepared_capacity<T>(s);
  if (prepared * static_cast<int64_t>(sizeof(T)) <= kMaxPreparedBytes) op.prepared_capacity = prepared;
  op.keep = op.fold || op.prepared_capacity > 0;
  if (op.keep) {
    op.fold_offset = kept_elements_;
    if (op.fold) kept_elements_ += round_up(s.wei_size()) + round_up(s.oc);
    op.prepared_offset = kept_elements_;
    kept_elements_ += round_up(op.prepared_capacity);
  }
  return append(std::move(op), {s.oc, s.oh, s.ow});
}

template <class T>
int InferencePlan<T>::dense(int x, int64_t units, const T* w, const T* b, bool relu) {
  check_open();
  check_value(x, "dense's input");
  if (values_[x].dims.size() != 1) fail("dense expects (features,) per sample, got " + dims_text(values_[x].dims));
  if (w == nullptr) fail("dense needs weights");
  DenseShape shape{1, values_[x].dims[0], units};
  const std::string err = check_dense_shape(shape);
  if (!err.empty()) fail(err);
  Op op;
  op.kind = PlanOpKind::dense;
  op.in = {x};
  op.units = units, op.w = w, op.b = b, op.relu = relu;
  return append(std::move(op), {units});
}

template <class T>
int InferencePlan<T>::maxpool2d(int x, PoolShape s) {
  check_open();
  check_value(x, "maxpool2d's input");
  const std::vector<int64_t>& d = values_[x].dims;
  if (d.size() != 3 || d[0] != s.c || d[1] != s.ih || d[2] != s.iw)
    fail("maxpool2d expects input " + dims_text({s.c, s.ih, s.iw}) + " per sample, got " + dims_text(d));
  s.mb = 1;
  const std::string err = check_pool_shape(s);
  if (!err.empty()) fail(err);
  Op op;
  op.kind = PlanOpKind::maxpool2d;
  op.in = {x};
  op.pool = s;
  return append(std::move(op), {s.c, s.oh, s.ow});
}

template <class T>
int InferencePlan<T>::relu(int x) {
  check_open();
  check_value(x, "relu's input");
  Op op;
  op.kind = PlanOpKind::relu;
  op.in = {x};
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::softmax(int x) {
  check_open();
  check_value(x, "softmax's input");
  if (values_[x].dims.size() != 1) fail("softmax expects (n,) per sample, got " + dims_text(values_[x].dims));
  Op op;
  op.kind = PlanOpKind::softmax;
  op.in = {x};
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::batchnorm(int x, const PlanBatchNorm<T>& bn) {
  check_open();
  check_value(x, "batchnorm's input");
  if (bn.mean == nullptr || bn.var == nullptr) fail("batchnorm needs its moving mean and variance");
  Op op;
  op.kind = PlanOpKind::batchnorm;
  op.in = {x};
  op.bn = bn;
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::global_pool(int x, bool max, const std::vector<int64_t>& out_dims) {
  check_open();
  check_value(x, "global pooling's input");
  const std::vector<int64_t>& d = values_[x].dims;
  if (d.size() != 3) fail("global pooling expects (C, H, W) per sample, got " + dims_text(d));
  const bool flat = out_dims.size() == 1 && out_dims[0] == d[0];
  const bool kept = out_dims.size() == 3 && out_dims[0] == d[0] && out_dims[1] == 1 && out_dims[2] == 1;
  if (!flat && !kept) fail("global pooling of " + dims_text(d) + " gives (C,) or (C, 1, 1), not " + dims_text(out_dims));
  Op op;
  op.kind = max ? PlanOpKind::global_max_pool : PlanOpKind::global_avg_pool;
  op.in = {x};
  return append(std::move(op), out_dims);
}

template <class T>
int InferencePlan<T>::elementwise(PlanOpKind kind, const std::vector<int>& xs) {
  check_open();
  if (kind != PlanOpKind::add && kind != PlanOpKind::subtract && kind != PlanOpKind::multiply &&
      kind != PlanOpKind::average)
    fail(std::string(kind_name(kind)) + " is not an elementwise op");
  if (xs.empty()) fail(std::string(kind_name(kind)) + " needs at least one input");
  if (kind == PlanOpKind::subtract && xs.size() != 2) fail("subtract takes exactly two inputs");
  for (int v : xs) {
    check_value(v, "an elementwise op's input");
    if (values_[v].dims != values_[xs[0]].dims)
      fail(std::string(kind_name(kind)) + " needs equal shapes, got " + dims_text(values_[xs[0]].dims) + " and " +
           dims_text(values_[v].dims));
  }
  Op op;
  op.kind = kind;
  op.in = xs;
  return append(std::move(op), values_[xs[0]].dims);
}

template <class T>
int InferencePlan<T>::concat(const std::vector<int>& xs) {
  check_open();
  if (xs.empty()) fail("concat needs at least one input");
  int64_t channels = 0;
  for (int v : xs) {
    check_value(v, "concat's input");
    const std::vector<int64_t>& d = values_[v].dims, &first = values_[xs[0]].dims;
    if (d.size() != first.size() || !std::equal(d.begin() + 1, d.end(), first.begin() + 1))
      fail("concat along the channels needs equal other dimensions, got " + dims_text(first) + " and " + dims_text(d));
    if (__builtin_add_overflow(channels, d[0], &channels)) fail("concat: too many channels");
  }
  std::vector<int64_t> out_dims = values_[xs[0]].dims;
  out_dims[0] = channels;
  Op op;
  op.kind = PlanOpKind::concat;
  op.in = xs;
  return append(std::move(op), out_dims);
}

template <class T>
int InferencePlan<T>::reshape(int x, const std::vector<int64_t>& dims) {
  check_open();
  check_value(x, "reshape's input");
  if (dims.empty() || product(dims) != values_[x].size)
    fail("reshape of " + dims_text(values_[x].dims) + " to " + dims_text(dims) + " changes the number of values");
  Op op;
  op.kind = PlanOpKind::copy;
  op.in = {x};
  return append(std::move(op), dims);
}

template <class T>
int InferencePlan<T>::rescale(int x, double scale, double offset) {
  check_open();
  check_value(x, "rescale's input");
  if (!std::isfinite(scale) || !std::isfinite(offset)) fail("rescale needs a finite scale and offset");
  Op op;
  op.kind = PlanOpKind::rescale;
  op.in = {x};
  op.scale = scale, op.offset = offset;
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::leaky_relu(int x, double slope) {
  check_open();
  check_value(x, "leaky_relu's input");
  if (!(std::isfinite(slope) && slope >= 0.0)) fail("leaky_relu needs a finite slope >= 0");
  Op op;
  op.kind = PlanOpKind::leaky_relu;
  op.in = {x};
  op.scale = slope;
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::clip_max(int x, double max_value) {
  check_open();
  check_value(x, "clip_max's input");
  if (!std::isfinite(max_value)) fail("clip_max needs a finite max_value");
  Op op;
  op.kind = PlanOpKind::clip_max;
  op.in = {x};
  op.scale = max_value;
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::gelu(int x) {
  check_open();
  check_value(x, "gelu's input");
  Op op;
  op.kind = PlanOpKind::gelu;
  op.in = {x};
  return append(std::move(op), values_[x].dims);
}

template <class T>
int InferencePlan<T>::depthwise(int x, ConvShape s, const T* w, const T* b) {
  check_open();
  check_value(x, "depthwise's input");
  const std::vector<int64_t>& d = values_[x].dims;
  if (d.size() != 3 || d[0] != s.ic || d[1] != s.ih || d[2] != s.iw)
    fail("depthwise expects input " + dims_text({s.ic, s.ih, s.iw}) + " per sample, got " + dims_text(d));
  if (w == nullptr) fail("depthwise needs weights");
  if (s.ic < 1 || s.oc < s.ic || s.oc % s.ic != 0) fail("depthwise needs a whole number of filters per channel");
  s.mb = 1;
  s.relu = false;
  const std::string err = complete_conv_shape(s);
  if (!err.empty()) fail(err);
  Op op;
  op.kind = PlanOpKind::depthwise;
  op.in = {x};
  op.conv = s;
  op.w = w, op.b = b;
  return append(std::move(op), {s.oc, s.oh, s.ow});
}

template <class T>
int InferencePlan<T>::window(int x, int64_t top, int64_t bottom, int64_t left, int64_t right) {
  check_open();
  check_value(x, "window's input");
  const std::vector<int64_t> d = values_[x].dims;
  if (d.size() != 3) fail("window expects (C, H, W) per sample, got " + dims_text(d));
  const int64_t limit = int64_t{1} << 30;
  for (int64_t m : {top, bottom, left, right})
    if (m < -limit || m > limit) fail("window margins must be within 2^30");
  const int64_t h = d[1] + top + bottom, w = d[2] + left + right;
  if (h < 1 || w < 1) fail("window leaves nothing of " + dims_text(d));
  Op op;
  op.kind = PlanOpKind::window;
  op.in = {x};
  op.top = top, op.left = left;
  return append(std::move(op), {d[0], h, w});
}

template <class T>
int InferencePlan<T>::upsample(int x, int64_t factor_h, int64_t factor_w) {
  check_open();
  check_value(x, "upsample's input");
  const std::vector<int64_t> d = values_[x].dims;
  if (d.size() != 3) fail("upsample expects (C, H, W) per sample, got " + dims_text(d));
  if (factor_h < 1 || factor_w < 1 || factor_h > (int64_t{1} << 20) || factor_w > (int64_t{1} << 20))
    fail("upsample factors must be in [1, 2^20]");
  int64_t h = 0, w = 0, size = 0;
  if (__builtin_mul_overflow(d[1], factor_h, &h) || __builtin_mul_overflow(d[2], factor_w, &w) ||
      __builtin_mul_overflow(h, w, &size) || __builtin_mul_overflow(size, d[0], &size))
    fail("upsample of " + dims_text(d) + " is too large");
  Op op;
  op.kind = PlanOpKind::upsample;
  op.in = {x};
  op.factor_h = factor_h, op.factor_w = factor_w;
  return append(std::move(op), {d[0], h, w});
}

template <class T>
int InferencePlan<T>::conv_transpose(int x, ConvShape s, const T* w, const T* b) {
  check_open();
  check_value(x, "conv_transpose's input");
  if (w == nullptr) fail("conv_transpose needs weights");
  s.mb = 1;
  s.relu = false;
  const std::string err = complete_conv_shape(s);
  if (!err.empty()) fail(err);
  const std::vector<int64_t> d = values_[x].dims;
  if (d.size() != 3 || d[0] != s.oc || d[1] != s.oh || d[2] != s.ow)
    fail("conv_transpose expects input " + dims_text({s.oc, s.oh, s.ow}) + " per sample, got " + dims_text(d));
  Op op;
  op.kind = PlanOpKind::conv_transpose;
  op.in = {x};
  op.conv = s;
  op.w = w, op.b = b;
  return append(std::move(op), {s.ic, s.ih, s.iw});
}

template <class T>
int InferencePlan<T>::reorder(int x, const std::vector<int64_t>& dims) {
  check_open();
  check_value(x, "reorder's input");
  if (dims.empty() || product(dims) != values_[x].size)
    fail("reorder of " + dims_text(values_[x].dims) + " to " + dims_text(dims) + " changes the number of values");
  Op op;
  op.kind = PlanOpKind::reorder;
  op.in = {x};
  return append(std::move(op), dims);
}

template <class T>
int InferencePlan<T>::avgpool(int x, PoolShape s, std::vector<T> inv) {
  check_open();
  check_value(x, "avgpool's input");
  const std::vector<int64_t> d = values_[x].dims;
  if (d.size() != 3 || d[0] != s.c || d[1] != s.ih || d[2] != s.iw)
    fail("avgpool expects input " + dims_text({s.c, s.ih, s.iw}) + " per sample, got " + dims_text(d));
  if (s.kh < 1 || s.kw < 1 || s.sh < 1 || s.sw < 1 || s.oh < 1 || s.ow < 1 || s.ph < 0 || s.pw < 0 ||
      s.ph >= s.kh || s.pw >= s.kw)
    fail("avgpool needs a positive window, strides and output, and padding smaller than the window");
  // Every window must start inside the input or its top/left padding and end before the
  // padding's far side (at most a window beyond the input): AveragePooling2D's plans do.
  constexpr int64_t kLimit = int64_t{1} << 20;  // checked first: no product below overflows
  if (s.kh > kLimit || s.kw > kLimit || s.sh > kLimit || s.sw > kLimit || s.oh > kLimit || s.ow > kLimit ||
      (s.oh - 1) * s.sh > s.ih - 1 + s.ph || (s.ow - 1) * s.sw > s.iw - 1 + s.pw)
    fail("avgpool's windows do not fit its input " + dims_text(d));
  if (static_cast<int64_t>(inv.size()) != s.oh * s.ow) fail("avgpool needs one factor per output position");
  s.mb = 1;
  Op op;
  op.kind = PlanOpKind::avgpool;
  op.in = {x};
  op.pool = s;
  op.avg_inv = std::move(inv);
  return append(std::move(op), {s.c, s.oh, s.ow});
}

namespace {

// functional.depthwise_conv2d's _depthwise_padding_products: the depthwise kernels skip the
// padded taps, but 0 * inf and 0 * NaN are NaN, which conv2d and the oracle keep. NaN where a
// non-finite weight's tap reads padding; a pass over the (small) weights when all are finite.
template <class T>
void depthwise_padding_products(const ConvShape& s, const T* w, T* y) {
  if (s.pt == 0 && s.pb == 0 && s.pl == 0 && s.pr == 0) return;
  for (int64_t k = 0; k < s.oc; ++k)
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t c = 0; c < s.kw; ++c) {
        if (std::isfinite(w[(k * s.kh + r) * s.kw + c])) continue;
        for (int64_t oh = 0; oh < s.oh; ++oh) {
          const int64_t ih = oh * s.sh + r * s.dh - s.pt;
          for (int64_t ow = 0; ow < s.ow; ++ow) {
            const int64_t iw = ow * s.sw + c * s.dw - s.pl;
            if (ih >= 0 && ih < s.ih && iw >= 0 && iw < s.iw) continue;
            for (int64_t n = 0; n < s.mb; ++n) y[((n * s.oc + k) * s.oh + oh) * s.ow + ow] = std::numeric_limits<T>::quiet_NaN();
          }
        }
      }
}

}  // namespace

// A residual block's y = relu(conv(x) + shortcut), written as conv2d -> add -> relu, becomes one
// conv2d op that adds the shortcut and applies the ReLU in its epilogue (ConvTensors::residual):
// two passes over the feature maps fewer (the example ResNet's Add and ReLU ops were ~6% of a
// 64-image plan, 4-6% of a one-image one), and on several threads each output is finished by
// the thread that computed it. Taken where the Add has two
// inputs, one of them a conv2d's output that nothing else reads and that is not returned, made
// after the other input (which must exist when the conv runs), and the conv has no ReLU of
// its own; the ReLU too where it is the Add's only reader and the Add's output is not returned.
// The sums are the Add's: (conv + bias) + shortcut in T, the same bits (addition commutes).
template <class T>
void InferencePlan<T>::fuse_residual_adds() {
  std::vector<int> readers(values_.size(), 0);
  for (const Op& op : ops_)
    for (std::size_t k = 0; k < op.in.size(); ++k)
      if (std::find(op.in.begin(), op.in.begin() + static_cast<std::ptrdiff_t>(k), op.in[k]) ==
          op.in.begin() + static_cast<std::ptrdiff_t>(k))
        ++readers[op.in[k]];  // an op reading a value twice counts once
  std::vector<bool> dropped(ops_.size(), false);
  bool any = false;
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const Op& add = ops_[i];
    if (add.kind != PlanOpKind::add || add.in.size() != 2 || add.in[0] == add.in[1]) continue;
    for (int k = 0; k < 2; ++k) {
      const int v = add.in[k], shortcut = add.in[1 - k];
      const int producer = values_[v].producer;
      if (producer < 0 || ops_[producer].kind != PlanOpKind::conv2d || ops_[producer].relu ||
          ops_[producer].residual || values_[v].output >= 0 || readers[v] != 1 ||
          values_[shortcut].producer >= producer || values_[shortcut].size != values_[v].size)
        continue;
      Op& conv = ops_[producer];
      conv.residual = true;
      conv.in.push_back(shortcut);
      conv.out = add.out;
      values_[conv.out].producer = producer;  // for the Adds after this one (redone below)
      dropped[i] = true;
      const int sum = add.out;
      if (values_[sum].output < 0 && readers[sum] == 1) {
        for (std::size_t j = i + 1; j < ops_.size(); ++j) {
          if (ops_[j].kind == PlanOpKind::relu && ops_[j].in[0] == sum) {
            conv.relu = true;
            conv.out = ops_[j].out;
            values_[conv.out].producer = producer;
            dropped[j] = true;
            break;
          }
        }
      }
      any = true;
      break;
    }
  }
  if (!any) return;
  std::vector<Op> kept;
  for (std::size_t i = 0; i < ops_.size(); ++i)
    if (!dropped[i]) kept.push_back(std::move(ops_[i]));
  ops_ = std::move(kept);
  // Producers and last reads again, for the ops as they now are (a value no op makes any more,
  // the conv's own output before the fusion, keeps no place: no op reads it).
  for (Value& value : values_) value.producer = -1, value.last_read = -1;
  for (int i = 0; i < static_cast<int>(ops_.size()); ++i) {
    for (int v : ops_[i].in) values_[v].last_read = i;
    values_[ops_[i].out].producer = i;
  }
}

// Places every value. Outputs go to the caller's arrays; an op whose first input dies with it
// and may run in place (relu, copy, the elementwise ops) writes over that input's slot; any
// other value takes a free slot (the first that is large enough, else the largest free one,
// which grows) and gives it back after its last reader.
template <class T>
void InferencePlan<T>::finish(const std::vector<int>& outputs) {
  check_open();
  if (outputs.empty()) fail("a plan needs at least one output");
  // Every check before any mark: a refused call leaves the plan as it was, to be finished again.
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    const int v = outputs[k];
    check_value(v, "an output");
    if (values_[v].input >= 0) fail("an output must be computed by an op, not be an input (add a reshape)");
    if (std::find(outputs.begin(), outputs.begin() + static_cast<std::ptrdiff_t>(k), v) !=
        outputs.begin() + static_cast<std::ptrdiff_t>(k))
      fail("a value can be returned once only");
  }
  for (std::size_t k = 0; k < outputs.size(); ++k) values_[outputs[k]].output = static_cast<int>(k);
  outputs_ = outputs;
  fuse_residual_adds();
  std::vector<int> free_slots;
  for (int i = 0; i < static_cast<int>(ops_.size()); ++i) {
    const Op& op = ops_[i];
    Value& out = values_[op.out];
    const Value& first = values_[op.in[0]];
    const bool in_place_op = op.kind == PlanOpKind::relu || op.kind == PlanOpKind::copy || op.kind == PlanOpKind::softmax ||
                             op.kind == PlanOpKind::rescale || op.kind == PlanOpKind::leaky_relu ||
                             op.kind == PlanOpKind::clip_max || op.kind == PlanOpKind::gelu ||
                             op.kind == PlanOpKind::add || op.kind == PlanOpKind::subtract ||
                             op.kind == PlanOpKind::multiply || op.kind == PlanOpKind::average;
    if (out.output >= 0) {
      // the caller's array
    } else if (in_place_op && first.slot >= 0 && first.last_read == i && first.output < 0) {
      out.slot = first.slot;
      out.own = first.own;
      own_size_[out.own] = std::max(own_size_[out.own], out.size);
    } else {
      out.own = static_cast<int>(own_size_.size());
      own_size_.push_back(out.size);
      auto fits = std::find_if(free_slots.begin(), free_slots.end(),
                               [&](int s) { return slot_size_[s] >= out.size; });
      if (fits == free_slots.end() && !free_slots.empty())
        fits = std::max_element(free_slots.begin(), free_slots.end(),
                                [&](int a, int b) { return slot_size_[a] < slot_size_[b]; });
      if (fits != free_slots.end()) {
        out.slot = *fits;
        free_slots.erase(fits);
        slot_size_[out.slot] = std::max(slot_size_[out.slot], out.size);
      } else {
        out.slot = static_cast<int>(slot_size_.size());
        slot_size_.push_back(out.size);
      }
    }
    // Slots whose value this op read last go back (once: an op may read a value twice).
    std::vector<int> done;
    for (int v : op.in)
      if (values_[v].last_read == i && values_[v].slot >= 0 && values_[v].slot != out.slot) done.push_back(values_[v].slot);
    if (out.last_read < 0 && out.slot >= 0) done.push_back(out.slot);  // nobody reads it
    std::sort(done.begin(), done.end());
    done.erase(std::unique(done.begin(), done.end()), done.end());
    free_slots.insert(free_slots.end(), done.begin(), done.end());
  }
  // Chunks whose values take about kChunkBytes: what an op reads and writes then stays in a
  // core's L2 (1-2 MiB on current x86 server cores) for the op after it, with room for the
  // kernels' workspaces and weights. The example ResNet (~150 KB of values an image) runs 64
  // images in 16 chunks of 4: 4.19 -> 3.58 ms on two threads, 7.47 -> 6.76 on one (2 MiB
  // L2 cores). 10,000 images: 858 -> 529 ms (2 threads) with 512 KiB, 531 with 1 MiB, 545
  // with 2 MiB (chunks of 13).
  constexpr int64_t kChunkBytes = int64_t{768} << 10;
  const int64_t per_sample = slot_elements(1) * static_cast<int64_t>(sizeof(T));
  chunk_samples_ = per_sample > 0 ? std::max<int64_t>(1, kChunkBytes / per_sample) : 0;
  for (int k = 0; k < static_cast<int>(ops_.size()); ++k) {
    const Op& op = ops_[k];
    flops_per_sample_ += op_flops(op);
    if (!op.keep) continue;
    ops_[k].first_block = static_cast<int>(kept_blocks_.size());
    for_each_source(op, [&](const T* src, int64_t count) {
      for (int64_t a = 0; a < count;) {  // into the op's last block while it has room
        if (static_cast<int>(kept_blocks_.size()) == ops_[k].first_block || kept_blocks_.back().values == kKeptBlockValues) {
          const int next = static_cast<int>(kept_segments_.size());
          kept_blocks_.push_back({k, next, next, 0});
        }
        KeptBlock& block = kept_blocks_.back();
        const int64_t take = std::min(kKeptBlockValues - block.values, count - a);
        kept_segments_.push_back({src + a, take});
        block.end_segment += 1;
        block.values += take;
        a += take;
      }
      kept_source_values_ += count;
      if (k == 0) first_op_source_values_ += count;
    });
    ops_[k].end_block = static_cast<int>(kept_blocks_.size());
    if (k == 0) first_op_blocks_ = ops_[k].end_block;
  }
  // chunk_layout's first cut, from the graph alone: float32 values of whole blocks of channels,
  // made by a conv and read by convs only, neither an input nor an output.
  block_candidates_.assign(values_.size(), 0);
  if (std::is_same<T, float>::value) {
    for (std::size_t v = 0; v < values_.size(); ++v) {
      const Value& val = values_[v];
      block_candidates_[v] = val.dims.size() == 3 && val.dims[0] % 16 == 0 && val.producer >= 0 && val.input < 0 &&
                             val.output < 0 && ops_[static_cast<std::size_t>(val.producer)].kind == PlanOpKind::conv2d;
    }
    for (const Op& op : ops_)
      if (op.kind != PlanOpKind::conv2d)
        for (int v : op.in) block_candidates_[static_cast<std::size_t>(v)] = 0;
  }
  if (std::none_of(block_candidates_.begin(), block_candidates_.end(), [](char c) { return c != 0; }))
    block_candidates_.clear();
  if (!ops_.empty()) {  // an op without arithmetic counted by its output's size
    const double flops = op_flops(ops_[0]);
    first_op_work_ = flops > 0.0 ? flops : static_cast<double>(values_[ops_[0].out].size);
  }
  // serial_samples(): the most samples below every op kind's floor. Convs and dense layers:
  // their operations (all of them together, an upper bound on each) under kMinParallelFlops.
  // The others are passes that split only past 256 KiB moved (channel_ops.h, relu) or past one
  // work item of 16K input values (max-pooling's grains): a value of 64 KiB at most keeps them
  // on one thread whatever their work estimate.
  constexpr double kSerialValueBytes = 64.0 * 1024.0;
  int64_t largest_value = 1;
  for (const Value& v : values_) largest_value = std::max(largest_value, v.size);
  auto below = [](double limit, double each) {  // the largest n with n * each < limit
    if (each <= 0.0) return std::numeric_limits<int64_t>::max();
    return std::max<int64_t>(0, static_cast<int64_t>(std::ceil(limit / each)) - 1);
  };
  serial_samples_ = std::min(below(kMinParallelFlops, flops_per_sample_),
                             below(kSerialValueBytes, static_cast<double>(largest_value) * sizeof(T)));
  finished_ = true;
}

template <class T>
double InferencePlan<T>::op_flops(const Op& op) const {
  if (op.kind == PlanOpKind::conv2d || op.kind == PlanOpKind::conv_transpose) return op.conv.flops();  // mb is 1
  if (op.kind == PlanOpKind::depthwise)  // the depthwise kernels' own work estimate (plan_threads)
    return 2.0 * static_cast<double>(op.conv.oc * op.conv.oh * op.conv.ow * op.conv.kh * op.conv.kw);
  if (op.kind == PlanOpKind::dense) return 2.0 * static_cast<double>(values_[op.in[0]].size) * static_cast<double>(op.units);
  return 0.0;
}

template <class T>
std::string InferencePlan<T>::describe() const {
  std::string s;
  for (const Op& op : ops_) {
    s += kind_name(op.kind);
    s += "(";
    for (std::size_t k = 0; k < op.in.size(); ++k) s += (k ? ", v" : "v") + std::to_string(op.in[k]);
    s += ") -> v" + std::to_string(op.out) + " " + dims_text(values_[op.out].dims);
    if (op.fold) s += " +batchnorm";
    if (op.residual) s += " +residual(v" + std::to_string(op.in[1]) + ")";
    if (op.relu) s += " +relu";
    const Value& out = values_[op.out];
    if (out.output >= 0) s += " [output " + std::to_string(out.output) + "]";
    else s += " [slot " + std::to_string(out.slot) + "]";
    s += "\n";
  }
  return s;
}

// ------------------------------------------------------------------------------ running

template <class T>
bool InferencePlan<T>::places_elements(int64_t mb, bool own_places, int64_t* elements) const {
  *elements = 0;
  for (int64_t size : own_places ? own_size_ : slot_size_) {
    int64_t slot = 0;
    if (__builtin_mul_overflow(size, mb, &slot) || slot > INT64_MAX - kAlign ||
        __builtin_add_overflow(*elements, round_up(slot), elements))
      return false;
  }
  return true;
}

template <class T>
int64_t InferencePlan<T>::slot_elements(int64_t mb, bool own_places) const {
  int64_t elements = 0;
  if (!places_elements(mb, own_places, &elements)) throw std::bad_alloc();
  return elements;
}

template <class T>
T* InferencePlan<T>::place(int v, T* slots, int64_t mb, const std::vector<const T*>& inputs,
                           const std::vector<T*>& outputs, bool own_places) const {
  const Value& value = values_[v];
  if (value.input >= 0) return const_cast<T*>(inputs[value.input]);  // read only: no op writes an input
  if (value.output >= 0) return outputs[value.output];
  const std::vector<int64_t>& sizes = own_places ? own_size_ : slot_size_;
  int64_t offset = 0;
  for (int s = 0; s < (own_places ? value.own : value.slot); ++s) offset += round_up(sizes[s] * mb);
  return slots + offset;
}

template <class T>
template <class F>
void InferencePlan<T>::for_each_source(const Op& op, F&& f) {
  f(op.w, op.conv.wei_size());
  for (const T* v : {op.b, op.bn.mean, op.bn.var, op.bn.gamma, op.bn.beta})
    if (v != nullptr) f(v, op.conv.oc);
}

template <class T>
Digest InferencePlan<T>::block_digest(std::size_t block) const {
  const KeptBlock& x = kept_blocks_[block];
  const auto digest = digest_kernel().fn;  // the active ISA's: every ISA's digest is the same
  const int64_t bytes = x.values * static_cast<int64_t>(sizeof(T));
  if (x.end_segment - x.first_segment == 1)
    return digest(reinterpret_cast<const unsigned char*>(kept_segments_[static_cast<std::size_t>(x.first_segment)].src), bytes);
  alignas(64) T joined[kKeptBlockValues];  // a few KiB copied: less than a digest's fixed cost a segment
  T* to = joined;
  for (int i = x.first_segment; i < x.end_segment; ++i) {
    const KeptSegment& segment = kept_segments_[static_cast<std::size_t>(i)];
    std::memcpy(to, segment.src, sizeof(T) * static_cast<std::size_t>(segment.count));
    to += segment.count;
  }
  return digest(reinterpret_cast<const unsigned char*>(joined), bytes);
}

// Below this, the kept sources are digested on the calling thread alone (a hand-off would cost
// about what it saves).
constexpr int64_t kMinSharedCompareBytes = int64_t{64} << 10;

// Whether the team's digests should run beside the first op (refresh_all_kept): where that op
// on one thread takes about as long as the digests or less. Both estimated at ~30-50 G a
// second on one core of a current x86 server (a first layer of one to three channels is far
// from its peak; the digest takes 4 bytes a float at ~30 GB/s).
template <class T>
bool InferencePlan<T>::first_op_overlaps(int64_t mb) const {
  if (ops_.size() < 2 || kept_source_values_ - first_op_source_values_ <= 0) return false;
  if (kept_source_values_ * static_cast<int64_t>(sizeof(T)) < kMinSharedCompareBytes) return false;
  return first_op_work_ * static_cast<double>(mb) <=
         static_cast<double>(kept_source_values_ - first_op_source_values_) * static_cast<double>(sizeof(T));
}

template <class T>
bool InferencePlan<T>::refresh_all_kept(int64_t mb, T* arena, std::vector<Kept>& kept, std::vector<Digest>& digests,
                                        const char* forced_conv, const std::function<void()>* first_op) const {
  // Each block of each conv's sources digested and compared with the arena's digest of it: any
  // change made in place (training, set_weights, an edit) makes the fold and the prepared
  // weights again; a conv whose digests are not made yet (an arena's first run) is not digested.
  const std::vector<KeptBlock>& blocks = kept_blocks_;
  auto differs = [&](std::size_t i) { return block_digest(i) != digests[i]; };
  std::vector<char> same(ops_.size(), 0);
  for (int k = 0; k < static_cast<int>(ops_.size()); ++k) same[k] = kept[k].valid;
  // Blocks [from, to) on this thread: a conv's digests stop at its first difference.
  auto compare_alone = [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i)
      if (same[blocks[i].op] && differs(i)) same[blocks[i].op] = 0;
  };
  const int threads = num_threads();
  bool ran_first = false;
  if (threads > 1 && detail::thread_team_available() &&
      kept_source_values_ * static_cast<int64_t>(sizeof(T)) >= kMinSharedCompareBytes) {
    // Shared by the team a block at a time, so that each thread digests about as many bytes:
    // the example ResNet's 76k weights were ~8 us of compare on one thread, a tenth of its
    // one-image predict; in pieces of whole arrays the thread with the last layers' banks took
    // 5.5 us against the other's 2. Which thread digests a block changes nothing but the time:
    // the convs found to differ are the same set.
    //
    // With `first_op`, the first op's own blocks are digested (and it is refreshed) here
    // first; then one thread runs it while the others digest the rest, and joins them when
    // done. A small first layer hardly gains from a second thread (the example ResNet's 1 ->
    // 16 stem: 3.7 us on one, 3.8 on two), while the digests split evenly.
    std::size_t start = 0;
    if (first_op != nullptr && first_op_overlaps(mb)) {
      start = static_cast<std::size_t>(first_op_blocks_);  // at the front: op order
      compare_alone(0, start);
      if (ops_[0].keep) refresh_kept(ops_[0], mb, arena, &kept[0], digests.data(), forced_conv, same[0] != 0);
      same[0] = 1;  // current now: not digested again below
      ran_first = true;
    }
    const uint64_t pieces = blocks.size() - start;
    // Thread t digests the blocks of range t, from its front; one done with its own range takes
    // blocks from the back of another's still being worked on (the first op's thread's,
    // mostly). The same blocks fall to the same thread from one run to the next, which keeps
    // them in its core's cache: claimed one at a time from a shared counter instead, they moved
    // between the cores and the compare took half as long again. A range is (front, back) in
    // one word, changed by compare-and-swap.
    std::vector<std::atomic<uint64_t>> ranges(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      const uint64_t lo = pieces * t / threads, hi = pieces * (t + 1) / threads;
      ranges[static_cast<std::size_t>(t)].store(lo << 32 | hi, std::memory_order_relaxed);
    }
    // A block of range r, from its front or its back; -1 when the range is done.
    auto claim = [&](int r, bool front) -> int64_t {
      std::atomic<uint64_t>& range = ranges[static_cast<std::size_t>(r)];
      uint64_t now = range.load(std::memory_order_relaxed);
      for (;;) {
        const uint64_t lo = now >> 32, hi = now & 0xffffffffu;
        if (lo >= hi) return -1;
        const uint64_t next = front ? (lo + 1) << 32 | hi : lo << 32 | (hi - 1);
        if (range.compare_exchange_weak(now, next, std::memory_order_relaxed)) return static_cast<int64_t>(front ? lo : hi - 1);
      }
    };
    std::vector<std::vector<int>> found(static_cast<std::size_t>(threads));  // per thread: convs that differ
    parallel_for(threads, threads, [&](int64_t item, int tid) {
      // Item 0 is the calling thread's (the team's static ranges): an error in the first op
      // leaves through the team, raised once the others are done (thread_team_run).
      if (item == 0 && ran_first) (*first_op)();
      auto compare = [&](int64_t piece) {
        const std::size_t i = start + static_cast<std::size_t>(piece);
        // `same` is read only here (written after the loop): a conv without digests yet is skipped.
        if (same[blocks[i].op] && differs(i)) found[static_cast<std::size_t>(tid)].push_back(blocks[i].op);
      };
      const int own = static_cast<int>(item);
      for (int64_t piece = claim(own, true); piece >= 0; piece = claim(own, true)) compare(piece);
      for (int r = 0; r < threads; ++r)
        if (r != own)
          for (int64_t piece = claim(r, false); piece >= 0; piece = claim(r, false)) compare(piece);
    });
    for (const std::vector<int>& ops : found)
      for (int k : ops) same[k] = 0;
  } else {
    compare_alone(0, blocks.size());
  }
  for (int k = ran_first ? 1 : 0; k < static_cast<int>(ops_.size()); ++k)
    if (ops_[k].keep) refresh_kept(ops_[k], mb, arena, &kept[k], digests.data(), forced_conv, same[k] != 0);
  return ran_first;
}

template <class T>
void InferencePlan<T>::refresh_kept(const Op& op, int64_t mb, T* arena, Kept* kept, Digest* digests,
                                    const char* forced_conv, bool same) const {
  ConvShape s = op.conv;
  s.mb = mb;
  s.relu = op.relu;
  if (!same) {
    for (int i = op.first_block; i < op.end_block; ++i) digests[i] = block_digest(static_cast<std::size_t>(i));
    if (op.fold) {
      T* wf = arena + op.fold_offset;
      fold_batchnorm(s, op.w, op.b, op.bn, wf, wf + round_up(s.wei_size()));
    }
    kept->valid = true;
    kept->prepared_by = nullptr;
  }
  if (!keep_prepared_ || op.prepared_capacity == 0) return;
  // The forward choice depends on the shape and on keeps_prepared only, not on the data.
  ConvTensors<T> t;
  t.wei = op.fold ? arena + op.fold_offset : op.w;
  t.keeps_prepared = true;
  std::string error;
  const ConvAlgo<T>* algo = choose_conv2d_algorithm<T>(ConvPass::fwd, s, t, forced_conv, &error);
  if (algo == nullptr) throw std::invalid_argument(error);  // a forced algorithm that does not apply
  if (algo->prepare != nullptr && kept->prepared_by != algo) {  // made by another algorithm or ISA, or from other weights
    const int64_t size = algo->prepared_size(s);
    if (size > 0 && size <= op.prepared_capacity) {
      algo->prepare(s, t.wei, arena + op.prepared_offset);
      kept->prepared_by = algo;
    }
  }
}

template <class T>
void InferencePlan<T>::conv_call(const Op& op, int64_t mb, const T* arena, const std::vector<T*>* where, ConvShape* s,
                                 ConvTensors<T>* t) const {
  *s = op.conv;
  s->mb = mb;
  s->relu = op.relu;
  t->wei = op.w, t->bias = op.b;
  if (op.fold && arena != nullptr) {
    t->wei = arena + op.fold_offset;
    t->bias = t->wei + round_up(s->wei_size());
  }
  if (where != nullptr) {
    t->src = (*where)[op.in[0]], t->dst = (*where)[op.out];
    if (op.residual) t->residual = (*where)[op.in[1]];
  }
  t->keeps_prepared = keep_prepared_ && op.prepared_capacity > 0;
}

// Which values stay in channel blocks: every candidate (finish: float32, channels a multiple of
// 16, made and read by convs only, neither an input nor an output), until no conv is left with
// a layout its algorithm does not run: a residual in its conv's output
// layout, a source and output the algorithm takes together. Depends on the shapes and the
// algorithms only, not on the thread count. (Global average pooling through an NCHW copy of a
// blocked value cost the example ResNet's last 64x7x7 value 1.2 us more than the NCHW stores
// of the conv that makes it.)
template <class T>
typename InferencePlan<T>::ChunkLayout InferencePlan<T>::chunk_layout(int64_t mb, const char* forced_conv) const {
  ChunkLayout l;  // empty: NCHW throughout, each conv choosing as it runs (run_op)
  if (!blocked_layout_ || block_candidates_.empty()) return l;
  l.algos.assign(ops_.size(), nullptr);
  for (std::size_t k = 0; k < ops_.size(); ++k) {
    const Op& op = ops_[k];
    if (op.kind != PlanOpKind::conv2d) continue;
    ConvShape s;
    ConvTensors<T> t;
    conv_call(op, mb, nullptr, nullptr, &s, &t);  // the shapes only
    std::string error;
    l.algos[k] = choose_conv2d_algorithm<T>(ConvPass::fwd, s, t, forced_conv, &error);
    if (l.algos[k] == nullptr) throw std::invalid_argument(error);  // a forced algorithm that does not apply
  }
  l.blocked = block_candidates_;
  for (bool changed = true; changed;) {
    changed = false;
    auto unblock = [&](int v) {
      char& b = l.blocked[static_cast<std::size_t>(v)];
      if (b) b = 0, changed = true;
    };
    for (std::size_t k = 0; k < ops_.size(); ++k) {
      const Op& op = ops_[k];
      if (op.kind != PlanOpKind::conv2d) continue;
      const ConvAlgo<T>* a = l.algos[k];
      const int src = op.in[0], dst = op.out;
      if (op.residual && l.blocked[static_cast<std::size_t>(op.in[1])] != l.blocked[static_cast<std::size_t>(dst)]) {
        unblock(op.in[1]), unblock(dst);
        continue;
      }
      const bool sb = l.blocked[static_cast<std::size_t>(src)], db = l.blocked[static_cast<std::size_t>(dst)];
      if (!sb && !db) continue;
      ConvShape s = op.conv;
      s.mb = mb;
      if (a->blocked != nullptr && a->blocked(s, sb, db)) continue;
      if (sb && db && a->blocked != nullptr && a->blocked(s, false, true)) {
        unblock(src);
        continue;
      }
      unblock(src), unblock(dst);
      if (op.residual) unblock(op.in[1]);
    }
  }
  return l;
}

template <class T>
std::vector<int> InferencePlan<T>::blocked_values(int64_t mb, const std::string& forced_conv) const {
  if (!finished_) throw std::logic_error("inference plan: blocked_values() before finish()");
  if (mb < 1) throw std::invalid_argument("inference plan: the batch must have at least one sample");
  const ChunkLayout l = chunk_layout(mb, forced_conv.c_str());
  if (l.blocked.empty()) {  // no candidate: still refuse a forced algorithm that does not apply
    for (const Op& op : ops_) {
      if (op.kind != PlanOpKind::conv2d) continue;
      ConvShape s;
      ConvTensors<T> t;
      conv_call(op, mb, nullptr, nullptr, &s, &t);
      std::string error;
      if (choose_conv2d_algorithm<T>(ConvPass::fwd, s, t, forced_conv.c_str(), &error) == nullptr)
        throw std::invalid_argument(error);
    }
  }
  std::vector<int> out;
  for (std::size_t v = 0; v < l.blocked.size(); ++v)
    if (l.blocked[v]) out.push_back(static_cast<int>(v));
  return out;
}

template <class T>
void InferencePlan<T>::run_op(const Op& op, int64_t mb, const T* arena, const Kept& kept, const std::vector<T*>& where,
                              const char* forced_conv, const ConvAlgo<T>* algo, const std::vector<char>& blocked) const {
  const T* x = where[op.in[0]];
  T* y = where[op.out];
  const int64_t n = mb * values_[op.out].size;
  switch (op.kind) {
    case PlanOpKind::conv2d: {
      ConvShape s;
      ConvTensors<T> t;
      conv_call(op, mb, arena, &where, &s, &t);
      if (algo == nullptr) {
        std::string error;
        algo = choose_conv2d_algorithm<T>(ConvPass::fwd, s, t, forced_conv, &error);
        if (algo == nullptr) throw std::invalid_argument(error);  // a forced algorithm that does not apply
      }
      t.src_blocked = !blocked.empty() && blocked[static_cast<std::size_t>(op.in[0])] != 0;
      t.dst_blocked = !blocked.empty() && blocked[static_cast<std::size_t>(op.out)] != 0;
      // refresh_kept prepared the weights for the chunk size it was given; a chunk of another
      // size that chose another algorithm lets that one transform its filters itself.
      if (t.keeps_prepared && algo->prepare != nullptr && kept.prepared_by == algo) t.prepared = arena + op.prepared_offset;
      algo->run(s, t);
      return;
    }
    case PlanOpKind::dense: {
      const DenseShape s{mb, values_[op.in[0]].size, op.units};
      dense_fwd_kernel<T>().fn(s, x, op.w, op.b, y);
      if (op.relu) relu_fwd_kernel<T>().fn(n, y, y);
      return;
    }
    case PlanOpKind::maxpool2d: {
      PoolShape s = op.pool;
      s.mb = mb;
      maxpool2d_fwd_kernel<T>(s).fn(s, x, y, nullptr);
      return;
    }
    case PlanOpKind::relu:
      relu_fwd_kernel<T>().fn(n, x, y);
      return;
    case PlanOpKind::softmax:
      softmax_fwd_kernel<T>().fn(mb, values_[op.out].size, x, y);
      return;
    case PlanOpKind::batchnorm: {
      const std::vector<int64_t>& d = values_[op.in[0]].dims;
      const ChannelShape s{mb, d[0], values_[op.in[0]].size / d[0]};
      batchnorm_fwd_inference_kernel<T>().fn(s, x, op.bn.mean, op.bn.var, op.bn.gamma, op.bn.beta, op.bn.eps, y);
      return;
    }
    case PlanOpKind::global_avg_pool:
    case PlanOpKind::global_max_pool: {
      const std::vector<int64_t>& d = values_[op.in[0]].dims;
      const ChannelShape s{mb, d[0], d[1] * d[2]};
      if (op.kind == PlanOpKind::global_avg_pool) global_avg_pool2d_fwd_kernel<T>().fn(s, x, y);
      else global_max_pool2d_fwd_kernel<T>().fn(s, x, y, nullptr);
      return;
    }
    case PlanOpKind::copy:
      if (x != y) std::memcpy(y, x, sizeof(T) * static_cast<std::size_t>(n));
      return;
    case PlanOpKind::depthwise: {
      ConvShape s = op.conv;
      s.mb = mb;
      depthwise_conv2d_fwd_kernel<T>().fn(s, x, op.w, op.b, y);
      depthwise_padding_products(s, op.w, y);
      return;
    }
    case PlanOpKind::window: {
      // As ZeroPadding2D / Cropping2D: copies of the rows, +0 outside the input.
      const std::vector<int64_t>& din = values_[op.in[0]].dims;
      const std::vector<int64_t>& dout = values_[op.out].dims;
      const int64_t ih = din[1], iw = din[2], oh = dout[1], ow = dout[2];
      // Output columns [j0, j1) read the input; margins of mixed signs may leave none.
      const int64_t j0 = std::min(ow, std::max<int64_t>(0, op.left)), j1 = std::max(j0, std::min(ow, iw + op.left));
      parallel_for(elementwise_threads<T>(n, 1), mb * din[0], [&](int64_t plane, int) {
        const T* src = x + plane * ih * iw;
        T* dst = y + plane * oh * ow;
        for (int64_t i = 0; i < oh; ++i) {
          T* row = dst + i * ow;
          const int64_t si = i - op.top;
          if (si < 0 || si >= ih) {
            std::fill(row, row + ow, T(0));
            continue;
          }
          std::fill(row, row + j0, T(0));
          if (j1 > j0) std::memcpy(row + j0, src + si * iw + (j0 - op.left), sizeof(T) * static_cast<std::size_t>(j1 - j0));
          std::fill(row + j1, row + ow, T(0));
        }
      });
      return;
    }
    case PlanOpKind::conv_transpose: {
      // As Conv2DTranspose.forward: conv2d_backward's input gradient (the default choice of
      // algorithm), then y += bias per channel.
      ConvShape s = op.conv;
      s.mb = mb;
      ConvTensors<T> t;
      t.diff_dst = x, t.wei = op.w, t.diff_src = y;
      std::string error;
      const ConvAlgo<T>* bwd = choose_conv2d_algorithm<T>(ConvPass::bwd_data, s, t, nullptr, &error);
      if (bwd == nullptr) throw std::invalid_argument(error);
      bwd->run(s, t);
      if (op.b != nullptr) {
        const int64_t plane = s.ih * s.iw;
        parallel_for(elementwise_threads<T>(n, 1), mb * s.ic, [&](int64_t p, int) {
          T* row = y + p * plane;
          const T bias = op.b[p % s.ic];
          for (int64_t i = 0; i < plane; ++i) row[i] = row[i] + bias;
        });
      }
      return;
    }
    case PlanOpKind::reorder: {
      // As Reshape.forward: value k of the channels-last order is x's (h, w, c) where x is an
      // image (C, H, W), and goes to y's (h, w, c) where y is one.
      const std::vector<int64_t>& din = values_[op.in[0]].dims;
      const std::vector<int64_t>& dout = values_[op.out].dims;
      const bool from_image = din.size() == 3, to_image = dout.size() == 3;
      const int64_t size = values_[op.out].size;
      const int64_t ic = from_image ? din[0] : 1, ihw = from_image ? din[1] * din[2] : size;
      const int64_t oc = to_image ? dout[0] : 1, ohw = to_image ? dout[1] * dout[2] : size;
      parallel_for(elementwise_threads<T>(n, 1), mb, [&](int64_t m, int) {
        const T* src = x + m * size;
        T* dst = y + m * size;
        if (ic == 1 && oc == 1) {  // one channel: the same order (a flat 28x28x1 MNIST input)
          std::memcpy(dst, src, sizeof(T) * static_cast<std::size_t>(size));
          return;
        }
        // k, the channels-last index, as (channel, pixel) on each side, counted without a
        // division (one per value made a 256-image LeNet-5 behind it 20% slower than its layers).
        int64_t ci = 0, pi = 0, co = 0, po = 0;
        for (int64_t k = 0; k < size; ++k) {
          dst[to_image ? co * ohw + po : k] = src[from_image ? ci * ihw + pi : k];
          if (++ci == ic) ci = 0, ++pi;
          if (++co == oc) co = 0, ++po;
        }
      });
      return;
    }
    case PlanOpKind::upsample: {
      // As UpSampling2D's np.repeat along the rows, then the columns: y[c, i, j] = x[c, i / fh, j / fw].
      const std::vector<int64_t>& din = values_[op.in[0]].dims;
      const int64_t ih = din[1], iw = din[2], fh = op.factor_h, fw = op.factor_w, ow = iw * fw;
      parallel_for(elementwise_threads<T>(n, 1), mb * din[0], [&](int64_t plane, int) {
        const T* src = x + plane * ih * iw;
        T* dst = y + plane * ih * fh * ow;
        for (int64_t i = 0; i < ih; ++i) {
          T* row = dst + i * fh * ow;
          for (int64_t j = 0; j < iw; ++j)
            for (int64_t k = 0; k < fw; ++k) row[j * fw + k] = src[i * iw + j];
          for (int64_t r = 1; r < fh; ++r) std::memcpy(row + r * ow, row, sizeof(T) * static_cast<std::size_t>(ow));
        }
      });
      return;
    }
    case PlanOpKind::avgpool: {
      // AveragePooling2D.forward's NumPy: y = 0; y += the input (+0 outside it) at each window
      // offset (i, j) in row-major order; y *= inv, each step rounded to T (no fused multiply-add
      // in this file). Tap by tap over a whole output row, as NumPy's strided adds: a loop per
      // output over its taps ran scalar, and Inception's 3x3 'same' branches took 1.5x longer than
      // the layer.
      const PoolShape& s = op.pool;
      const T* inv = op.avg_inv.data();
      const int taps = static_cast<int>(std::min<int64_t>(s.kh * s.kw, int64_t{1} << 20));
      parallel_for(elementwise_threads<T>(n, taps), mb * s.c, [&](int64_t plane, int) {
        const T* src = x + plane * s.ih * s.iw;
        T* dst = y + plane * s.oh * s.ow;
        std::fill(dst, dst + s.oh * s.ow, T(0));
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            // Output columns whose tap (i, j) reads a column of the input: [lo, hi).
            const int64_t first = j - s.pw;  // input column of output column 0
            const int64_t lo = std::min(s.ow, first >= 0 ? 0 : (-first + s.sw - 1) / s.sw);
            const int64_t hi = std::max(lo, std::min(s.ow, first >= s.iw ? 0 : (s.iw - first + s.sw - 1) / s.sw));
            for (int64_t oh = 0; oh < s.oh; ++oh) {
              T* acc = dst + oh * s.ow;
              const int64_t r = oh * s.sh + i - s.ph;
              if (r < 0 || r >= s.ih) {
                for (int64_t ow = 0; ow < s.ow; ++ow) acc[ow] = acc[ow] + T(0);
                continue;
              }
              const T* in = src + r * s.iw + first;
              for (int64_t ow = 0; ow < lo; ++ow) acc[ow] = acc[ow] + T(0);
              if (s.sw == 1) {
                for (int64_t ow = lo; ow < hi; ++ow) acc[ow] = acc[ow] + in[ow];
              } else {
                for (int64_t ow = lo; ow < hi; ++ow) acc[ow] = acc[ow] + in[ow * s.sw];
              }
              for (int64_t ow = hi; ow < s.ow; ++ow) acc[ow] = acc[ow] + T(0);
            }
          }
        for (int64_t k = 0; k < s.oh * s.ow; ++k) dst[k] = dst[k] * inv[k];
      });
      return;
    }
    case PlanOpKind::leaky_relu: {
      // LeakyReLU.forward's np.where(x > 0, x, x * (T)slope).
      const T slope = static_cast<T>(op.scale);
      parallel_for_grains(elementwise_threads<T>(n, 1), n, kGrain, [&](int64_t lo, int64_t hi, int) {
        for (int64_t i = lo; i < hi; ++i) {
          const T v = x[i];
          y[i] = v > T(0) ? v : v * slope;
        }
      });
      return;
    }
    case PlanOpKind::gelu:
      gelu_fwd_kernel<T>().fn(n, x, y);
      return;
    case PlanOpKind::clip_max: {
      // ReLU.forward's np.minimum(y, (T)max_value) after its relu: x itself where it is not above
      // the bound (NaN, a tie and -0.0 included), so the bits are NumPy's.
      const T bound = static_cast<T>(op.scale);
      parallel_for_grains(elementwise_threads<T>(n, 1), n, kGrain, [&](int64_t lo, int64_t hi, int) {
        for (int64_t i = lo; i < hi; ++i) {
          const T v = x[i];
          y[i] = v > bound ? bound : v;
        }
      });
      return;
    }
    case PlanOpKind::rescale: {
      // Rescaling.forward's NumPy: y = x * (T)scale, then y += (T)offset where it is not 0, each
      // rounded to T (this file is built with -ffp-contract=off: no fused multiply-add).
      const T scale = static_cast<T>(op.scale), offset = static_cast<T>(op.offset);
      const bool shift = op.offset != 0.0;
      parallel_for_grains(elementwise_threads<T>(n, 1), n, kGrain, [&](int64_t lo, int64_t hi, int) {
        if (shift) {
          for (int64_t i = lo; i < hi; ++i) y[i] = x[i] * scale + offset;
        } else {
          for (int64_t i = lo; i < hi; ++i) y[i] = x[i] * scale;
        }
      });
      return;
    }
    case PlanOpKind::add:
    case PlanOpKind::subtract:
    case PlanOpKind::multiply:
    case PlanOpKind::average: {
      // The layers' NumPy order: y = x0 op x1, then y op= x2, ...; Average then y *= (T)(1/k).
      // Blocks of kBlock elements: each step one plain loop over a local block, so that it
      // vectorises (one loop choosing the op per element ran scalar: 38M additions of a
      // 1024-image ResNet took longer than NumPy's), and y is written only after every input
      // of the block is read (y may be x0's slot, and x0 may come again: Add()([a, b, a])).
      std::vector<const T*> xs;
      for (int v : op.in) xs.push_back(where[v]);
      const int k = static_cast<int>(xs.size());
      const T inv = static_cast<T>(1.0 / k);
      auto steps = [&](auto combine) {
        constexpr int64_t kBlock = 256;
        parallel_for_grains(elementwise_threads<T>(n, k), n, kGrain, [&](int64_t lo, int64_t hi, int) {
          alignas(64) T acc[kBlock];
          for (int64_t b0 = lo; b0 < hi; b0 += kBlock) {
            const int64_t m = std::min(kBlock, hi - b0);
            const T* a = xs[0] + b0;
            for (int64_t i = 0; i < m; ++i) acc[i] = a[i];
            for (int j = 1; j < k; ++j) {
              const T* c = xs[j] + b0;
              for (int64_t i = 0; i < m; ++i) acc[i] = combine(acc[i], c[i]);
            }
            if (op.kind == PlanOpKind::average)
              for (int64_t i = 0; i < m; ++i) acc[i] = acc[i] * inv;
            std::memcpy(y + b0, acc, sizeof(T) * static_cast<std::size_t>(m));
          }
        });
      };
      if (op.kind == PlanOpKind::multiply) steps([](T p, T q) { return p * q; });
      else if (op.kind == PlanOpKind::subtract) steps([](T p, T q) { return p - q; });
      else steps([](T p, T q) { return p + q; });
      return;
    }
    case PlanOpKind::concat: {
      // Per sample, each input's block after the one before.
      const int64_t out_size = values_[op.out].size;
      parallel_for(elementwise_threads<T>(n, 1), mb, [&](int64_t m, int) {
        T* dst = y + m * out_size;
        for (int v : op.in) {
          const int64_t size = values_[v].size;
          std::memcpy(dst, where[v] + m * size, sizeof(T) * static_cast<std::size_t>(size));
          dst += size;
        }
      });
      return;
    }
  }
}

template <class T>
void InferencePlan<T>::run(int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
                           const std::string& forced_conv) const {
  run_ops(mb, inputs, outputs, forced_conv, nullptr);
}

template <class T>
void InferencePlan<T>::run_timed(int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
                                 const std::string& forced_conv, double* op_seconds, double* share_seconds,
                                 int share_threads) const {
  if (op_seconds == nullptr) throw std::invalid_argument("inference plan: run_timed() needs room for the op times");
  if (share_seconds != nullptr && share_threads < num_threads())
    throw std::invalid_argument("inference plan: run_timed() needs room for the times of " +
                                std::to_string(num_threads()) + " threads, got " + std::to_string(share_threads));
  const OpClock clock{op_seconds, share_seconds, share_seconds != nullptr ? share_threads : 0};
  run_ops(mb, inputs, outputs, forced_conv, &clock);
}

template <class T>
void InferencePlan<T>::chunk_samples(int64_t n) {
  if (n < 0) fail("chunk_samples must be >= 0 (0: every batch whole), got " + std::to_string(n));
  chunk_samples_ = n;
}

template <class T>
std::vector<int64_t> InferencePlan<T>::chunk_sizes(int64_t mb) const {
  if (mb < 1) return {};
  int64_t chunks = chunk_samples_ > 0 && mb > chunk_samples_ ? (mb + chunk_samples_ - 1) / chunk_samples_ : 1;
  // A count that 2, 4, 8 and 16 threads share evenly: a power of two up to 16, else a multiple
  // of 16 (64 images in chunks of at most 3: 32 chunks of 2, not 22 of 3 or 2).
  if (chunks > 1) {
    int64_t even = 2;
    while (even < chunks && even < 16) even *= 2;
    chunks = even >= chunks ? even : (chunks + 15) / 16 * 16;
    chunks = std::min(chunks, mb);
  }
  // Chunk c starts at sample floor(c * mb / chunks): the larger ones spread among the smaller,
  // so that any run of consecutive chunks (one thread's share) holds its share of samples.
  std::vector<int64_t> sizes(static_cast<std::size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) sizes[static_cast<std::size_t>(c)] = chunk_first(c + 1, chunks, mb) - chunk_first(c, chunks, mb);
  return sizes;
}

template <class T>
void InferencePlan<T>::run_chunk(int64_t mb, const T* arena, const std::vector<Kept>& kept, T* slots, bool own_places,
                                 const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
                                 const char* forced_conv, const ChunkLayout& layout, const OpClock* clock, int first,
                                 int last) const {
  std::vector<T*> where(values_.size());
  for (int v = 0; v < static_cast<int>(values_.size()); ++v) where[v] = place(v, slots, mb, inputs, outputs, own_places);
  const std::size_t end = last < 0 ? ops_.size() : static_cast<std::size_t>(last);
  for (std::size_t k = static_cast<std::size_t>(first); k < end; ++k) {
    if (clock == nullptr) {
      run_op(ops_[k], mb, arena, kept[k], where, forced_conv, layout.algos.empty() ? nullptr : layout.algos[k],
             layout.blocked);
      continue;
    }
    if (clock->share_seconds != nullptr)
      detail::set_share_seconds(clock->share_seconds + k * static_cast<std::size_t>(clock->share_threads));
    const auto start = std::chrono::steady_clock::now();
    run_op(ops_[k], mb, arena, kept[k], where, forced_conv, layout.algos.empty() ? nullptr : layout.algos[k],
           layout.blocked);
    clock->op_seconds[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (clock->share_seconds != nullptr) detail::set_share_seconds(nullptr);
  }
}

template <class T>
typename InferencePlan<T>::RunLayout InferencePlan<T>::run_layout(int64_t mb, bool timed) const {
  RunLayout l;
  l.sizes = chunk_sizes(mb);
  const int64_t chunks = static_cast<int64_t>(l.sizes.size());
  // Threads that each run whole chunks, their ops on one thread: where every thread gets about
  // as many (at most a quarter more than the average); else the chunks run one after another,
  // each op on all threads. Timed runs take the latter: per-op figures.
  const int threads = num_threads();
  if (chunks > 1 && threads > 1 && !timed && chunks >= threads) {
    const int64_t rounds = (chunks + threads - 1) / threads;
    if (rounds * threads * 4 <= chunks * 5) l.workers = threads;
  }
  // Every op on all threads (one worker): one thread team for the whole run, whose threads wait
  // spinning between the ops' parallel loops instead of each loop opening an OpenMP region (a
  // one-image ResNet runs ~20 loops of a few microseconds), and whose cheaper hand-off lets
  // smaller ops split (kMinTeamParallelFlops). Not for a plan too small to split at all: the
  // team's own region would be its only cost (LeNet-5's one image, 0.85 MFLOP, whose ops
  // each ran on one thread: 0.0172 -> 0.0186 ms with a team).
  l.team = l.workers == 1 && flops_per_sample_ * static_cast<double>(l.sizes[0]) >= kMinTeamPlanFlops ? threads : 1;
  // The arena: what the convs keep (copies of their weights, folds, prepared weights), then
  // each worker's slots for the largest chunk; or, for a small batch split among a team, each
  // value in a place of its own (own_places). Values sharing slots hand cache lines from core
  // to core: a later value takes a slot whose lines the other core last wrote or read (the
  // ops split the work between the threads by rows, tiles or output channels, differently
  // from layer to layer), and its stores wait for those lines to come back. In places of
  // their own, each value's lines are written by the same thread from one run to the next.
  // The example ResNet on two threads, one image: its 150 KB of slots as 263 KB of own places,
  // 86.1-87.5 -> 83.2-84.3 us a run; three images 216.5-217.0 -> 212.7-213.8; two level
  // (bench/BEFORE_AFTER.md, seventeenth stop).
  l.largest = *std::max_element(l.sizes.begin(), l.sizes.end());
  if (places_ != Places::automatic) {
    l.own_places = places_ == Places::own;
    return l;
  }
  int64_t own = 0;
  l.own_places = l.team > 1 && places_elements(l.largest, true, &own) &&
                 own <= kOwnPlacesBytes / static_cast<int64_t>(sizeof(T));
  return l;
}

template <class T>
bool InferencePlan<T>::own_places(int64_t mb) const {
  if (!finished_) throw std::logic_error("inference plan: own_places() before finish()");
  if (mb < 1) throw std::invalid_argument("inference plan: the batch must have at least one sample");
  return run_layout(mb, false).own_places;
}

template <class T>
void InferencePlan<T>::run_ops(int64_t mb, const std::vector<const T*>& inputs, const std::vector<T*>& outputs,
                               const std::string& forced_conv, const OpClock* clock) const {
  if (!finished_) throw std::logic_error("inference plan: run() before finish()");
  if (mb < 1) throw std::invalid_argument("inference plan: the batch must have at least one sample");
  if (inputs.size() != inputs_.size() || outputs.size() != outputs_.size())
    throw std::invalid_argument("inference plan: wrong number of inputs or outputs");
  const RunLayout layout = run_layout(mb, clock != nullptr);
  const std::vector<int64_t>& sizes = layout.sizes;
  const int64_t chunks = static_cast<int64_t>(sizes.size()), largest = layout.largest;
  const int workers = layout.workers, team = layout.team;
  const bool own_places = layout.own_places;
  const int64_t kept_room = round_up(kept_elements_), per_worker = slot_elements(largest, own_places);
  int64_t elements = 0;
  if (__builtin_mul_overflow(per_worker, static_cast<int64_t>(workers), &elements) ||
      __builtin_add_overflow(elements, kept_room, &elements))
    throw std::bad_alloc();
  Arena arena;
  {
    std::lock_guard<std::mutex> lock(arenas_mutex_);
    auto it = std::find_if(free_arenas_.begin(), free_arenas_.end(), [&](const Arena& a) { return a.elements >= elements; });
    if (it != free_arenas_.end()) {
      arena = std::move(*it);
      free_arenas_.erase(it);
    }
  }
  if (arena.buffer.data() == nullptr && elements > 0) {
    if (static_cast<uint64_t>(elements) > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    arena.buffer = LargeBuffer(static_cast<std::size_t>(elements) * sizeof(T), /*huge_pages=*/true);
    arena.elements = elements;
  }
  if (arena.kept.size() != ops_.size()) arena.kept.assign(ops_.size(), Kept{});
  if (arena.digests.size() != kept_blocks_.size()) arena.digests.assign(kept_blocks_.size(), Digest{});
  T* base = static_cast<T*>(arena.buffer.data());  // 64-byte aligned: slots start on kAlign elements
  auto chunk_ios = [&](int64_t c, std::vector<const T*>* in, std::vector<T*>* out) {
    const int64_t first = chunk_first(c, chunks, mb);
    for (std::size_t k = 0; k < inputs.size(); ++k) (*in)[k] = inputs[k] + first * values_[inputs_[k]].size;
    for (std::size_t k = 0; k < outputs.size(); ++k) (*out)[k] = outputs[k] + first * values_[outputs_[k]].size;
  };
  // Each chunk size's algorithms and layouts, once a run (a batch has chunks of two sizes at
  // most): made before any op runs, from the shapes alone, so that every chunk of a size and
  // every op of a chunk see the same (the forward choices read no data: conv2d_algos.h).
  // (chunk_sizes: as equal as possible, so two sizes at most.) No heap memory where no value can
  // be blocked (chunk_layout's empty layout): LeNet-5's one-image run is ~12 us.
  std::array<std::pair<int64_t, ChunkLayout>, 2> layouts;
  int layout_count = 0;
  for (int64_t size : sizes) {
    if (std::any_of(layouts.begin(), layouts.begin() + layout_count, [&](const auto& l) { return l.first == size; }))
      continue;
    if (layout_count == 2) throw std::logic_error("inference plan: chunks of more than two sizes");
    layouts[static_cast<std::size_t>(layout_count++)] = {size, chunk_layout(size, forced_conv.c_str())};
  }
  auto layout_of = [&](int64_t size) -> const ChunkLayout& {
    for (int i = 0; i < layout_count; ++i)
      if (layouts[static_cast<std::size_t>(i)].first == size) return layouts[static_cast<std::size_t>(i)].second;
    throw std::logic_error("inference plan: no layout for a chunk size");
  };
  T* slots = base + kept_room;
  if (workers == 1) {
    auto all_chunks = [&]() {
      std::vector<const T*> in(inputs.size());
      std::vector<T*> out(outputs.size());
      // The first chunk's first op, run beside the compare where that pays (refresh_all_kept).
      // Not in timed runs: each op's figure is its own there.
      const std::function<void()> first_op = [&]() {
        std::vector<const T*> in0(inputs.size());
        std::vector<T*> out0(outputs.size());
        chunk_ios(0, &in0, &out0);
        run_chunk(sizes[0], base, arena.kept, slots, own_places, in0, out0, forced_conv.c_str(), layout_of(sizes[0]),
                  nullptr, 0, 1);
      };
      const bool ran_first =
          refresh_all_kept(largest, base, arena.kept, arena.digests, forced_conv.c_str(),
                           clock == nullptr ? &first_op : nullptr);
      for (int64_t c = 0; c < chunks; ++c) {
        chunk_ios(c, &in, &out);
        const int64_t size = sizes[static_cast<std::size_t>(c)];
        run_chunk(size, base, arena.kept, slots, own_places, in, out, forced_conv.c_str(), layout_of(size), clock,
                  c == 0 && ran_first ? 1 : 0);
      }
    };
    using Body = decltype(all_chunks);
    run_with_thread_team(team, [](void* body) { (*static_cast<Body*>(body))(); }, &all_chunks);
  } else {
    refresh_all_kept(largest, base, arena.kept, arena.digests, forced_conv.c_str());
    // An exception must not leave a parallel region: the first one is carried out of it.
    std::exception_ptr error;
    std::mutex error_mutex;
    parallel_for(workers, chunks, [&](int64_t c, int tid) {
      SerialKernels serial;
      try {
        std::vector<const T*> in(inputs.size());
        std::vector<T*> out(outputs.size());
        chunk_ios(c, &in, &out);
        const int64_t size = sizes[static_cast<std::size_t>(c)];
        run_chunk(size, base, arena.kept, slots + tid * per_worker, own_places, in, out, forced_conv.c_str(),
                  layout_of(size), nullptr);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
    if (error) std::rethrow_exception(error);
  }
  // Kept for the next run: fresh pages cost more than the arithmetic of a small batch (a
  // 10 MB arena faulted in again cost ~10% of a 64-image ResNet predict). Two at most (two
  // threads predicting at once), up to kKeepBytes each: larger batches' page faults are a small
  // part of their time, and a model must not hold a 2048-image batch's maps for its lifetime.
  constexpr int64_t kKeepBytes = int64_t{64} << 20;
  if (arena.buffer.data() != nullptr && arena.elements * static_cast<int64_t>(sizeof(T)) <= kKeepBytes) {
    std::lock_guard<std::mutex> lock(arenas_mutex_);
    if (free_arenas_.size() < 2) {
      free_arenas_.push_back(std::move(arena));
    } else {
      auto smallest = std::min_element(free_arenas_.begin(), free_arenas_.end(),
                                       [](const Arena& a, const Arena& b) { return a.elements < b.elements; });
      if (smallest->elements < arena.elements) *smallest = std::move(arena);
    }
  }
}

template class InferencePlan<float>;
template class InferencePlan<double>;

}  // namespace convforge
