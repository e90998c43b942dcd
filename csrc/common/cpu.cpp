#include "common/cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__linux__)
#include <unistd.h>
#endif

namespace convforge {
namespace {

Isa detect() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports checks the CPUID bits and, for AVX and AVX-512, that the OS saves
  // the wider registers (XGETBV): a kernel chosen here will not fault on a context switch.
  __builtin_cpu_init();
#if CONVFORGE_HAVE_AVX512
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return Isa::avx512;
#endif
#if CONVFORGE_HAVE_AVX2
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
#endif
  return Isa::ref;
}

long long detect_l2_bytes() {
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
  const long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return bytes > 0 ? bytes : 0;
#else
  return 0;
#endif
}

std::atomic<long long>& l2_override() {
  static std::atomic<long long> bytes{-1};
  return bytes;
}

std::atomic<int>& cap_storage() {
  static std::atomic<int> cap{static_cast<int>(Isa::avx512)};
  return cap;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::ref: return "ref";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

bool parse_isa(const char* text, Isa* out) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(text, isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  }
  return false;
}

Isa detected_isa() {
  static const Isa detected = detect();
  return detected;
}

Isa isa_cap() { return static_cast<Isa>(cap_storage().load()); }

void set_isa_cap(Isa cap) { cap_storage().store(static_cast<int>(cap)); }

Isa active_isa() {
  const int cap = cap_storage().load();
  const int det = static_cast<int>(detected_isa());
  return static_cast<Isa>(cap < det ? cap : det);
}

long long l2_cache_bytes() {
  const long long forced = l2_override().load(std::memory_order_relaxed);
  if (forced >= 0) return forced;
  static const long long detected = detect_l2_bytes();
  return detected;
}

void set_l2_cache_bytes(long long bytes) { l2_override().store(bytes < 0 ? -1 : bytes, std::memory_order_relaxed); }

void init_isa_cap_from_env() {
  const char* env = std::getenv("CONVFORGE_MAX_ISA");
  if (env == nullptr || *env == '\0') return;
  Isa cap;
  if (!parse_isa(env, &cap)) {
    throw std::invalid_argument(std::string("CONVFORGE_MAX_ISA must be one of ref, avx2, avx512; got '") +
                                env + "'");
  }
  set_isa_cap(cap);
}

}  // namespace convforge
