// Every compute kernel convforge has, named <op>_<direction>__<isa> (XNNPACK's convention).
// Kernels trust their arguments: shapes were checked by complete_conv_shape/check_pool_shape/
// check_dense_shape,
// pointers are valid and C-contiguous, outputs do not alias inputs unless stated.
#pragma once

#include <cstdint>

#include "common/shapes.h"
#include "kernels/channel_ops.h"  // batchnorm, global pooling, depthwise conv2d

namespace convforge {

// ---- conv2d: per pass, a best-first list of algorithms (kernels/conv2d/conv2d_algos.h). ---------
enum class ConvPass : int { fwd = 0, bwd_data = 1, bwd_weights = 2 };
constexpr int kConvPasses = 3;
const char* conv_pass_name(ConvPass pass);  // "fwd", "bwd_data", "bwd_weights"

// The tensors of one conv2d call; each pass reads and writes its own and ignores the rest:
//   fwd          src, wei, bias (may be null), residual (may be null)  -> dst
//   bwd_data     diff_dst, wei                                         -> diff_src
//   bwd_weights  diff_dst, src                                         -> diff_wei, diff_bias (may be null)
// An algorithm's data-dependent condition (finite weights or inputs) reads them; where the
// pointer it reads is null (a shape-only query), the condition counts as met.
// `residual` (dst's shape, not aliasing dst): a residual block's shortcut, added before the ReLU:
// dst = post((conv + bias) + residual), the sums rounded as a separate Add would round them.
template <class T>
struct ConvTensors {
  const T* src = nullptr;
  const T* wei = nullptr;
  const T* bias = nullptr;
  const T* residual = nullptr;
  const T* diff_dst = nullptr;
  T* dst = nullptr;
  T* diff_src = nullptr;
  T* diff_wei = nullptr;
  T* diff_bias = nullptr;
  // Forward only. A caller that runs the same weights many times (an inference plan) may keep
  // what the algorithm's `prepare` makes of them (Winograd's transformed filters) and pass it
  // here; `keeps_prepared` tells the default choice that it does, so that an algorithm whose
  // preparation dominates a small batch may pay. Null: the algorithm prepares them itself.
  const T* prepared = nullptr;
  bool keeps_prepared = false;
  // Forward only: src, and dst with the residual, in channel blocks of 16 (NCHW16c, oneDNN's
  // nChw16c): image n's channel c, pixel p at ((n * C/16 + c/16) * H*W + p) * 16 + c % 16, C a
  // multiple of 16. An inference plan keeps the values between its convs so: split among threads
  // by rows, each thread's rows are one run of memory per 16 channels, where in NCHW they are a
  // piece of every plane and the other core's prefetchers take its lines (bench/BEFORE_AFTER.md,
  // forty-second stop). Only for an algorithm whose `blocked` says it takes them.
  bool src_blocked = false;
  bool dst_blocked = false;
};

// One algorithm of one pass. `plan` is the completed ConvShape (complete_conv_shape), built
// once per call and passed down unchanged.
template <class T>
struct ConvAlgo {
  const char* name;
  bool (*applies)(const ConvShape& plan, const ConvTensors<T>& t);  // computes this problem exactly
  bool (*pays)(const ConvShape& plan, const ConvTensors<T>& t);    // null: always; the default choice skips it where false
  void (*run)(const ConvShape& plan, const ConvTensors<T>& t);
  // Forward algorithms that transform the weights before use (null: none): the elements of T
  // that the transform of `plan`'s weights takes (0 where this problem has none; it never
  // depends on plan.mb), and the transform itself, of OIHW `wei` into `prepared`.
  int64_t (*prepared_size)(const ConvShape& plan) = nullptr;
  void (*prepare)(const ConvShape& plan, const T* wei, T* prepared) = nullptr;
  // Whether it runs `plan` with the given ConvTensors::src_blocked / dst_blocked (null: never
  // blocked; every algorithm takes NCHW). The same arithmetic either way: the same bits.
  bool (*blocked)(const ConvShape& plan, bool src, bool dst) = nullptr;
};

template <class T>
struct ConvAlgoList {
  const ConvAlgo<T>* algos;  // best first; the last one applies to every problem
  int count;
};

template <class T>
ConvAlgoList<T> conv2d_algorithms__ref(ConvPass pass);  // float and double
ConvAlgoList<float> conv2d_algorithms__avx2(ConvPass pass);
ConvAlgoList<float> conv2d_algorithms__avx512(ConvPass pass);

// ---- dense (Keras's Dense, on the gemm micro-kernels). bias / diff_bias may be null. -----------
#define CONVFORGE_DECLARE_DENSE(ISA, T)                                                           \
  void dense_fwd__##ISA(const DenseShape& s, const T* src, const T* wei, const T* bias, T* dst);    \
  void dense_bwd_data__##ISA(const DenseShape& s, const T* diff_dst, const T* wei, T* diff_src);    \
  void dense_bwd_weights__##ISA(const DenseShape& s, const T* diff_dst, const T* src, T* diff_wei, \
                                T* diff_bias);
