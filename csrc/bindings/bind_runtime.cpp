// Runtime queries and settings: build_info, threads, the ISA cap, the FMA peak probe and the
// workspace size.
#include <pybind11/stl.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "bindings/arrays.h"
#include "common/cpu.h"
#include "common/lane_sum.h"
#include "common/parallel.h"
#include "common/workspace.h"
#include "dispatch/dispatch.h"

#define CONVFORGE_STR_(x) #x
#define CONVFORGE_STR(x) CONVFORGE_STR_(x)

namespace convforge::bindings {
namespace {

py::dict build_info() {
  py::dict info;
  info["version"] = CONVFORGE_STR(VERSION_INFO);
  info["compiler"] = CONVFORGE_COMPILER;
  info["build_type"] = CONVFORGE_BUILD_TYPE;
  info["openmp"] = static_cast<bool>(CONVFORGE_OPENMP);
  info["num_threads"] = num_threads();
  info["default_num_threads"] = default_num_threads();
  py::list compiled;
  compiled.append("ref");
  if (CONVFORGE_HAVE_AVX2) compiled.append("avx2");
  if (CONVFORGE_HAVE_AVX512) compiled.append("avx512");
  info["isa_compiled"] = compiled;
  info["isa_detected"] = isa_name(detected_isa());
  info["isa_cap"] = isa_name(isa_cap());
  info["isa"] = isa_name(active_isa());
  py::dict kernels;
  for (const KernelChoice& k : selected_kernels()) {
    if (!kernels.contains(k.op)) kernels[k.op.c_str()] = py::dict();
    kernels[k.op.c_str()][k.dtype.c_str()] = k.name;
  }
  info["kernels"] = kernels;
  py::dict algos;  // every compiled conv2d algorithm: {pass: {isa: [names, best-first]}}
  for (const ConvAlgoNames& a : compiled_conv2d_algorithms()) {
    const std::string key = "conv2d_" + a.pass;
    if (!algos.contains(key)) algos[key.c_str()] = py::dict();
    algos[key.c_str()][a.isa.c_str()] = py::cast(a.names);
  }
  info["conv2d_algorithms"] = algos;
  info["forked_child"] = forked_child();
  return info;
}

// Measured peak of this machine in GFLOP/s, for the active ISA and `threads` threads (each runs
// the probe once; wall time of the slowest). Runs for about `seconds`.
py::dict fma_peak(int threads, double seconds) {
  if (threads < 1) throw py::value_error("threads must be >= 1");
  if (!(seconds > 0 && seconds < 60)) throw py::value_error("seconds must be in (0, 60)");
  float (*probe)(int64_t) = &fma_probe__ref;
  int lanes = kProbeLanesRef, chains = kProbeChainsRef;
  const Isa isa = active_isa();
#if CONVFORGE_HAVE_AVX512
  if (isa == Isa::avx512) probe = &fma_probe__avx512, lanes = kProbeLanesAvx512, chains = kProbeChainsAvx512;
#endif
#if CONVFORGE_HAVE_AVX2
  if (isa == Isa::avx2) probe = &fma_probe__avx2, lanes = kProbeLanesAvx2, chains = kProbeChainsAvx2;
#endif
  using clock = std::chrono::steady_clock;
  volatile float sink = 0;
  int64_t iters = 1 << 16;
  double elapsed = 0;
  {
    ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
    for (;;) {  // grow until one run takes a measurable share of the budget
      const auto t0 = clock::now();
      on_each_thread(threads, [&](int) { sink = sink + probe(iters); });
      elapsed = std::chrono::duration<double>(clock::now() - t0).count();
      if (elapsed > seconds / 4 || iters > (int64_t{1} << 40)) break;
      iters *= 4;
    }
    double best = elapsed;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = clock::now();
      on_each_thread(threads, [&](int) { sink = sink + probe(iters); });
      const double t = std::chrono::duration<double>(clock::now() - t0).count();
      if (t < best) best = t;
    }
    elapsed = best;
  }
  py::dict r;
  r["isa"] = isa_name(isa);
  r["threads"] = threads;
  r["gflops"] = static_cast<double>(threads) * static_cast<double>(iters) * chains * lanes * 2.0 / elapsed / 1e9;
  return r;
}

void set_isa_cap_checked(const std::string& name) {
  Isa cap;
  if (!parse_isa(name.c_str(), &cap))
    throw py::value_error("isa must be one of 'ref', 'avx2', 'avx512', got '" + name + "'");
  set_isa_cap(cap);
}

// Tests: every ISA's digest must be the same function of the bytes (the plan's kept digests
// outlive a change of the ISA cap).
py::tuple weights_digest(const py::array& data) {
  if (!(data.flags() & py::array::c_style)) throw py::value_error("data must be C-contiguous");
  const Digest d = digest_kernel().fn(static_cast<const unsigned char*>(data.data()), static_cast<int64_t>(data.nbytes()));
  return py::make_tuple(d.lo, d.hi);
}

// Index of the first array of `arrays` holding a NaN or an infinity, -1 if none: the trainer's
// check of a step's gradients and updated weights, one call for the whole model instead of two
// NumPy reductions per array (0.1-0.15 ms of a 1.9 ms LeNet-5 step at batch 32).
int64_t first_non_finite(const py::sequence& arrays) {
  struct Span {
    const void* data;
    int64_t n;
    bool is_double;
  };
  std::vector<Span> spans;
  std::vector<py::array> keep;  // referenced until the GIL is back: another thread may drop the list's
  spans.reserve(arrays.size());
  keep.reserve(arrays.size());
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const std::string name = "arrays[" + std::to_string(i) + "]";
    py::object item = arrays[i];
    if (!py::isinstance<py::array>(item))
      throw py::type_error(name + " must be a NumPy array, got " + std::string(py::str(py::type::handle_of(item).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(item);
    const bool is_double = has_dtype<double>(a);
    if (!is_double && !has_dtype<float>(a))
      throw py::type_error(name + " must be float32 or float64, got " + std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
      throw py::value_error(name + " must be C-contiguous and aligned");
    spans.push_back({a.data(), static_cast<int64_t>(a.size()), is_double});
    keep.push_back(std::move(a));
  }
  ReleasedGil release;  // not py::gil_scoped_release (bindings/gil.h); `keep` outlives it
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    const bool finite = s.is_double ? all_finite(static_cast<const double*>(s.data), s.n)
                                    : all_finite(static_cast<const float*>(s.data), s.n);
    if (!finite) return static_cast<int64_t>(i);
  }
  return -1;
}

// For the tests: a parallel loop of `items` items on `threads` threads (inside a thread team
// when `in_team`, as an inference plan runs them) whose item `failing` throws; what an item's
// exception (a std::bad_alloc in a kernel's scratch) does to the caller.
void parallel_for_failing(int threads, int64_t items, int64_t failing, bool in_team) {
  ReleasedGil release;
  auto loop = [&]() {
    parallel_for(threads, items, [&](int64_t i, int) {
      if (i == failing) throw std::runtime_error("item " + std::to_string(i) + " failed");
    });
  };
  if (!in_team) {
    loop();
    return;
  }
  using Loop = decltype(loop);
  run_with_thread_team(threads, [](void* ctx) { (*static_cast<Loop*>(ctx))(); }, &loop);
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.attr("__version__") = CONVFORGE_STR(VERSION_INFO);
  init_isa_cap_from_env();
  m.def("build_info", &build_info,
        "Version, compiler, OpenMP, threads, ISA, the kernel chosen for each op and every compiled conv2d "
        "algorithm.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("_set_isa_cap", &set_isa_cap_checked, py::arg("isa"), "Cap the ISA (tests; users set CONVFORGE_MAX_ISA).");
  m.def("_isa_cap", [] { return std::string(isa_name(isa_cap())); });
  m.def("_l2_cache_bytes", &l2_cache_bytes, "One core's L2 in bytes as the kernels take it (0: unknown).");
  m.def("_set_l2_cache_bytes", &set_l2_cache_bytes, py::arg("bytes"),
        "Take `bytes` as the L2's size, or the detected size again (-1): tests of the passes' order.");
  m.def("_fma_peak", &fma_peak, py::arg("threads") = 1, py::arg("seconds") = 0.3,
        "Measured peak GFLOP/s of fused multiply-adds on the active ISA (for benchmarks).");
  m.def("_workspace_bytes", &thread_workspace_bytes, "Scratch bytes held by the calling thread.");
  m.def("_parallel_loops", &parallel_loops,
        "Parallel loops the calling thread has started on more than one thread (tests: which runs split).");
  m.def("_parallel_for_failing", &parallel_for_failing, py::arg("threads"), py::arg("items"), py::arg("failing"),
        py::arg("in_team"), "A parallel loop whose item `failing` throws (tests).");
  m.def("_weights_digest", &weights_digest, py::arg("data"),
        "The inference plan's 128-bit digest of a C-contiguous array's bytes, by the active ISA's kernel, as (lo, hi).");
  m.def("first_non_finite", &first_non_finite, py::arg("arrays"),
        "Index of the first array (float32/float64, C-contiguous) holding a NaN or an infinity, -1 if none.");
}

}  // namespace convforge::bindings
