#include "kernels/conv2d/conv2d_winograd_mode.h"

#include <atomic>

namespace convforge {
namespace {

std::atomic<WinogradMode>& mode_storage() {
  static std::atomic<WinogradMode> mode{WinogradMode::automatic};
  return mode;
}

}  // namespace

WinogradMode winograd_mode() { return mode_storage().load(std::memory_order_relaxed); }

void set_winograd_mode(WinogradMode mode) { mode_storage().store(mode, std::memory_order_relaxed); }

}  // namespace convforge
