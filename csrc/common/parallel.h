// The only place that speaks OpenMP. Kernels split their work into independent items whose
// decomposition never depends on the thread count, so results are bit-identical for any
// number of threads; parallel_for only decides who runs which item.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <type_traits>

#if CONVFORGE_OPENMP
#include <omp.h>
#endif

namespace convforge {

// Threads the kernels may use (>= 1). Always 1 in a build without OpenMP and in a child
// process forked from a parent that used threads (GNU OpenMP's pool does not survive fork()).
int num_threads();
// Throws std::invalid_argument for n < 1.
void set_num_threads(int n);

// While one lives, num_threads() is 1 on the thread that made it: for kernels run as one of
// several side by side, each on its own thread (an inference plan's chunks of a batch), which
// must not open parallel regions of their own.
class SerialKernels {
 public:
  SerialKernels();
  ~SerialKernels();
  SerialKernels(const SerialKernels&) = delete;
  SerialKernels& operator=(const SerialKernels&) = delete;

 private:
  bool previous_;
};
// What the default is derived from: CONVFORGE_NUM_THREADS, else OMP_NUM_THREADS, else the
// CPUs in this process's affinity mask limited by the cgroup CPU quota.
int default_num_threads();
bool forked_child();

namespace detail {
// True on the thread running a thread team's body (run_with_thread_team), outside its jobs.
bool thread_team_available();

// The first exception thrown by the items of a parallel loop, kept until the loop's threads are
// done and rethrown on the calling thread: one escaping an OpenMP region, or a team's waiting
// thread, ends the process (std::terminate), where the caller (a Python call) wants an error
// it can report, such as MemoryError for a std::bad_alloc in a kernel's scratch. Its members
// are defined in parallel.cpp, built without ISA flags: inline ones would be weak symbols shared
// by the ISA-specific objects (see atomic_min below).
class FirstError {
 public:
  FirstError() noexcept;
  ~FirstError();
  FirstError(const FirstError&) = delete;
  FirstError& operator=(const FirstError&) = delete;
  // From a catch block: keeps the exception in flight if it is the loop's first.
  void keep() noexcept;
  // Whether an item has thrown: the loop's remaining items need not run.
  bool failed() const noexcept;
  // The kept exception (null if none), forgotten here. Only once every thread that may keep
  // one is done: the region's closing barrier, or the team's acknowledgements, order its write.
  std::exception_ptr take() noexcept;
  void rethrow();

