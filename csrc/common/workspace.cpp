#include "common/workspace.h"

#include <cstdlib>
#include <new>

namespace convforge {
namespace {

struct Buffer {
  void* data = nullptr;
  std::size_t bytes = 0;
  ~Buffer() { std::free(data); }
};

thread_local Buffer t_buffer;

}  // namespace

void* thread_workspace(std::size_t bytes) {
  if (bytes == 0) bytes = kWorkspaceAlign;
  if (bytes > t_buffer.bytes) {
    const std::size_t rounded = (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
    void* fresh = std::aligned_alloc(kWorkspaceAlign, rounded);
    if (fresh == nullptr) throw std::bad_alloc();
    std::free(t_buffer.data);
    t_buffer.data = fresh;
    t_buffer.bytes = rounded;
  }
  return t_buffer.data;
}

std::size_t thread_workspace_bytes() { return t_buffer.bytes; }

}  // namespace convforge
