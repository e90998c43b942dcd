// Scratch memory for kernels, reused across calls instead of reallocated per call.
#pragma once

#include <cstddef>

namespace convforge {

constexpr std::size_t kWorkspaceAlign = 64;

// A 64-byte aligned buffer of at least `bytes`, owned by the calling thread and valid until
// that thread's next call. Concurrent Python threads each get their own. Grows, never shrinks.
void* thread_workspace(std::size_t bytes);
// Bytes currently held by the calling thread's workspace and its thread_areas (for build_info and
// tests).
std::size_t thread_workspace_bytes();

// The areas of a kernel's parallel loop, one per thread: thread tid's per_thread bytes at
// of(tid), 64-byte aligned, owned by the calling thread like thread_workspace (a buffer of its
// own, apart from it) and valid until that thread's next call. Each thread's area starts at the
// same address from one call to the next, whatever the kernel, wherever per_thread is at most
// kStableThreadArea: carved one after another from the workspace, as they were, thread 1's area
// of one layer lay over thread 0's of the layer before, and each layer's scratch writes waited
// for those lines to come over from the other core (the example ResNet's one image on two
// threads: 84.7-85.4 -> 82.3-83.2 us a plan run; bench/BEFORE_AFTER.md, seventeenth stop).
constexpr std::size_t kStableThreadArea = std::size_t{256} << 10;
struct ThreadAreas {
  char* base;
  std::size_t stride;  // bytes from one thread's area to the next
  char* of(int tid) const { return base + static_cast<std::size_t>(tid) * stride; }
};
ThreadAreas thread_areas(std::size_t per_thread, int threads);

// A buffer of its own (the thread workspaces, the inference plan's arenas): from 1 MiB a memory
// mapping (returned to the system when freed; see workspace.cpp), below aligned_alloc. With
// `huge_pages`, transparent huge pages are asked for from 4 MiB, as NumPy does for its arrays
// (a 150 MB plan arena on 4 KiB pages cost a 1024-image ResNet predict ~10% more than NumPy's
// arrays, in page faults and TLB misses). 64-byte aligned.
class LargeBuffer {
 public:
  LargeBuffer() = default;
  explicit LargeBuffer(std::size_t bytes, bool huge_pages = false);  // std::bad_alloc if the memory is not there
  ~LargeBuffer() { release(); }
  LargeBuffer(LargeBuffer&& other) noexcept { take(other); }
  LargeBuffer& operator=(LargeBuffer&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void release() noexcept;
  void take(LargeBuffer& other) noexcept {
    data_ = other.data_, bytes_ = other.bytes_, mapped_ = other.mapped_;
    other.data_ = nullptr, other.bytes_ = 0, other.mapped_ = false;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  bool mapped_ = false;
};

// Rounds a count of T up so that consecutive slices stay 64-byte aligned.
template <class T>
constexpr std::size_t aligned_count(std::size_t n) {
  const std::size_t per_line = kWorkspaceAlign / sizeof(T);
  return (n + per_line - 1) / per_line * per_line;
}

}  // namespace convforge
