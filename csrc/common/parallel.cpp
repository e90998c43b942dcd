#include "common/parallel.h"

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

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

namespace {

// One team's shared state. The body's thread posts a job (the fields below, then a new
// generation); the others spin on the generation, run their share and count themselves done.
struct ThreadTeam {
  int size = 1;
  std::atomic<uint64_t> generation{0};
  std::atomic<int> done{0};
  std::atomic<bool> stop{false};
  detail::TeamItems run_items = nullptr;
  void* ctx = nullptr;
  int64_t items = 0;
  int threads = 0;
  detail::FirstError error;  // a waiting thread's exception from its share of a job
};

thread_local ThreadTeam* t_team = nullptr;  // on the body's thread, outside jobs

// Runs a share of a job's items on the body's thread: t_team cleared meanwhile (what the items
// call runs on this thread alone, as inside an OpenMP region), restored however it ends.
struct TeamShare {
  ThreadTeam* team;
  SerialKernels serial;
  explicit TeamShare(ThreadTeam* t) : team(t) { t_team = nullptr; }
  ~TeamShare() { t_team = team; }
  TeamShare(const TeamShare&) = delete;
  TeamShare& operator=(const TeamShare&) = delete;
};

// One step of a wait for another thread of the team. After 4096 pauses (~70 us on Zen 4, ~150
// on recent Intel cores) it yields the CPU each step: with more threads than free CPUs (another
// process busy, a CPU quota) the thread waited for may need this one's CPU to run at all.
inline void spin_wait(int* spins) {
  constexpr int kPausesBeforeYield = 1 << 12;
  if (*spins < kPausesBeforeYield) {
    ++*spins;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    return;
  }
  std::this_thread::yield();
}

// Thread tid's items out of `items` on `threads` threads: OpenMP's schedule(static), a
// contiguous range each, the first items % threads ranges one longer.
void static_range(int64_t items, int threads, int tid, int64_t* begin, int64_t* end) {
  const int64_t q = items / threads, r = items % threads;
  *begin = tid * q + (tid < r ? tid : r);
  *end = *begin + q + (tid < r ? 1 : 0);
}

}  // namespace

bool detail::thread_team_available() { return t_team != nullptr; }

detail::FirstError::FirstError() noexcept : failed_(false) {}
detail::FirstError::~FirstError() = default;

void detail::FirstError::keep() noexcept {
  bool expected = false;
  if (failed_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) error_ = std::current_exception();
}

bool detail::FirstError::failed() const noexcept { return failed_.load(std::memory_order_relaxed); }

std::exception_ptr detail::FirstError::take() noexcept {
  if (!failed_.load(std::memory_order_acquire)) return nullptr;
  std::exception_ptr error = error_;
  error_ = nullptr;
  failed_.store(false, std::memory_order_relaxed);
  return error;
}

void detail::FirstError::rethrow() {
  if (std::exception_ptr error = take()) std::rethrow_exception(error);
}

namespace {
thread_local int64_t t_parallel_loops = 0;
}  // namespace

void detail::note_parallel_loop() noexcept { ++t_parallel_loops; }

int64_t parallel_loops() { return t_parallel_loops; }

void detail::thread_team_run(int threads, int64_t items, TeamItems run_items, void* ctx) {
  ThreadTeam* team = t_team;
  if (threads > team->size) threads = team->size;
  if (threads > items) threads = static_cast<int>(items < 1 ? 1 : items);
  int64_t begin = 0, end = 0;
  if (threads <= 1) {
    TeamShare share(team);
    run_items(ctx, 0, items, 0);
    return;
  }
  note_parallel_loop();
  team->run_items = run_items;
  team->ctx = ctx;
  team->items = items;
  team->threads = threads;
  team->done.store(0, std::memory_order_relaxed);
  team->generation.fetch_add(1, std::memory_order_release);
  static_range(items, threads, 0, &begin, &end);
  std::exception_ptr error;
  try {
    TeamShare share(team);
    run_items(ctx, begin, end, 0);
  } catch (...) {
    error = std::current_exception();  // raised once the others are done with ctx
  }
  // Every thread of the team acknowledges every job, those without items too: no thread can
  // then still be reading this job's fields when the next one is posted.
  int spins = 0;
  while (team->done.load(std::memory_order_acquire) != team->size - 1) spin_wait(&spins);
  const std::exception_ptr theirs = team->error.take();
  if (error) std::rethrow_exception(error);  // this thread's own first
  if (theirs) std::rethrow_exception(theirs);
}

void run_with_thread_team(int threads, void (*body)(void*), void* ctx) {
#if CONVFORGE_OPENMP
  if (threads > 1 && !t_serial && !g_forked_child.load() && t_team == nullptr) {
    ThreadTeam team;
    std::exception_ptr error;
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num();
      if (tid == 0) {
        team.size = omp_get_num_threads();
        t_team = &team;
        try {
          body(ctx);
        } catch (...) {
          error = std::current_exception();
        }
        t_team = nullptr;
        team.stop.store(true, std::memory_order_release);
      } else {
        SerialKernels serial;
        uint64_t seen = 0;
        int spins = 0;
        for (;;) {
          const uint64_t g = team.generation.load(std::memory_order_acquire);
          if (g == seen) {
            if (team.stop.load(std::memory_order_acquire)) break;
            spin_wait(&spins);
            continue;
          }
          seen = g;
          spins = 0;
          if (tid < team.threads) {
            int64_t begin = 0, end = 0;
            static_range(team.items, team.threads, tid, &begin, &end);
            try {
              team.run_items(team.ctx, begin, end, tid);
            } catch (...) {
              team.error.keep();  // rethrown by the body's thread (thread_team_run)
            }
          }
          team.done.fetch_add(1, std::memory_order_release);
        }
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#endif
  (void)threads;
  body(ctx);
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#if CONVFORGE_OPENMP
  threads_storage().store(n);
#endif
}

}  // namespace convforge
