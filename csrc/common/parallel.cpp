#include "common/parallel.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace convforge {
namespace {

int env_threads(const char* name) {
  const char* env = std::getenv(name);
  if (env == nullptr) return 0;
  // OMP_NUM_THREADS may be a list ("4,2") for nested levels; the first entry is ours.
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (end == env || n < 1 || n > 4096) return 0;
  return static_cast<int>(n);
}

int affinity_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  return 1;
}

// CPU quota of the container, rounded up: 150000/100000 -> 2. 0 when unlimited or unknown.
int cgroup_quota_cpus() {
  std::ifstream v2("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (v2 >> quota >> period) {
    if (quota == "max" || period <= 0) return 0;
    return static_cast<int>(std::ceil(std::stod(quota) / static_cast<double>(period)));
  }
  std::ifstream q1("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p1("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  long long q = 0;
  if (q1 >> q && p1 >> period && q > 0 && period > 0) {
    return static_cast<int>((q + period - 1) / period);
  }
  return 0;
}

std::atomic<bool> g_forked_child{false};

void mark_forked_child() { g_forked_child.store(true); }

struct AtforkRegistration {
  AtforkRegistration() {
#if defined(__linux__)
    pthread_atfork(nullptr, nullptr, &mark_forked_child);
#endif
  }
};
const AtforkRegistration g_atfork_registration;

std::atomic<int>& threads_storage() {
  static std::atomic<int> threads{default_num_threads()};
  return threads;
}

}  // namespace

int default_num_threads() {
#if CONVFORGE_OPENMP
  if (int n = env_threads("CONVFORGE_NUM_THREADS")) return n;
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  int n = affinity_cpus();
  const int quota = cgroup_quota_cpus();
  if (quota > 0 && quota < n) n = quota;
  return n;
#else
  return 1;
#endif
}

bool forked_child() { return g_forked_child.load(); }

int num_threads() {
  if (g_forked_child.load()) return 1;
  return threads_storage().load();
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#if CONVFORGE_OPENMP
  threads_storage().store(n);
#endif
}

}  // namespace convforge
