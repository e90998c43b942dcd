// The 128-bit digest the inference plan keeps of each block of a conv's weights, so that a run
// can tell whether they were changed in place without a byte copy to compare against (the
// copy doubled the bytes each run read, and with them the run's footprint no longer fitted in
// L2: see csrc/plan/inference_plan.h).
//
// Defined on bytes, as integer arithmetic on 64-bit little-endian words, so every ISA's kernel
// gives the same digest (the ISA cap may change between two runs of a plan). The bytes go in
// 64-byte stripes of eight words w[0..7]; lane j of two sets of eight 64-bit accumulators takes
//     x = w[j] ^ key[s][j];   a[j] += lo32(x) * hi32(x);   b[j] = rotl(b[j], 23) + w[j]
// where s counts the stripes of a 1 KiB round (16 keys: two stripes swapped within a round
// change the products); after each round every lane of both is scrambled by a bijection,
//     a[j] = (a[j] ^ (a[j] >> 47) ^ round_key[j]) * kDigestPrime      (b[j] likewise)
// so that the order of the rounds counts too. The digest is (a's lanes folded, b's lanes
// folded), each with the length, every fold step a bijection of its lane. A change confined
// to one word changes b[j] in its stripe, and every step after that is a bijection of b[j]: the
// digest's second half always changes. The rotation is there for pairs of changes: with a
// plain sum, two sign flips of float64 weights in the same lane of a round (each adds 2^63 to
// its word) cancelled in b, and a then missed them once in 2^33 (found by review). A tail
// shorter than a stripe is zero-padded; the length keeps a block apart from its padded self.
// This is not a cryptographic hash: a change crafted against these fixed keys could go unseen;
// an accidental one of several words (training, set_weights, a user's edit) goes unseen only if
// both halves collide.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"

namespace convforge {
// Internal linkage, as every *_impl.h included by several ISA sources: an inline function with
// external linkage compiled with -mavx2 in one and plain in another is one symbol, and the
// linker may keep the AVX2 copy for the portable kernel (it did in a Debug build: SIGILL on a
// CPU without AVX2).
namespace {
namespace digest_detail {

constexpr int kLanes = 8;
constexpr int kStripeBytes = 64;
constexpr int kRoundStripes = 16;
constexpr uint64_t kDigestPrime = 0x9E3779B1u;  // 32-bit: a 64 x 32 multiply is two lo32 products
constexpr int kSumRotation = 23;  // odd: a bit moved r * d places by d < 64 stripes never comes back

struct Keys {
  uint64_t stripe[kRoundStripes][kLanes];
  uint64_t round_a[kLanes], round_b[kLanes];
  uint64_t seed_a[kLanes], seed_b[kLanes];
};

// SplitMix64's step: a fixed, well-mixed sequence of constants.
constexpr uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr Keys make_keys() {
  Keys k{};
  uint64_t state = 0x636F6E76666F7267ull;  // "convforg"
  for (auto& stripe : k.stripe)
    for (uint64_t& v : stripe) v = splitmix(state);
  for (uint64_t& v : k.round_a) v = splitmix(state);
  for (uint64_t& v : k.round_b) v = splitmix(state);
  for (uint64_t& v : k.seed_a) v = splitmix(state);
  for (uint64_t& v : k.seed_b) v = splitmix(state);
  return k;
}

inline constexpr Keys kKeys = make_keys();

// The two sets of accumulators.
struct Lanes {
  uint64_t a[kLanes], b[kLanes];
};

// One stripe into the accumulators, portably (the reference kernel; the SIMD ones match it).
inline void stripe_ref(Lanes& acc, const unsigned char* p, const uint64_t key[kLanes]) {
  uint64_t w[kLanes];
  std::memcpy(w, p, sizeof w);  // the words as the host stores them: x86-64 and aarch64 are little-endian
  for (int j = 0; j < kLanes; ++j) {
    const uint64_t x = w[j] ^ key[j];
    acc.a[j] += (x & 0xFFFFFFFFu) * (x >> 32);
    acc.b[j] = ((acc.b[j] << kSumRotation) | (acc.b[j] >> (64 - kSumRotation))) + w[j];
  }
}

inline uint64_t scramble_one(uint64_t v, uint64_t key) { return (v ^ (v >> 47) ^ key) * kDigestPrime; }

inline void scramble_ref(Lanes& acc) {
  for (int j = 0; j < kLanes; ++j) {
    acc.a[j] = scramble_one(acc.a[j], kKeys.round_a[j]);
    acc.b[j] = scramble_one(acc.b[j], kKeys.round_b[j]);
  }
}

inline uint64_t fmix64(uint64_t z) {
  z = (z ^ (z >> 33)) * 0xFF51AFD7ED558CCDull;
  z = (z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53ull;
  return z ^ (z >> 33);
}

// The whole digest, given how to take full rounds of stripes (16 x 64 bytes) into the
// accumulators: `rounds(acc, p, n)` takes n rounds from p, scrambling after each. The stripes
// after the last full round and the zero-padded tail go portably (at most a round's worth),
// then both sets are scrambled and each is folded with the length.
template <class Rounds>
Digest digest_with(const unsigned char* p, int64_t bytes, Rounds&& rounds) {
  Lanes acc;
  for (int j = 0; j < kLanes; ++j) acc.a[j] = kKeys.seed_a[j], acc.b[j] = kKeys.seed_b[j];
  constexpr int64_t kRoundBytes = int64_t{kStripeBytes} * kRoundStripes;
  const int64_t full_rounds = bytes / kRoundBytes;
  rounds(acc, p, full_rounds);
  p += full_rounds * kRoundBytes;
  int64_t rest = bytes - full_rounds * kRoundBytes;
  int s = 0;
  for (; rest >= kStripeBytes; ++s, p += kStripeBytes, rest -= kStripeBytes) stripe_ref(acc, p, kKeys.stripe[s]);
  if (rest > 0) {
    unsigned char pad[kStripeBytes] = {};
    std::memcpy(pad, p, static_cast<std::size_t>(rest));
    stripe_ref(acc, pad, kKeys.stripe[s]);
  }
  scramble_ref(acc);
  // h = (h ^ lane) * odd, then h ^= h >> 32: a bijection of each lane, as fmix64 at the end (3
  // multiplies in a chain per lane were a third of a 16 KiB block's time). The shift brings the
  // top bits down: without it two lanes that differ in bit 63 alone cancelled.
  uint64_t lo = static_cast<uint64_t>(bytes), hi = ~static_cast<uint64_t>(bytes);
  for (int j = 0; j < kLanes; ++j) {
    lo = (lo ^ acc.a[j]) * 0x9FB21C651E98DF25ull;
    lo ^= lo >> 32;
    hi = (hi ^ acc.b[j]) * 0xD6E8FEB86659FD93ull;
    hi ^= hi >> 32;
  }
  return Digest{fmix64(lo), fmix64(hi)};
}

inline Digest digest_ref_impl(const unsigned char* p, int64_t bytes) {
  return digest_with(p, bytes, [](Lanes& acc, const unsigned char* q, int64_t n) {
    for (int64_t r = 0; r < n; ++r) {
      for (int s = 0; s < kRoundStripes; ++s) stripe_ref(acc, q + (r * kRoundStripes + s) * kStripeBytes, kKeys.stripe[s]);
      scramble_ref(acc);
    }
  });
}

}  // namespace digest_detail
}  // namespace
}  // namespace convforge
