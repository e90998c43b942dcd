#include "common/parallel.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace convforge {
namespace {

#if CONVFORGE_OPENMP  // default_num_threads' sources: a build without OpenMP runs one thread
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
#endif

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

// The thread team of run_with_thread_team and of every parallel_for: the body's thread (the
// caller) and size - 1 worker threads of convforge's own, made on first use and kept for the
// process (never destroyed: a worker may still be asleep on its condition variable at exit).
//
// Why not an OpenMP region per run, as until 2026-12-05: on a 2-vCPU KVM guest whose host had
// taken the idle vCPU away, the worker woken for a one-image predict after 0.2 s without one
// was placed on the caller's vCPU (the guest's scheduler avoids a vCPU it sees preempted), and
// every hand-off then waited for it there: 4-7 ms for a ~0.1 ms predict, the region's closing
// barrier spinning without yielding. Here a job's share waits for nobody: the caller runs every
// share that no worker has claimed once its own is done, and waits only for the shares a worker
// is running. Thread t's share is the same items whoever runs it (static_range, tid t's
// scratch), so every result is the same as before, bit for bit.

// A worker's share of a job: (job number << 2) | state. Job numbers start at 1.
enum ShareState : uint64_t { kShareOpen = 0, kShareByWorker = 1, kShareByCaller = 2, kShareDone = 3 };

// A worker's cache line: its share word and its copy of the job, which the caller writes just
// before it opens the share, so that one line moves to the worker for a hand-off. With the job in
// the team's fields and the caller's open a sequentially consistent store (until the forty-second
// stop), a 1.1 us loop took 2.0 us on two threads of a 2-vCPU Xeon, each cross-core line ~150 ns:
// the caller waited for the open store's line before its own share, the worker read the
// team's line after the share's.
struct alignas(64) TeamWorker {
  std::atomic<uint64_t> share{0};
  int tid = 0;
  int threads = 0;
  detail::TeamItems run_items = nullptr;
  void* ctx = nullptr;
  int64_t items = 0;
  double* share_seconds = nullptr;
  bool called = false;  // woken for a job it has a share in (under the team's sleep_mutex)
};
static_assert(sizeof(TeamWorker) == 64, "a worker's share and job in one cache line");

struct ThreadTeam {
  std::mutex owner;  // held by the caller whose body runs on the team
  int size = 1;      // threads of the running body's team: the caller and size - 1 workers
  uint64_t job = 0;  // the last job's number (the job itself: in each worker's line)
  detail::FirstError error;  // a worker's exception from its share of a job
  std::vector<std::unique_ptr<TeamWorker>> workers;  // worker tid t is workers[t - 1]
  std::mutex sleep_mutex;
  std::condition_variable wake;
  std::atomic<int> sleepers{0};
  std::atomic<int> caller_cpu{-1};  // where the caller posted its last job from
  // set_share_seconds: set by the caller between jobs, copied into each job it posts.
  double* share_seconds = nullptr;
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

// One step of the caller's wait for a share a worker is running. After 256 pauses (~3 us on a
// recent Xeon, ~4 on Zen 4) it yields the CPU each step: the worker may be waiting for this CPU
// (a yield with nothing else to run returns at once). At 4096 pauses a one-image predict on two
// threads after 0.2 s idle took ~0.6 ms, at 256 ~0.5 (bench/onnxbench.py --after-idle).
inline void spin_wait(int* spins) {
  constexpr int kPausesBeforeYield = 1 << 8;
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

// Seconds from `start` to now (set_share_seconds' clocks).
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The CPU a thread runs on, -1 where the system does not say.
int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

#if CONVFORGE_OPENMP
bool share_open(uint64_t word) { return (word & 3) == kShareOpen && (word >> 2) != 0; }

// Whether this worker runs on the CPU its caller last posted a job from: then it yields at once
// between jobs, since the caller cannot run meanwhile.
bool on_callers_cpu(const ThreadTeam* team) {
  const int cpu = current_cpu();
  return cpu >= 0 && cpu == team->caller_cpu.load(std::memory_order_relaxed);
}

// A worker between jobs: spins for a share to open for ~2 ms (the gap between a plan's parallel
// loops, or between two predicts in a loop, is microseconds), then sleeps until the caller opens
// one. Past the first 50 us, or from the start where it shares the caller's CPU, it yields the
// CPU every 256 pauses, so that a caller placed on this CPU gets it. (Yielding from the start
// cost a 3-loop Dense call of 30 us on two threads 2-7 us: a job posted while the worker was in
// the system call waited for it.)
void worker_loop(ThreadTeam* team, TeamWorker* self) {
  SerialKernels serial;  // what a share calls runs on this thread alone
  constexpr int kPausesPerYield = 256;
  constexpr auto kSpinAlone = std::chrono::microseconds(50);
  constexpr auto kSpin = std::chrono::milliseconds(2);
  auto idle_since = std::chrono::steady_clock::now();
  int pauses = 0;
  for (;;) {
    uint64_t word = self->share.load(std::memory_order_acquire);
    if (share_open(word)) {
      const uint64_t mine = (word & ~uint64_t{3}) | kShareByWorker;
      if (self->share.compare_exchange_strong(word, mine, std::memory_order_acq_rel)) {
        int64_t begin = 0, end = 0;
        // The job, written by the caller before it opened the share and not again until the
        // share is done.
        static_range(self->items, self->threads, self->tid, &begin, &end);
        double* const clock = self->share_seconds;  // the caller reads it once the share is done
        const auto start =
            clock != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        try {
          self->run_items(self->ctx, begin, end, self->tid);
        } catch (...) {
          team->error.keep();  // rethrown by the caller (thread_team_run)
        }
        if (clock != nullptr) clock[self->tid] += seconds_since(start);
        self->share.store((word & ~uint64_t{3}) | kShareDone, std::memory_order_release);
      }
      idle_since = std::chrono::steady_clock::now();
      pauses = 0;
      continue;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (++pauses < kPausesPerYield) continue;
    pauses = 0;
    const auto idle = std::chrono::steady_clock::now() - idle_since;
    if (idle < kSpinAlone && !on_callers_cpu(team)) continue;
    if (idle < kSpin) {
      std::this_thread::yield();
      continue;
    }
    std::unique_lock<std::mutex> lock(team->sleep_mutex);
    team->sleepers.fetch_add(1, std::memory_order_seq_cst);
    // Awake when called for a job it has a share in, open or not by then: the caller may have
    // run the share itself by the time this thread is scheduled (tens of microseconds on a
    // guest); back asleep, the worker would wait for the next wake-up, spinning it takes the
    // next job. A worker with no share in the job (more workers than the job's threads) sleeps on.
    self->called = false;
    team->wake.wait(lock, [&] { return share_open(self->share.load(std::memory_order_seq_cst)) || self->called; });
    self->called = false;
    team->sleepers.fetch_sub(1, std::memory_order_relaxed);
    idle_since = std::chrono::steady_clock::now();
  }
}

// The process's team.
ThreadTeam& the_team() {
  static ThreadTeam* team = new ThreadTeam;  // never destroyed (see ThreadTeam)
  return *team;
}

// Makes the team's workers up to `workers` (std::system_error if the system refuses a thread).
// Only the owner's holder calls it.
void grow_team(ThreadTeam& team, int workers) {
  while (static_cast<int>(team.workers.size()) < workers) {
    auto worker = std::make_unique<TeamWorker>();
    worker->tid = static_cast<int>(team.workers.size()) + 1;
    std::thread(worker_loop, &team, worker.get()).detach();
    team.workers.push_back(std::move(worker));
  }
}

#endif  // CONVFORGE_OPENMP

}  // namespace

bool detail::thread_team_available() { return t_team != nullptr; }

void detail::set_share_seconds(double* seconds) noexcept {
  if (t_team != nullptr) t_team->share_seconds = seconds;
}

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
  double* const clock = team->share_seconds;
  const auto start = clock != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  // The caller's time in items (clock[0]): from here to the end of the last share it runs.
  auto clock_caller = [&] {
    if (clock != nullptr) clock[0] += seconds_since(start);
  };
  if (threads <= 1) {
    TeamShare share(team);
    run_items(ctx, 0, items, 0);
    clock_caller();
    return;
  }
  note_parallel_loop();
  const uint64_t job = ++team->job;
  const uint64_t open = job << 2 | kShareOpen;
  team->caller_cpu.store(current_cpu(), std::memory_order_relaxed);
  for (int t = 1; t < threads; ++t) {
    TeamWorker& w = *team->workers[static_cast<std::size_t>(t - 1)];
    w.run_items = run_items, w.ctx = ctx, w.items = items, w.threads = threads, w.share_seconds = clock;
    w.share.store(open, std::memory_order_release);
  }
  // A sleeping worker is woken before the caller's own share, so that it may claim its own in
  // the meantime. That look at the sleepers' count is a plain read: a sequentially consistent
  // one (or open) would wait for the opens' lines to reach this core first. A worker that went
  // to sleep just as the shares opened may not be counted yet; the fenced look after the caller's
  // share (Dekker's: the opens, a fence, the count; the worker's count, then its last look at
  // its share) sees it, and wakes it for the jobs after this one (its share here runs below).
  auto wake_sleepers = [&](bool fenced) {
    if (fenced) std::atomic_thread_fence(std::memory_order_seq_cst);
    if (team->sleepers.load(fenced ? std::memory_order_seq_cst : std::memory_order_relaxed) > 0) {
      {
        std::lock_guard<std::mutex> lock(team->sleep_mutex);  // a worker is waiting, or sees the share open
        for (int t = 1; t < threads; ++t) team->workers[static_cast<std::size_t>(t - 1)]->called = true;
      }
      team->wake.notify_all();
    }
  };
  wake_sleepers(false);
  std::exception_ptr error;
  auto run_share = [&](int tid) {
    static_range(items, threads, tid, &begin, &end);
    try {
      TeamShare share(team);
      run_items(ctx, begin, end, tid);
    } catch (...) {
      if (!error) error = std::current_exception();  // raised once the workers are done with ctx
    }
  };
  run_share(0);
  wake_sleepers(true);
  // The shares no worker has claimed yet run here, one after another: a worker that is asleep,
  // or waiting for this CPU, is not waited for.
  for (int t = 1; t < threads; ++t) {
    uint64_t expected = open;
    if (team->workers[static_cast<std::size_t>(t - 1)]->share.compare_exchange_strong(
            expected, job << 2 | kShareByCaller, std::memory_order_acq_rel))
      run_share(t);
  }
  clock_caller();
  // Every share a worker claimed must be done before the job's fields change (the next job) or
  // ctx goes (the caller's frame).
  for (int t = 1; t < threads; ++t) {
    const std::atomic<uint64_t>& share = team->workers[static_cast<std::size_t>(t - 1)]->share;
    int spins = 0;
    while ((share.load(std::memory_order_acquire) & 3) == kShareByWorker) spin_wait(&spins);
  }
  const std::exception_ptr theirs = team->error.take();
  if (error) std::rethrow_exception(error);  // this thread's own first
  if (theirs) std::rethrow_exception(theirs);
}

namespace {

// Runs body(ctx) on the process's team of `threads` threads (fewer if the system would not make
// more); false, nothing run, where it cannot: one thread, no OpenMP, under SerialKernels, in a
// forked child, inside a team already, or the team held by another thread's body (another
// Python thread's predict: one body at a time on the team).
bool run_on_team(int threads, void (*body)(void*), void* ctx) {
#if CONVFORGE_OPENMP
  if (threads > 1 && !t_serial && !g_forked_child.load() && t_team == nullptr) {
    ThreadTeam& team = the_team();
    std::unique_lock<std::mutex> owner(team.owner, std::try_to_lock);
    if (!owner.owns_lock()) return false;
    try {
      grow_team(team, threads - 1);
    } catch (const std::system_error&) {
      // The system would not make another thread: the team has the workers made so far.
      threads = static_cast<int>(team.workers.size()) + 1;
      if (threads < 2) return false;
    }
    team.size = threads;
    t_team = &team;
    try {
      body(ctx);
    } catch (...) {
      t_team = nullptr;
      throw;
    }
    t_team = nullptr;
    return true;
  }
#endif
  (void)threads, (void)body, (void)ctx;
  return false;
}

}  // namespace

void run_with_thread_team(int threads, void (*body)(void*), void* ctx) {
  // Where the team is not to be had, body runs as any code outside a team, its loops in
  // OpenMP regions.
  if (!run_on_team(threads, body, ctx)) body(ctx);
}

bool detail::thread_team_run_alone(int threads, int64_t items, TeamItems run_items, void* ctx) {
  struct Loop {
    int threads;
    int64_t items;
    TeamItems run_items;
    void* ctx;
  } loop{threads, items, run_items, ctx};
  return run_on_team(
      threads, [](void* p) {
        const Loop& l = *static_cast<const Loop*>(p);
        thread_team_run(l.threads, l.items, l.run_items, l.ctx);
      },
      &loop);
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#if CONVFORGE_OPENMP
  threads_storage().store(n);
#endif
}

}  // namespace convforge
