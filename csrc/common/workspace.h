// Scratch memory for kernels, reused across calls instead of reallocated per call.
#pragma once

#include <cstddef>

namespace convforge {

constexpr std::size_t kWorkspaceAlign = 64;

// A 64-byte aligned buffer of at least `bytes`, owned by the calling thread and valid until
// that thread's next call. Concurrent Python threads each get their own. Grows, never shrinks.
void* thread_workspace(std::size_t bytes);
// Bytes currently held by the calling thread's workspace (for build_info and tests).
std::size_t thread_workspace_bytes();

// Rounds a count of T up so that consecutive slices stay 64-byte aligned.
template <class T>
constexpr std::size_t aligned_count(std::size_t n) {
  const std::size_t per_line = kWorkspaceAlign / sizeof(T);
  return (n + per_line - 1) / per_line * per_line;
}

}  // namespace convforge
