#include "common/parallel.h"

#include <atomic>
#include <cctype>
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

// A thread count from the environment, 0 if unset or invalid. CONVFORGE_NUM_THREADS must be a
// plain number (convforge/__init__.py warns when it is not, with the same rule);
// OMP_NUM_THREADS may be a list ("4,2") for nested levels, whose first entry is ours.
int env_threads(const char* name, bool list_allowed) {
  const char* env = std::getenv(name);
  if (env == nullptr) return 0;
  const char* start = env;
  while (std::isspace(static_cast<unsigned char>(*start))) ++start;
  if (!std::isdigit(static_cast<unsigned char>(*start))) return 0;
  char* end = nullptr;
  const long n = std::strtol(start, &end, 10);
  while (std::isspace(static_cast<unsigned char>(*end))) ++end;
  if (!list_allowed && *end != '\0') return 0;
  if (n < 1 || n > 4096) return 0;
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
thread_local bool t_serial = false;  // SerialKernels

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
  if (int n = env_threads("CONVFORGE_NUM_THREADS", false)) return n;
  if (int n = env_threads("OMP_NUM_THREADS", true)) return n;
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
  if (t_serial || g_forked_child.load()) return 1;
  return threads_storage().load();
}

SerialKernels::SerialKernels() : previous_(t_serial) { t_serial = true; }
SerialKernels::~SerialKernels() { t_serial = previous_; }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#if CONVFORGE_OPENMP
  threads_storage().store(n);
#endif
}

}  // namespace convforge
