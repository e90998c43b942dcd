// ReLU with AVX-512F: 4 vectors per step, then one masked vector for the tail (no scalar loop,
// no read past the end).
#include "common/avx512.h"

#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/relu/relu_impl.h"

namespace convforge {
namespace {

// x where x > 0 or x is NaN (_CMP_NLE_UQ is true for unordered), else +0.
inline __m512 relu_vec(__m512 x) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NLE_UQ), x);
}
inline __m512 relu_grad_vec(__m512 dy, __m512 x) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), dy);
}
inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// One block [b, e) of each pass, its pointers as parameters (see relu_blocks).
void relu_fwd_block(int64_t b, int64_t e, const float* src, float* dst, bool streaming) {
  // A masked head up to dst's next 64-byte boundary: NumPy's buffers start 16 bytes past one,
  // and then every 64-byte store (and load, x being offset alike) straddles two cache lines
  // (LeNet's 64x16x10x10 tensor: 10.3 us misaligned, 7.3 us aligned).
  int64_t i = b;
  if (const int64_t a = aligned_start<64>(dst, b, e); a > i) {
    const __mmask16 m = tail_mask(a - i);
    _mm512_mask_storeu_ps(dst + i, m, relu_vec(_mm512_maskz_loadu_ps(m, src + i)));
    i = a;
  }
  if (streaming && reinterpret_cast<std::uintptr_t>(dst + i) % 64 == 0) {
    for (; i + 64 <= e; i += 64) {
      const __m512 x0 = _mm512_loadu_ps(src + i), x1 = _mm512_loadu_ps(src + i + 16);
      const __m512 x2 = _mm512_loadu_ps(src + i + 32), x3 = _mm512_loadu_ps(src + i + 48);
      _mm512_stream_ps(dst + i, relu_vec(x0));
      _mm512_stream_ps(dst + i + 16, relu_vec(x1));
      _mm512_stream_ps(dst + i + 32, relu_vec(x2));
      _mm512_stream_ps(dst + i + 48, relu_vec(x3));
    }
    _mm_sfence();  // streaming stores are weakly ordered: publish them before the block ends
  }
  for (; i + 64 <= e; i += 64) {
    const __m512 x0 = _mm512_loadu_ps(src + i), x1 = _mm512_loadu_ps(src + i + 16);
    const __m512 x2 = _mm512_loadu_ps(src + i + 32), x3 = _mm512_loadu_ps(src + i + 48);
    _mm512_storeu_ps(dst + i, relu_vec(x0));
    _mm512_storeu_ps(dst + i + 16, relu_vec(x1));
    _mm512_storeu_ps(dst + i + 32, relu_vec(x2));
    _mm512_storeu_ps(dst + i + 48, relu_vec(x3));
  }
  for (; i < e; i += 16) {
    const __mmask16 m = tail_mask(e - i);
    _mm512_mask_storeu_ps(dst + i, m, relu_vec(_mm512_maskz_loadu_ps(m, src + i)));
  }
}

void relu_bwd_block(int64_t b, int64_t e, const float* diff_dst, const float* src, float* diff_src, bool streaming) {
  int64_t i = b;
  if (const int64_t a = aligned_start<64>(diff_src, b, e); a > i) {  // masked head, as in relu_fwd
    const __mmask16 m = tail_mask(a - i);
    const __m512 g = relu_grad_vec(_mm512_maskz_loadu_ps(m, diff_dst + i), _mm512_maskz_loadu_ps(m, src + i));
    _mm512_mask_storeu_ps(diff_src + i, m, g);
    i = a;
  }
  if (streaming && reinterpret_cast<std::uintptr_t>(diff_src + i) % 64 == 0) {
    for (; i + 32 <= e; i += 32) {
      const __m512 g0 = relu_grad_vec(_mm512_loadu_ps(diff_dst + i), _mm512_loadu_ps(src + i));
      const __m512 g1 = relu_grad_vec(_mm512_loadu_ps(diff_dst + i + 16), _mm512_loadu_ps(src + i + 16));
      _mm512_stream_ps(diff_src + i, g0);
      _mm512_stream_ps(diff_src + i + 16, g1);
    }
    _mm_sfence();
  }
  for (; i + 32 <= e; i += 32) {
    const __m512 g0 = relu_grad_vec(_mm512_loadu_ps(diff_dst + i), _mm512_loadu_ps(src + i));
    const __m512 g1 = relu_grad_vec(_mm512_loadu_ps(diff_dst + i + 16), _mm512_loadu_ps(src + i + 16));
    _mm512_storeu_ps(diff_src + i, g0);
    _mm512_storeu_ps(diff_src + i + 16, g1);
  }
  for (; i < e; i += 16) {
    const __mmask16 m = tail_mask(e - i);
    const __m512 g = relu_grad_vec(_mm512_maskz_loadu_ps(m, diff_dst + i), _mm512_maskz_loadu_ps(m, src + i));
    _mm512_mask_storeu_ps(diff_src + i, m, g);
  }
}

}  // namespace

void relu_fwd__avx512(int64_t n, const float* src, float* dst) {
  const bool streaming = static_cast<double>(n) * 8.0 >= kStreamingBytes;
  relu_blocks(n, 8.0, [&](int64_t b, int64_t e) { relu_fwd_block(b, e, src, dst, streaming); });
}

void relu_bwd__avx512(int64_t n, const float* diff_dst, const float* src, float* diff_src) {
  const bool streaming = static_cast<double>(n) * 12.0 >= kStreamingBytes;
  relu_blocks(n, 12.0, [&](int64_t b, int64_t e) { relu_bwd_block(b, e, diff_dst, src, diff_src, streaming); });
}

}  // namespace convforge
