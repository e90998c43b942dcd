#include "common/workspace.h"

#include <cstdlib>
#include <new>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define CONVFORGE_HAVE_MMAP 1
#endif

namespace convforge {
namespace {

// From this size a workspace is its own memory mapping, not a malloc block. A malloc'd block
// of a thread that exits goes back to that thread's malloc arena (glibc keeps up to 8 per
// core), where it stays resident: short-lived threads running Winograd-sized (2 MB) problems
// grew the process by a few MB each until the arenas were all populated. A mapping is
// returned to the system when its thread ends.
constexpr std::size_t kMapFrom = std::size_t{1} << 20;

thread_local LargeBuffer t_buffer;
thread_local LargeBuffer t_areas;  // thread_areas'

}  // namespace

void* thread_workspace(std::size_t bytes) {
  if (bytes > t_buffer.bytes() || t_buffer.data() == nullptr) {
    LargeBuffer fresh(bytes == 0 ? kWorkspaceAlign : bytes);  // before the old one goes: bad_alloc keeps it
    t_buffer = std::move(fresh);
  }
  return t_buffer.data();
}

std::size_t thread_workspace_bytes() { return t_buffer.bytes() + t_areas.bytes(); }

ThreadAreas thread_areas(std::size_t per_thread, int threads) {
  std::size_t stride = (per_thread + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
  if (stride < kStableThreadArea) stride = kStableThreadArea;
  std::size_t bytes = 0;
  if (threads < 1 || __builtin_mul_overflow(stride, static_cast<std::size_t>(threads), &bytes)) throw std::bad_alloc();
  if (bytes > t_areas.bytes() || t_areas.data() == nullptr) {
    LargeBuffer fresh(bytes);  // before the old one goes: bad_alloc keeps it
    t_areas = std::move(fresh);
  }
  return {static_cast<char*>(t_areas.data()), stride};
}

LargeBuffer::LargeBuffer(std::size_t bytes, bool huge_pages) {
  const std::size_t rounded = (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
#ifdef CONVFORGE_HAVE_MMAP
  if (rounded >= kMapFrom) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (huge_pages && rounded >= (std::size_t{4} << 20)) madvise(p, rounded, MADV_HUGEPAGE);  // may be ignored
#endif
    data_ = p, bytes_ = rounded, mapped_ = true;
    return;
  }
#endif
  data_ = std::aligned_alloc(kWorkspaceAlign, rounded == 0 ? kWorkspaceAlign : rounded);
  if (data_ == nullptr) throw std::bad_alloc();
  bytes_ = rounded;
}

void LargeBuffer::release() noexcept {
  if (data_ == nullptr) return;
#ifdef CONVFORGE_HAVE_MMAP
  if (mapped_) {
    munmap(data_, bytes_);
    data_ = nullptr;
    return;
  }
#endif
  std::free(data_);
  data_ = nullptr;
}

}  // namespace convforge