 private:
  std::atomic<bool> failed_;
  std::exception_ptr error_;
};

// Counts a loop about to run on more than one thread (parallel_loops()).
void note_parallel_loop() noexcept;
}  // namespace detail

// Parallel loops the calling thread has started on more than one thread (in an OpenMP region or
// a thread team), for the tests: which runs split at all.
int64_t parallel_loops();

// Below this many operations a kernel runs on one thread: ~10 us of work at one core's FMA
// rate, where waking a second costs ~1 us. At 2e6 (until 2026-12-04) the example ResNet's
// one-image predict on two threads ran its two stride-2 3x3 convolutions (1.8 MFLOP each) on
// one thread: 0.131 -> 0.117 ms with this floor on a 2-vCPU AMD EPYC (bench/build_ab.py
// --predict; one thread, LeNet-5 and 64 images unchanged). On an earlier Intel host the two
// floors measured level.
constexpr double kMinParallelFlops = 1.0e6;

// Inside a thread team (run_with_thread_team: an inference plan's run) the other threads are
// already awake and spinning, and handing them items costs ~0.1-0.4 us: there the floor is
// ~1.5 us of one core's work. The example ResNet's one-image predict on two threads then splits
// its 0.2-MFLOP stem and 1x1 projections too: ~4 -> ~3 us each (bench/plan_profile.py).
constexpr double kMinTeamParallelFlops = 1.5e5;

// A plan's run on the thread team is worth it from this many operations (a few ops that could
// split), not for one whose ops all stay on one thread. At 4 MFLOP (until the twenty-second stop,
// when a team run opened an OpenMP region) LeNet-5's predict of 4 images (2.3 MFLOP) ran its ops
// on one thread; at 2 MFLOP, two threads on the team: 43.8-44.8 -> 39.6-39.8 us, 6 images
// 50.2-50.6 -> 47.4 us, 1 and 2 images level (a 2-vCPU Xeon; at 1 MFLOP 2 images took 25 us
// against 20).
constexpr double kMinTeamPlanFlops = 2.0e6;

inline double min_parallel_flops() {
  return detail::thread_team_available() ? kMinTeamParallelFlops : kMinParallelFlops;
}

// Threads worth using for `items` independent work items totalling `flops` operations.
inline int plan_threads(int64_t items, double flops) {
  int n = num_threads();
  if (flops < min_parallel_flops()) n = 1;
  if (items < n) n = static_cast<int>(items < 1 ? 1 : items);
  return n;
}

// *target = min(*target, value), safe against concurrent calls (a GCC builtin: nothing out of
// line to be shared between the ISA-specific objects). Read the result after the parallel_for.
inline void atomic_min(int64_t* target, int64_t value) {
  int64_t seen = __atomic_load_n(target, __ATOMIC_RELAXED);
  while (value < seen && !__atomic_compare_exchange_n(target, &seen, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

// A thread team: body(ctx) runs on the calling thread while threads - 1 workers (threads of
// convforge's own, kept for the process) wait for the parallel_for calls it makes, which then
// hand them their items instead of opening an OpenMP region each. For a run of many short
// kernels one after another (an inference plan at batch 1: 12 ops of 1-20 us), where opening and
// closing a region cost ~0.6-1.5 us a call on a 2-vCPU host against ~0.1-0.4 us for a hand-off
// to a spinning thread. The items are cut into shares exactly as in a region (OpenMP's static
// schedule, share t with thread t's scratch); a share that no worker has claimed by the time
// the caller is done with its own is run by the caller, so a worker that is asleep or waiting
// for a CPU is never waited for. Which thread runs a share changes no result. Exceptions from
// body are rethrown here. With one thread, without OpenMP, under SerialKernels, or while another
// thread's body holds the team, body simply runs.
void run_with_thread_team(int threads, void (*body)(void*), void* ctx);

namespace detail {
using TeamItems = void (*)(void* ctx, int64_t begin, int64_t end, int tid);
// Runs items(ctx, begin, end, tid) for [0, items) on min(threads, team size) of the team.
void thread_team_run(int threads, int64_t items, TeamItems run_items, void* ctx);
// Profiles (InferencePlan::run_timed): on a team body's thread, while `seconds` is set, each of
// the body's parallel loops on more than one thread adds the time each thread spends running
// items to seconds[tid] (tid 0: the body's thread, with any share it runs for a worker that had
// not claimed it; one entry per thread of the team). A loop a kernel asks to run on one thread
// runs in place and is not counted. Null: off. Elsewhere a no-op.
void set_share_seconds(double* seconds) noexcept;
// The same on the process's team as a run of its own (run_with_thread_team), if the team is
// free (no other thread's body holds it) and threads may be used here; false if not, nothing run.
bool thread_team_run_alone(int threads, int64_t items, TeamItems run_items, void* ctx);

template <class F>
void team_items(void* ctx, int64_t begin, int64_t end, int tid) {
  F& f = *static_cast<F*>(ctx);
  for (int64_t i = begin; i < end; ++i) f(i, tid);
}
}  // namespace detail

// Runs f(item, thread_id) for item in [0, items) on `threads` threads (thread_id < threads).
// Thread t always takes the same contiguous range of items (static schedule). Kernels number
// their items image-major, so consecutive layers hand a thread the same images: what one layer
// wrote stays in that core's L2 for the next, and a call that overwrites its previous output
// finds those lines already owned. With a dynamic schedule the pairing was random and about half
// of every output moved between cores each call (LeNet C1 forward on 2 threads: 133 -> 63 us when
// the two vCPUs sat on different core complexes).
//
// The threads are the thread team's (run_with_thread_team), inside a team's body or as a run of
// its own: its workers are never waited for when they cannot run (asleep, or placed on this
// CPU), where an OpenMP region waited for them at its barriers (a 0.1 ms conv after 0.2 s idle
// took 7.6 ms on a 2-vCPU guest). An OpenMP region runs the loop only while another thread's
// body holds the team.
template <class F>
void parallel_for(int threads, int64_t items, F&& f) {
#if CONVFORGE_OPENMP
  if (threads > 1) {
    using Fn = std::remove_reference_t<F>;
    void* ctx = const_cast<void*>(static_cast<const void*>(&f));
    if (detail::thread_team_available()) {
      detail::thread_team_run(threads, items, &detail::team_items<Fn>, ctx);
      return;
    }
    if (detail::thread_team_run_alone(threads, items, &detail::team_items<Fn>, ctx)) return;
    detail::note_parallel_loop();
    detail::FirstError error;
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num();
      // nowait: the region's own closing barrier is the one needed (a second one, the loop's,
      // cost ~0.5 us a call on this 2-vCPU host: 1.42 -> 0.88 us an empty region).
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < items; ++i) {
        if (error.failed()) continue;  // the loop throws: its other items are not needed
        try {
          f(i, tid);
        } catch (...) {
          error.keep();
        }
      }
    }
    error.rethrow();
    return;
  }
#endif
  (void)threads;
  for (int64_t i = 0; i < items; ++i) f(i, 0);
}

// Runs f(begin, end, thread_id) over [0, n) in items of `grain` consecutive indices: for many
// small independent pieces (pooling planes), where one item per piece would pay a scheduling
// step per few hundred bytes and have threads write into neighbouring cache lines.
template <class F>
void parallel_for_grains(int threads, int64_t n, int64_t grain, F&& f) {
  const int64_t items = (n + grain - 1) / grain;
  parallel_for(threads < items ? threads : static_cast<int>(items < 1 ? 1 : items), items, [&](int64_t item, int tid) {
    const int64_t begin = item * grain;
    f(begin, begin + grain < n ? begin + grain : n, tid);
  });
}

// Runs f(thread_id) once on each of `threads` threads at the same time (probes, not kernels).
template <class F>
void on_each_thread(int threads, F&& f) {
#if CONVFORGE_OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    f(omp_get_thread_num());
    return;
  }
#endif
  (void)threads;
  f(0);
}

}  // namespace convforge
