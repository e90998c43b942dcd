// convforge._core: the compiled kernels. Private; the public API is convforge.functional.
// Registration only: each bind_<topic>.cpp defines its functions (arguments checked by the
// shared helpers of bindings/arrays.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace convforge::bindings {

void bind_runtime(py::module_& m);
void bind_conv2d(py::module_& m);
void bind_dense(py::module_& m);
void bind_maxpool2d(py::module_& m);
void bind_relu(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_globalpool(py::module_& m);
void bind_depthwise(py::module_& m);
void bind_plan(py::module_& m);

}  // namespace convforge::bindings

PYBIND11_MODULE(_core, m) {
  using namespace convforge::bindings;
  m.doc() = "convforge compiled kernels (private: use convforge.functional)";
  // pybind11 builds its table of NumPy's C API on first use, and releases the GIL while it waits
  // for another thread building it (gil_safe_call_once_and_store). Two daemon threads making
  // their first kernel call as the interpreter exits could meet there: CPython ends a thread
  // that asks for the GIL back during finalisation with pthread_exit, whose unwind reached
  // pybind11's noexcept ~gil_scoped_release, and the process aborted ("terminate called without
  // an active exception"; a core dump of tests/test_hardening.py's exit case at delay 0 showed
  // PyEval_RestoreThread called from the array caster, 1 run in ~100). Built here, at import,
  // with the GIL held and no other thread inside the module, the table never releases it again.
  py::detail::npy_api::get();
  bind_runtime(m);  // first: reads CONVFORGE_MAX_ISA

  bind_conv2d(m);
  bind_dense(m);
  bind_maxpool2d(m);
  bind_relu(m);
  bind_batchnorm(m);
  bind_globalpool(m);
  bind_depthwise(m);
  bind_plan(m);
}
