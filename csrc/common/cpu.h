// CPU feature detection and the instruction-set cap. Detected once; everything else asks here.
#pragma once

namespace convforge {

// Ordered: a kernel for ISA i runs on any CPU whose active ISA is >= i.
enum class Isa : int { ref = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "ref" | "avx2" | "avx512"; returns false for anything else.
bool parse_isa(const char* text, Isa* out);

// Best ISA that this CPU, its OS (saved vector state) and this build all support.
Isa detected_isa();
// min(detected_isa(), cap). The cap starts from $CONVFORGE_MAX_ISA (read once) and can be
// lowered or raised again by set_isa_cap, which tests use to run every path in one process.
Isa active_isa();
Isa isa_cap();
void set_isa_cap(Isa cap);
// Throws std::invalid_argument when $CONVFORGE_MAX_ISA is set to something unknown.
void init_isa_cap_from_env();

// One core's L2 cache in bytes as the OS reports it (glibc's sysconf, from CPUID), 0 where
// unknown; read once. Kernels may order their passes by it, never their arithmetic: the bits of
// a result do not depend on it.
long long l2_cache_bytes();
// Tests: take `bytes` (>= 0; 0: unknown) as the L2's size, or the detected size again (-1).
void set_l2_cache_bytes(long long bytes);

}  // namespace convforge
