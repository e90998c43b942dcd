// Releasing the GIL around a kernel, in a way that survives interpreter shutdown.
//
// While the interpreter finalises, a (daemon) thread that asks for the GIL back is ended by
// CPython (3.8-3.13) with pthread_exit(). On glibc that unwinds the thread's stack with a
// "forced unwind" exception. pybind11's gil_scoped_release takes the GIL back in its destructor,
// which is noexcept: the unwind reached it and std::terminate() aborted the whole process
// ("terminate called without an active exception", exit status 134) where NumPy exits with 0.
// Letting the unwind through would not be right either: it would run the destructors of the
// call's Python objects (arguments, the output array) without the GIL, racing with the
// finalising main thread.
//
// ReleasedGil therefore takes the GIL back itself and, when CPython ends the thread that way,
// parks the thread for good instead (what CPython 3.14 does for such threads): the process is
// exiting, the thread holds no lock, and its Python references are simply never released.
#pragma once

#include <Python.h>

#include <chrono>
#include <thread>

#if defined(__GLIBCXX__)
#include <cxxabi.h>
#endif

namespace convforge::bindings {

[[noreturn]] inline void park_thread_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

inline void reacquire_gil(PyThreadState* state) noexcept {
#if defined(__GLIBCXX__)
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind&) {
    // The interpreter is finalising: see the top of this file. Never rethrown, never returns.
    park_thread_forever();
  }
#else
  PyEval_RestoreThread(state);
#endif
}

// Drop-in for py::gil_scoped_release around a kernel call (which must not touch Python).
class ReleasedGil {
 public:
  ReleasedGil() : state_(PyEval_SaveThread()) {}
  ~ReleasedGil() { reacquire_gil(state_); }
  ReleasedGil(const ReleasedGil&) = delete;
  ReleasedGil& operator=(const ReleasedGil&) = delete;

 private:
  PyThreadState* state_;
};

}  // namespace convforge::bindings