CONVFORGE_DECLARE_DENSE(ref, float)
CONVFORGE_DECLARE_DENSE(ref, double)
CONVFORGE_DECLARE_DENSE(avx2, float)
CONVFORGE_DECLARE_DENSE(avx512, float)
#undef CONVFORGE_DECLARE_DENSE

// ---- max_pool2d. workspace = argmax (flat position in each input plane), may be null in fwd. --
template <class T>
void maxpool2d_fwd__ref(const PoolShape& s, const T* src, T* dst, int64_t* workspace);
template <class T>
// gate may be null; else dx only where gate > 0: the gradient of a ReLU whose output (gate) the
// pool read, fused into the scatter (bit-identical to relu_bwd applied to the result).
// Never writes outside dx: a plane whose indices are not all in [0, ih*iw) is left zero, and the
// first such plane (N*C order) is returned; -1 when every index is valid.
int64_t maxpool2d_bwd__ref(const PoolShape& s, const T* diff_dst, const int64_t* workspace, const T* gate,
                           T* diff_src);
// SIMD forward for 2x2 windows with stride 2 and no padding (maxpool2d_2x2_s2_applies).
bool maxpool2d_2x2_s2_applies(const PoolShape& s);
void maxpool2d_fwd__avx2(const PoolShape& s, const float* src, float* dst, int64_t* workspace);
void maxpool2d_fwd__avx512(const PoolShape& s, const float* src, float* dst, int64_t* workspace);

// ---- relu over n elements. dst may equal src (in place). ------------------------------------
#define CONVFORGE_DECLARE_RELU(ISA, T)                                    \
  void relu_fwd__##ISA(int64_t n, const T* src, T* dst);                  \
  void relu_bwd__##ISA(int64_t n, const T* diff_dst, const T* src, T* diff_src);
CONVFORGE_DECLARE_RELU(ref, float)
CONVFORGE_DECLARE_RELU(ref, double)
CONVFORGE_DECLARE_RELU(avx2, float)
CONVFORGE_DECLARE_RELU(avx512, float)
#undef CONVFORGE_DECLARE_RELU

// ---- dst = a + b over n elements (a training step's residual sums and fan-out gradients), with
// relu: max(a + b, 0) as relu_fwd (the ReLU after a residual Add, fused); with a gate (may be
// null): a + b where gate > 0, else 0, as relu_bwd of the sum (a fan-out gradient summed and
// passed through that ReLU in one pass). dst may equal a, b or gate. One portable body: the pass
// is bound by memory, not by the vector width (SSE2 already moves 16 bytes per add); what it
// needs is threads, which NumPy's add lacks.
void add__ref(int64_t n, const float* a, const float* b, const float* gate, bool relu, float* dst);
void add__ref(int64_t n, const double* a, const double* b, const double* gate, bool relu, double* dst);

// ---- GELU (kernels/gelu/): erf of each value in double (the C library's); the exact GELU
// and its gradient dy * (Phi(x) + x phi(x)): float32 within 0.51 ulp, the same bits on every
// path (gelu_impl.h), float64 with the C library's erf. dst may equal src.
void erf__ref(int64_t n, const float* src, double* dst);
void erf__ref(int64_t n, const double* src, double* dst);
#define CONVFORGE_DECLARE_GELU(ISA, T)                   \
  void gelu_fwd__##ISA(int64_t n, const T* src, T* dst); \
  void gelu_bwd__##ISA(int64_t n, const T* diff_dst, const T* src, T* diff_src);
CONVFORGE_DECLARE_GELU(ref, float)
CONVFORGE_DECLARE_GELU(ref, double)
CONVFORGE_DECLARE_GELU(avx2, float)
CONVFORGE_DECLARE_GELU(avx512, float)
#undef CONVFORGE_DECLARE_GELU

// ---- softmax over each of `rows` rows of n values (the last axis). dst may equal src. -------
template <class T>
void softmax_fwd__ref(int64_t rows, int64_t n, const T* src, T* dst);

// ---- 128-bit digest of `bytes` bytes (kernels/digest/digest_impl.h): the same value on every
// ISA. The inference plan keeps one per block of a conv's weights, to see edits made in place.
struct Digest {
  uint64_t lo = 0, hi = 0;
  friend bool operator==(const Digest& a, const Digest& b) { return a.lo == b.lo && a.hi == b.hi; }
  friend bool operator!=(const Digest& a, const Digest& b) { return !(a == b); }
};
Digest digest__ref(const unsigned char* data, int64_t bytes);
Digest digest__avx2(const unsigned char* data, int64_t bytes);
Digest digest__avx512(const unsigned char* data, int64_t bytes);

// ---- peak probe: iters x chains x (vector width) fused multiply-adds; returns a checksum. ------
float fma_probe__ref(int64_t iters);
float fma_probe__avx2(int64_t iters);
float fma_probe__avx512(int64_t iters);
// Floats per vector and chains of each probe (flops per iteration = chains x lanes x 2).
constexpr int kProbeLanesRef = 1, kProbeLanesAvx2 = 8, kProbeLanesAvx512 = 16;
constexpr int kProbeChainsRef = 12, kProbeChainsAvx2 = 12, kProbeChainsAvx512 = 16;

}  // namespace convforge
