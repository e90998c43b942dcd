// The digest with AVX2: each set of eight lanes is two registers (digest_impl.h defines the sums).
#include <immintrin.h>

#include "kernels/digest/digest_impl.h"

namespace convforge {
namespace {

using namespace digest_detail;

inline __m256i load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }

inline __m256i rotl(__m256i v) {  // AVX2 has no 64-bit rotate
  return _mm256_or_si256(_mm256_slli_epi64(v, kSumRotation), _mm256_srli_epi64(v, 64 - kSumRotation));
}

inline __m256i scramble(__m256i v, const uint64_t* key) {
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(v, _mm256_srli_epi64(v, 47)), load(key));
  const __m256i prime = _mm256_set1_epi64x(static_cast<long long>(kDigestPrime));
  return _mm256_add_epi64(_mm256_mul_epu32(x, prime), _mm256_slli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(x, 32), prime), 32));
}

void rounds(Lanes& acc, const unsigned char* p, int64_t n) {
  __m256i a0 = load(acc.a), a1 = load(acc.a + 4), b0 = load(acc.b), b1 = load(acc.b + 4);
  for (int64_t r = 0; r < n; ++r, p += kStripeBytes * kRoundStripes) {
#pragma GCC unroll 16
    for (int s = 0; s < kRoundStripes; ++s) {
      const __m256i w0 = load(p + s * kStripeBytes), w1 = load(p + s * kStripeBytes + 32);
      const __m256i x0 = _mm256_xor_si256(w0, load(kKeys.stripe[s])), x1 = _mm256_xor_si256(w1, load(kKeys.stripe[s] + 4));
      a0 = _mm256_add_epi64(a0, _mm256_mul_epu32(x0, _mm256_srli_epi64(x0, 32)));
      a1 = _mm256_add_epi64(a1, _mm256_mul_epu32(x1, _mm256_srli_epi64(x1, 32)));
      b0 = _mm256_add_epi64(rotl(b0), w0);
      b1 = _mm256_add_epi64(rotl(b1), w1);
    }
    a0 = scramble(a0, kKeys.round_a), a1 = scramble(a1, kKeys.round_a + 4);
    b0 = scramble(b0, kKeys.round_b), b1 = scramble(b1, kKeys.round_b + 4);
  }
  store(acc.a, a0), store(acc.a + 4, a1), store(acc.b, b0), store(acc.b + 4, b1);
}

}  // namespace

Digest digest__avx2(const unsigned char* data, int64_t bytes) { return digest_with(data, bytes, rounds); }

}  // namespace convforge
