// _core.InferencePlan: a model's inference pass as one call (csrc/plan/inference_plan.h).
// Built op by op by convforge.models.compiled, which keeps it in step with the layers. Every
// weight array is checked (dtype, C-contiguous, shape) when its op is added and held here, so
// the pointers the plan reads stay valid; the values are read at each run.
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>

#include "bindings/arrays.h"
#include "common/parallel.h"
#include "plan/inference_plan.h"

namespace convforge::bindings {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

class PyPlan {
 public:
  explicit PyPlan(const std::string& dtype) {
    if (dtype == "float32") f32_ = std::make_unique<InferencePlan<float>>();
    else if (dtype == "float64") f64_ = std::make_unique<InferencePlan<double>>();
    else throw py::type_error("InferencePlan: dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }

  std::string dtype() const { return f32_ ? "float32" : "float64"; }

  // f(plan) on the plan of this dtype, with T its element type.
  template <class F>
  auto with_plan(F&& f) {
    if (f32_) return f(*f32_);
    return f(*f64_);
  }
  template <class F>
  auto with_plan(F&& f) const {
    if (f32_) return f(*static_cast<const InferencePlan<float>*>(f32_.get()));
    return f(*static_cast<const InferencePlan<double>*>(f64_.get()));
  }

  // `w` as an array of T with `ndim` dimensions (checked as every input is), before its shape is known.
  template <class T>
  static py::array weight_array(const py::object& w, py::ssize_t ndim) {
    if (!py::isinstance<py::array>(w)) throw py::type_error("w must be a numpy.ndarray");
    py::array wa = py::reinterpret_borrow<py::array>(w);
    check_input<T>(wa, "w", ndim);
    return wa;
  }

  // A weight of exactly `shape` (None allowed when `optional`), held for the plan's lifetime.
  template <class T>
  const T* weight(const py::object& obj, const char* name, const std::vector<int64_t>& shape, bool optional) {
    if (obj.is_none()) {
      if (optional) return nullptr;
      throw py::value_error(std::string(name) + " is required");
    }
    py::array keep;
    const T* p = optional_input<T>(obj, name, shape, "shape", &keep);
    held_.push_back(keep);
    return p;
  }

  template <class T>
  PlanBatchNorm<T> batchnorm_weights(const py::object& arg, int64_t channels) {
    if (!py::isinstance<py::tuple>(arg) && !py::isinstance<py::list>(arg))
      throw py::type_error("bn must be a tuple (mean, variance, gamma or None, beta or None, epsilon)");
    const py::sequence bn = py::reinterpret_borrow<py::sequence>(arg);
    if (bn.size() != 5) throw py::value_error("bn must be (mean, variance, gamma or None, beta or None, epsilon)");
    const py::object eps = bn[4];
    if (!py::isinstance<py::float_>(eps) && !py::isinstance<py::int_>(eps))
      throw py::type_error("bn epsilon must be a number");
    PlanBatchNorm<T> w;
    w.mean = weight<T>(bn[0], "bn mean", {channels}, false);
    w.var = weight<T>(bn[1], "bn variance", {channels}, false);
    w.gamma = weight<T>(bn[2], "bn gamma", {channels}, true);
    w.beta = weight<T>(bn[3], "bn beta", {channels}, true);
    w.eps = eps.cast<double>();
    if (!(w.eps >= 0.0)) throw py::value_error("bn epsilon must be >= 0");
    return w;
  }

  int conv2d(int x, const py::object& w, const py::object& b, const Pair& stride, const Quad& padding,
             const Pair& dilation, const py::object& bn, bool relu) {
    return with_plan([&](auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      const py::array wa = weight_array<T>(w, 4);
      const std::vector<int64_t>& d = plan.dims(x);
      if (d.size() != 3) throw py::value_error("conv2d's input must be (C, H, W) per sample");
      const ConvShape s = conv_problem(d[0], d[1], d[2], wa, stride, padding, dilation);
      if (wa.shape(1) != s.ic)
        throw py::value_error("conv2d: the input has " + std::to_string(s.ic) + " channels but w expects " +
                              std::to_string(wa.shape(1)));
      const T* pw = weight<T>(w, "w", dims_of(wa), false);
      const T* pb = weight<T>(b, "b", {s.oc}, true);
      if (bn.is_none()) return plan.conv2d(x, s, pw, pb, nullptr, relu);
      const PlanBatchNorm<T> fold = batchnorm_weights<T>(bn, s.oc);
      return plan.conv2d(x, s, pw, pb, &fold, relu);
    });
  }

  // A convolution-like op's per-sample problem: its input (ic, ih, iw), w's (oc, -, kh, kw), the geometry.
  static ConvShape conv_problem(int64_t ic, int64_t ih, int64_t iw, const py::array& w, const Pair& stride,
                                const Quad& padding, const Pair& dilation) {
    ConvShape s;
    s.mb = 1, s.ic = ic, s.ih = ih, s.iw = iw;
    s.oc = w.shape(0), s.kh = w.shape(2), s.kw = w.shape(3);
    s.sh = stride[0], s.sw = stride[1], s.dh = dilation[0], s.dw = dilation[1];
    s.pt = padding[0], s.pb = padding[1], s.pl = padding[2], s.pr = padding[3];
    return s;
  }

  int depthwise(int x, const py::object& w, const py::object& b, const Pair& stride, const Quad& padding,
                const Pair& dilation) {
    return with_plan([&](auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      const py::array wa = weight_array<T>(w, 4);
      const std::vector<int64_t>& d = plan.dims(x);
      if (d.size() != 3) throw py::value_error("depthwise's input must be (C, H, W) per sample");
      if (wa.shape(1) != 1 || wa.shape(0) % d[0] != 0)
        throw py::value_error("depthwise: w must be (C * depth_multiplier, 1, KH, KW) with C = " +
                              std::to_string(d[0]) + ", got " + shape_str(wa));
      const ConvShape s = conv_problem(d[0], d[1], d[2], wa, stride, padding, dilation);
      const T* pw = weight<T>(w, "w", dims_of(wa), false);
      const T* pb = weight<T>(b, "b", {s.oc}, true);
      return plan.depthwise(x, s, pw, pb);
    });
  }

  // Conv2DTranspose of x (C, H, W): w (C, filters, KH, KW) the weights of the convolution it
  // transposes, from out_hw back to (H, W) with stride and padding.
  int conv_transpose(int x, const py::object& w, const py::object& b, const Pair& stride, const Quad& padding,
                     const Pair& out_hw) {
    return with_plan([&](auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      const py::array wa = weight_array<T>(w, 4);
      const ConvShape s = conv_problem(wa.shape(1), out_hw[0], out_hw[1], wa, stride, padding, {1, 1});
      const T* pw = weight<T>(w, "w", dims_of(wa), false);
      const T* pb = weight<T>(b, "b", {s.ic}, true);
      return plan.conv_transpose(x, s, pw, pb);
    });
  }

  int dense(int x, const py::object& w, const py::object& b, bool relu) {
    return with_plan([&](auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      const std::vector<int64_t>& d = plan.dims(x);
      if (d.size() != 1) throw py::value_error("dense's input must be (features,) per sample");
      const py::array wa = weight_array<T>(w, 2);
      const int64_t units = wa.shape(1);
      const T* pw = weight<T>(w, "w", {d[0], units}, false);
      const T* pb = weight<T>(b, "b", {units}, true);
      return plan.dense(x, units, pw, pb, relu);
    });
  }

  int maxpool2d(int x, const Pair& kernel, const Pair& stride, const Pair& padding, const Pair& out_hw) {
    return with_plan([&](auto& plan) {
      const std::vector<int64_t>& d = plan.dims(x);
      if (d.size() != 3) throw py::value_error("maxpool2d's input must be (C, H, W) per sample");
      PoolShape s;
      s.mb = 1, s.c = d[0], s.ih = d[1], s.iw = d[2];
      s.kh = kernel[0], s.kw = kernel[1], s.sh = stride[0], s.sw = stride[1];
      s.ph = padding[0], s.pw = padding[1], s.oh = out_hw[0], s.ow = out_hw[1];
      return plan.maxpool2d(x, s);
    });
  }

  // inv: AveragePooling2D's 1 / (input cells under each window), (OH, OW) of the plan's dtype.
  int avgpool(int x, const Pair& kernel, const Pair& stride, const Pair& pad_top_left, const Pair& out_hw,
              const py::array& inv) {
    return with_plan([&](auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      const std::vector<int64_t>& d = plan.dims(x);
      if (d.size() != 3) throw py::value_error("avgpool's input must be (C, H, W) per sample");
      PoolShape s;
      s.mb = 1, s.c = d[0], s.ih = d[1], s.iw = d[2];
      s.kh = kernel[0], s.kw = kernel[1], s.sh = stride[0], s.sw = stride[1];
      s.ph = pad_top_left[0], s.pw = pad_top_left[1], s.oh = out_hw[0], s.ow = out_hw[1];
      check_input<T>(inv, "inv", 2);
      if (inv.shape(0) != s.oh || inv.shape(1) != s.ow)
        throw py::value_error("inv must have shape (" + std::to_string(s.oh) + ", " + std::to_string(s.ow) + "), got " +
                              shape_str(inv));
      const T* p = data_of<T>(inv);
      return plan.avgpool(x, s, std::vector<T>(p, p + s.oh * s.ow));
    });
  }

  int batchnorm(int x, const py::object& bn) {
    return with_plan([&](auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      const std::vector<int64_t>& d = plan.dims(x);
      return plan.batchnorm(x, batchnorm_weights<T>(bn, d[0]));
    });
  }

  int elementwise(const std::string& kind, const std::vector<int>& xs) {
    PlanOpKind k;
    if (kind == "add") k = PlanOpKind::add;
    else if (kind == "subtract") k = PlanOpKind::subtract;
    else if (kind == "multiply") k = PlanOpKind::multiply;
    else if (kind == "average") k = PlanOpKind::average;
    else throw py::value_error("elementwise: kind must be add, subtract, multiply or average, got '" + kind + "'");
    return with_plan([&](auto& plan) { return plan.elementwise(k, xs); });
  }

  template <class T>
  std::vector<const T*> check_inputs(const InferencePlan<T>& plan, const std::vector<py::array>& xs, int64_t* mb) const {
    if (!plan.finished()) throw py::value_error("the plan is not finished");
    if (static_cast<int>(xs.size()) != plan.num_inputs())
      throw py::value_error("the plan takes " + std::to_string(plan.num_inputs()) + " inputs, got " +
                            std::to_string(xs.size()));
    std::vector<const T*> ptrs;
    for (std::size_t k = 0; k < xs.size(); ++k) {
      const std::vector<int64_t>& d = plan.dims(plan.input_values()[k]);
      const std::string name = "input " + std::to_string(k);
      check_input<T>(xs[k], name.c_str(), static_cast<py::ssize_t>(d.size() + 1));
      for (std::size_t i = 0; i < d.size(); ++i)
        if (xs[k].shape(static_cast<py::ssize_t>(i + 1)) != d[i])
          throw py::value_error(name + " must have " + dims_str(d.data(), d.size()) + " per sample, got " +
                                shape_str(xs[k]));
      if (k == 0) *mb = xs[k].shape(0);
      else if (xs[k].shape(0) != *mb) throw py::value_error("the inputs must have the same number of samples");
      ptrs.push_back(static_cast<const T*>(xs[k].data()));
    }
    if (*mb < 1) throw py::value_error("the plan runs batches of at least one sample");
    return ptrs;
  }

  // Fresh arrays for mb samples of each of the plan's outputs, in order.
  template <class Plan>
  static std::vector<py::array_t<typename Plan::value_type>> output_arrays(const Plan& plan, int64_t mb) {
    std::vector<py::array_t<typename Plan::value_type>> arrays;
    for (int v : plan.output_values()) {
      std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(mb)};
      for (int64_t d : plan.dims(v)) shape.push_back(static_cast<py::ssize_t>(d));
      arrays.emplace_back(shape);
    }
    return arrays;
  }

  static std::string forced_algorithm(const py::object& conv_algorithm) {
    if (conv_algorithm.is_none()) return "";
    if (!py::isinstance<py::str>(conv_algorithm)) throw py::type_error("conv_algorithm must be a str or None");
    return conv_algorithm.cast<std::string>();
  }

  // Each op's mean wall time in seconds over `runs` runs of the batch `xs` (outputs discarded);
  // with `per_thread`, an (ops, 1 + threads) array: that time, then each thread's time in the
  // op's parallel loops (InferencePlan::run_timed).
  py::array_t<double> profile(const std::vector<py::array>& xs, const py::object& runs_arg,
                              const py::object& conv_algorithm, bool per_thread) const {
    if (!py::isinstance<py::int_>(runs_arg) || py::isinstance<py::bool_>(runs_arg))
      throw py::type_error("runs must be an int, got " + std::string(py::str(py::type::of(runs_arg).attr("__name__"))));
    const long long runs = runs_arg.cast<long long>();
    if (runs < 1 || runs > 1000000)
      throw py::value_error("runs must be between 1 and 1000000, got " + std::to_string(runs));
    const std::string forced = forced_algorithm(conv_algorithm);
    return with_plan([&](const auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      int64_t mb = 0;
      const std::vector<const T*> inputs = check_inputs(plan, xs, &mb);
      std::vector<py::array_t<T>> held = output_arrays(plan, mb);
      std::vector<T*> outputs;
      for (auto& y : held) outputs.push_back(y.mutable_data());
      const int ops = plan.num_ops(), threads = per_thread ? convforge::num_threads() : 0;
      std::vector<double> op_seconds(static_cast<std::size_t>(ops), 0.0);
      std::vector<double> share_seconds(static_cast<std::size_t>(ops) * static_cast<std::size_t>(threads), 0.0);
      {
        ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
        for (long long r = 0; r < runs; ++r)
          plan.run_timed(mb, inputs, outputs, forced, op_seconds.data(), per_thread ? share_seconds.data() : nullptr,
                         threads);
      }
      const double n = static_cast<double>(runs);
      if (!per_thread) {
        py::array_t<double> seconds(static_cast<py::ssize_t>(ops));
        for (int k = 0; k < ops; ++k) seconds.mutable_data()[k] = op_seconds[static_cast<std::size_t>(k)] / n;
        return seconds;
      }
      py::array_t<double> seconds({static_cast<py::ssize_t>(ops), static_cast<py::ssize_t>(1 + threads)});
      auto out = seconds.mutable_unchecked<2>();
      for (int k = 0; k < ops; ++k) {
        out(k, 0) = op_seconds[static_cast<std::size_t>(k)] / n;
        for (int t = 0; t < threads; ++t)
          out(k, 1 + t) = share_seconds[static_cast<std::size_t>(k) * static_cast<std::size_t>(threads) + t] / n;
      }
      return seconds;
    });
  }

  // run() of a plan of one input and one output, the input mb samples at x that the caller
  // checked (ReadyPredict: dtype, C-contiguous, aligned, the per-sample size).
  py::object run_checked(const void* x, int64_t mb, const std::string& forced) const {
    return with_plan([&](const auto& plan) -> py::object {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      std::vector<py::array_t<T>> arrays = output_arrays(plan, mb);
      const std::vector<const T*> inputs{static_cast<const T*>(x)};
      const std::vector<T*> outputs{arrays[0].mutable_data()};
      {
        ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
        plan.run(mb, inputs, outputs, forced);
      }
      return std::move(arrays[0]);
    });
  }

  py::list run(const std::vector<py::array>& xs, const py::object& conv_algorithm) const {
    const std::string forced = forced_algorithm(conv_algorithm);
    return with_plan([&](const auto& plan) {
      using T = typename std::remove_reference_t<decltype(plan)>::value_type;
      int64_t mb = 0;
      const std::vector<const T*> inputs = check_inputs(plan, xs, &mb);
      py::list result;
      std::vector<T*> outputs;
      for (auto& y : output_arrays(plan, mb)) {
        outputs.push_back(y.mutable_data());
        result.append(y);
      }
      {
        ReleasedGil release;  // not py::gil_scoped_release: see bindings/gil.h
        plan.run(mb, inputs, outputs, forced);
      }
      return result;
    });
  }

  std::unique_ptr<InferencePlan<float>> f32_;
  std::unique_ptr<InferencePlan<double>> f64_;
  std::vector<py::array> held_;  // the weights the plan reads
};

// Whether every (holder dict, key, value) of `items` still has holder.get(key) is value, and
// every (object, attribute, value) of `settings` getattr(object, attribute) is value: the
// check CompiledInference.current() makes before each run, here without the interpreter's
// loop (a one-image ResNet's 102 entries: 4.6 us in Python). Raises what getattr raises.
bool objects_unchanged(const py::list& items, const py::list& settings) {
  for (const py::handle entry : items) {
    if (!PyTuple_Check(entry.ptr()) || PyTuple_GET_SIZE(entry.ptr()) != 3)
      throw py::type_error("objects_unchanged: items must be (dict, key, value) tuples");
    PyObject* holder = PyTuple_GET_ITEM(entry.ptr(), 0);
    if (!PyDict_Check(holder)) throw py::type_error("objects_unchanged: items must be (dict, key, value) tuples");
    PyObject* now = PyDict_GetItemWithError(holder, PyTuple_GET_ITEM(entry.ptr(), 1));  // borrowed
    if (now == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      now = Py_None;
    }
    if (now != PyTuple_GET_ITEM(entry.ptr(), 2)) return false;
  }
  for (const py::handle entry : settings) {
    if (!PyTuple_Check(entry.ptr()) || PyTuple_GET_SIZE(entry.ptr()) != 3)
      throw py::type_error("objects_unchanged: settings must be (object, attribute, value) tuples");
    PyObject* now = PyObject_GetAttr(PyTuple_GET_ITEM(entry.ptr(), 0), PyTuple_GET_ITEM(entry.ptr(), 1));
    if (now == nullptr) throw py::error_already_set();
    const bool same = now == PyTuple_GET_ITEM(entry.ptr(), 2);
    Py_DECREF(now);
    if (!same) return false;
  }
  return true;
}

// How many times any layer's attributes or weights dict changed: Layer.__setattr__ and
// __delattr__ and WeightDict's mutators (layers/base.py) count each change after making it.
// ReadyPredict repeats its objects_unchanged check only when this moved since the last one
// that passed: that check read 102 objects of the example ResNet scattered through memory the
// run had just evicted, ~2 us of its ~85 us one-image predict on two threads. Counted after
// the change and read before the check, so a change is either seen by the check or moves the
// count past what the check recorded.
std::atomic<uint64_t> g_layer_changes{0};

PyObject* note_layer_change(PyObject*, PyObject*) {
  g_layer_changes.fetch_add(1, std::memory_order_release);
  Py_RETURN_NONE;
}

// A plain C function (METH_NOARGS): Layer.__setattr__ calls it on every attribute a layer
// sets, and pybind11's dispatch would cost it several times as much.
PyMethodDef note_layer_change_def = {
    "note_layer_change", note_layer_change, METH_NOARGS,
    "Count one change of a layer's attributes or weights (private: layers/base.py)."};

// predict's one-call path as one call (models/compiled.py, CompiledInference.ready): the
// checks that make `x` the plan's input as it is (a numpy.ndarray, not a subclass, of the
// plan's dtype, C-contiguous and aligned, one of `shapes` per sample: the user's shapes whose
// conversion is a reshape, which the caller vouches for (only their sizes are checked here: an
// NHWC shape of several channels would be read in the wrong order), at least one and at most
// batch_size samples), that the model still
// holds what the plan was made from (objects_unchanged), then the run under the forward
// algorithm `forced` ("fwd", functional.force_conv2d_algorithm) names. None where a check
// fails: predict's Python path then decides, with its messages. A one-image ResNet predict
// spent ~8 us of Python around the plan's run deciding the same, the interpreter's code and
// data evicted from the core's caches by the run before. `tracked`: the caller vouches that
// every holder of `items` and `settings` counts its changes (g_layer_changes); then the
// objects are checked again only after a change somewhere.
class ReadyPredict {
 public:
  ReadyPredict(const py::object& plan, py::list items, py::list settings, py::dict forced,
               std::vector<std::vector<int64_t>> shapes, bool tracked)
      : plan_obj_(plan), plan_(plan.cast<const PyPlan*>()), items_(std::move(items)), settings_(std::move(settings)),
        forced_(std::move(forced)), shapes_(std::move(shapes)), tracked_(tracked),
        ndarray_(py::module_::import("numpy").attr("ndarray")) {
    plan_->with_plan([&](const auto& p) {
      if (!p.finished() || p.num_inputs() != 1 || p.output_values().size() != 1)
        throw py::value_error("ReadyPredict: the plan must be finished, with one input and one output");
      int64_t size = 1;
      for (int64_t d : p.dims(p.input_values()[0])) size *= d;
      for (const std::vector<int64_t>& shape : shapes_) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        if (shape.empty() || n != size)
          throw py::value_error("ReadyPredict: every shape must hold the plan input's " + std::to_string(size) +
                                " values per sample");
      }
      itemsize_ = sizeof(typename std::remove_reference_t<decltype(p)>::value_type);
    });
  }

  py::object call(const py::handle& x, const py::handle& batch_size) const {
    long long limit = 32;
    if (!batch_size.is_none()) {
      if (!PyLong_CheckExact(batch_size.ptr())) return py::none();
      int overflow = 0;
      limit = PyLong_AsLongLongAndOverflow(batch_size.ptr(), &overflow);
      if (overflow != 0 || limit < 1) return py::none();
    }
    if (Py_TYPE(x.ptr()) != reinterpret_cast<PyTypeObject*>(ndarray_.ptr())) return py::none();
    const py::array a = py::reinterpret_borrow<py::array>(x);
    const py::ssize_t nd = a.ndim();
    if (nd < 2) return py::none();
    const int64_t n = a.shape(0);
    if (n < 1 || n > limit) return py::none();
    const bool dtype_ok = itemsize_ == 4 ? has_dtype<float>(a) : has_dtype<double>(a);
    if (!dtype_ok || !(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
      return py::none();
    bool shape_ok = false;
    for (const std::vector<int64_t>& shape : shapes_) {
      if (static_cast<py::ssize_t>(shape.size()) != nd - 1) continue;
      shape_ok = true;
      for (py::ssize_t i = 1; i < nd && shape_ok; ++i) shape_ok = a.shape(i) == shape[static_cast<std::size_t>(i - 1)];
      if (shape_ok) break;
    }
    if (!shape_ok) return py::none();
    const uint64_t changes = g_layer_changes.load(std::memory_order_acquire);
    if (!(tracked_ && checked_ && changes == checked_changes_)) {
      if (!objects_unchanged(items_, settings_)) return py::none();
      checked_ = true;
      checked_changes_ = changes;
    }
    std::string forced;
    if (PyObject* name = PyDict_GetItemString(forced_.ptr(), "fwd")) {  // borrowed
      if (name != Py_None) forced = py::reinterpret_borrow<py::str>(name).cast<std::string>();
    }
    return plan_->run_checked(a.data(), n, forced);
  }

 private:
  py::object plan_obj_;  // keeps plan_ alive
  const PyPlan* plan_;
  py::list items_, settings_;
  py::dict forced_;
  std::vector<std::vector<int64_t>> shapes_;
  bool tracked_;
  py::object ndarray_;
  std::size_t itemsize_ = 4;
  // The count of changes when objects_unchanged last passed (the GIL orders the calls).
  mutable bool checked_ = false;
  mutable uint64_t checked_changes_ = 0;
};

}  // namespace

void bind_plan(py::module_& m) {
  PyObject* note = PyCFunction_New(&note_layer_change_def, nullptr);
  if (note == nullptr) throw py::error_already_set();
  m.add_object("note_layer_change", py::reinterpret_steal<py::object>(note));
  m.def("layer_changes", []() { return g_layer_changes.load(std::memory_order_acquire); },
        "How many layer changes note_layer_change has counted (private: tests).");
  m.def("objects_unchanged", &objects_unchanged, py::arg("items"), py::arg("settings"),
        "Whether dict.get(key) is value for every (dict, key, value) of items and getattr(obj, name) is value "
        "for every (obj, name, value) of settings (private: CompiledInference.current()).");
  py::class_<ReadyPredict>(m, "ReadyPredict",
                           "predict's one-call path (private: CompiledInference.ready, models/compiled.py).")
      .def(py::init<const py::object&, py::list, py::list, py::dict, std::vector<std::vector<int64_t>>, bool>(),
           py::arg("plan"), py::arg("items"), py::arg("settings"), py::arg("forced"), py::arg("shapes"),
           py::arg("tracked"))
      .def("__call__", &ReadyPredict::call, py::arg("x"), py::arg("batch_size"),
           "The plan's output for x, or None where x, batch_size or the model's state asks for the Python path.");
  py::class_<PyPlan>(m, "InferencePlan",
                     "A model's inference pass as one call (private: built by convforge.models.compiled).")
      .def(py::init<const std::string&>(), py::arg("dtype"))
      .def_property_readonly("dtype", &PyPlan::dtype)
      .def("input", [](PyPlan& p, const std::vector<int64_t>& dims) {
        return p.with_plan([&](auto& plan) { return plan.input(dims); });
      }, py::arg("dims"))
      .def("conv2d", &PyPlan::conv2d, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
           py::arg("padding"), py::arg("dilation"), py::arg("bn") = py::none(), py::arg("relu") = false)
      .def("dense", &PyPlan::dense, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("relu") = false)
      .def("conv_transpose", &PyPlan::conv_transpose, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
           py::arg("padding"), py::arg("out_hw"))
      .def("depthwise", &PyPlan::depthwise, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
           py::arg("padding"), py::arg("dilation"))
      .def("maxpool2d", &PyPlan::maxpool2d, py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
           py::arg("out_hw"))
      .def("relu", [](PyPlan& p, int x) { return p.with_plan([&](auto& plan) { return plan.relu(x); }); },
           py::arg("x"))
      .def("softmax", [](PyPlan& p, int x) { return p.with_plan([&](auto& plan) { return plan.softmax(x); }); },
           py::arg("x"))
      .def("batchnorm", &PyPlan::batchnorm, py::arg("x"), py::arg("bn"))
      .def("global_pool", [](PyPlan& p, int x, bool max, const std::vector<int64_t>& out_dims) {
        return p.with_plan([&](auto& plan) { return plan.global_pool(x, max, out_dims); });
      }, py::arg("x"), py::arg("max"), py::arg("out_dims"))
      .def("elementwise", &PyPlan::elementwise, py::arg("kind"), py::arg("xs"))
      .def("concat", [](PyPlan& p, const std::vector<int>& xs) {
        return p.with_plan([&](auto& plan) { return plan.concat(xs); });
      }, py::arg("xs"))
      .def("reorder", [](PyPlan& p, int x, const std::vector<int64_t>& dims) {
        return p.with_plan([&](auto& plan) { return plan.reorder(x, dims); });
      }, py::arg("x"), py::arg("dims"))
      .def("upsample", [](PyPlan& p, int x, int64_t factor_h, int64_t factor_w) {
        return p.with_plan([&](auto& plan) { return plan.upsample(x, factor_h, factor_w); });
      }, py::arg("x"), py::arg("factor_h"), py::arg("factor_w"))
      .def("avgpool", &PyPlan::avgpool, py::arg("x"), py::arg("kernel"), py::arg("stride"), py::arg("pad_top_left"),
           py::arg("out_hw"), py::arg("inv"))
      .def("window", [](PyPlan& p, int x, int64_t top, int64_t bottom, int64_t left, int64_t right) {
        return p.with_plan([&](auto& plan) { return plan.window(x, top, bottom, left, right); });
      }, py::arg("x"), py::arg("top"), py::arg("bottom"), py::arg("left"), py::arg("right"))
      .def("leaky_relu", [](PyPlan& p, int x, double slope) {
        return p.with_plan([&](auto& plan) { return plan.leaky_relu(x, slope); });
      }, py::arg("x"), py::arg("slope"))
      .def("gelu", [](PyPlan& p, int x) { return p.with_plan([&](auto& plan) { return plan.gelu(x); }); },
           py::arg("x"))
      .def("clip_max", [](PyPlan& p, int x, double max_value) {
        return p.with_plan([&](auto& plan) { return plan.clip_max(x, max_value); });
      }, py::arg("x"), py::arg("max_value"))
      .def("rescale", [](PyPlan& p, int x, double scale, double offset) {
        return p.with_plan([&](auto& plan) { return plan.rescale(x, scale, offset); });
      }, py::arg("x"), py::arg("scale"), py::arg("offset") = 0.0)
      .def("reshape", [](PyPlan& p, int x, const std::vector<int64_t>& dims) {
        return p.with_plan([&](auto& plan) { return plan.reshape(x, dims); });
      }, py::arg("x"), py::arg("dims"))
      .def("finish", [](PyPlan& p, const std::vector<int>& outputs) {
        p.with_plan([&](auto& plan) { plan.finish(outputs); });
      }, py::arg("outputs"))
      .def("dims", [](const PyPlan& p, int v) {
        return p.with_plan([&](const auto& plan) { return plan.dims(v); });
      }, py::arg("value"))
      .def("describe", [](const PyPlan& p) { return p.with_plan([](const auto& plan) { return plan.describe(); }); })
      .def_property(
          "keep_prepared",
          [](const PyPlan& p) { return p.with_plan([](const auto& plan) { return plan.keeps_prepared(); }); },
          [](PyPlan& p, bool keep) { p.with_plan([&](auto& plan) { plan.keep_prepared(keep); }); },
          "Whether convs keep transformed weights (Winograd's) between runs, so that small batches may "
          "take Winograd (default True); False, with chunk_samples = 0: the layers' own algorithm choices, "
          "bit for bit.")
      .def_property(
          "blocked_layout",
          [](const PyPlan& p) { return p.with_plan([](const auto& plan) { return plan.blocked_layout(); }); },
          [](PyPlan& p, bool on) { p.with_plan([&](auto& plan) { plan.blocked_layout(on); }); },
          "Whether values between convs may be kept in channel blocks of 16 (NCHW16c) where every op that "
          "makes or reads them takes that layout (default True; float32 plans with AVX-512 convs). The same "
          "bits either way.")
      .def("blocked_values", [](const PyPlan& p, int64_t mb, const std::string& forced) {
        return p.with_plan([&](const auto& plan) { return plan.blocked_values(mb, forced); });
      }, py::arg("batch"), py::arg("forced_conv") = "",
         "The values a chunk of `batch` samples keeps in channel blocks of 16 (for tests).")
      .def_property(
          "chunk_samples",
          [](const PyPlan& p) { return p.with_plan([](const auto& plan) { return plan.chunk_samples(); }); },
          [](PyPlan& p, int64_t n) { p.with_plan([&](auto& plan) { plan.chunk_samples(n); }); },
          "A batch of more than this many samples runs through the plan in chunks of at most this many "
          "(chunk_sizes), each thread running whole chunks where there are enough; finish() sets it so "
          "that a chunk's values fit a core's L2. 0: every batch whole (the layers' choices for its size).")
      .def_property(
          "places",
          [](const PyPlan& p) {
            return p.with_plan([](const auto& plan) -> std::string {
              using Places = typename std::remove_reference_t<decltype(plan)>::Places;
              switch (plan.places()) {
                case Places::shared_slots: return "slots";
                case Places::own: return "own";
                default: return "auto";
              }
            });
          },
          [](PyPlan& p, const std::string& name) {
            p.with_plan([&](auto& plan) {
              using Places = typename std::remove_reference_t<decltype(plan)>::Places;
              if (name == "auto") plan.places(Places::automatic);
              else if (name == "slots") plan.places(Places::shared_slots);
              else if (name == "own") plan.places(Places::own);
              else throw py::value_error("places must be 'auto', 'slots' or 'own', got '" + name + "'");
            });
          },
          "Where the values live in the arena: 'slots' (shared by values one after another), 'own' (a "
          "place each), or 'auto' (default: own places for a small batch split among a thread team).")
      .def("own_places", [](const PyPlan& p, int64_t mb) {
        return p.with_plan([&](const auto& plan) { return plan.own_places(mb); });
      }, py::arg("batch"), "Whether a run of `batch` samples at the present thread count gives each value a place of its own.")
      .def("first_op_beside_compare", [](const PyPlan& p, int64_t mb) {
        return p.with_plan([&](const auto& plan) { return plan.first_op_overlaps(mb); });
      }, py::arg("batch"),
           "Whether a run of `batch` samples in a thread team runs the first op on one thread while the "
           "others compare the kept weights (for tests).")
      .def("serial_samples", [](const PyPlan& p) {
        return p.with_plan([](const auto& plan) { return plan.serial_samples(); });
      }, "The largest batch whose run stays on one thread whatever the thread count (0: none, or the "
         "plan is not finished yet).")
      .def("chunk_sizes", [](const PyPlan& p, int64_t mb) {
        return p.with_plan([&](const auto& plan) { return plan.chunk_sizes(mb); });
      }, py::arg("batch"), "The samples of each chunk a batch of `batch` runs in, in order.")
      .def("run", &PyPlan::run, py::arg("inputs"), py::arg("conv_algorithm") = py::none(),
           "The outputs for a batch: one array per output, (batch, *dims). conv_algorithm: the conv2d "
           "forward algorithm to force (ValueError where it does not apply).")
      .def("profile", &PyPlan::profile, py::arg("inputs"), py::arg("runs"), py::arg("conv_algorithm") = py::none(),
           py::arg("per_thread") = false,
           "Each op's mean wall time in seconds (one entry per line of describe()) over `runs` runs of the "
           "batch; the outputs are discarded. per_thread: an (ops, 1 + threads) array, that time and then "
           "each thread's time in the op's parallel loops (zeros where the op ran without the thread team "
           "or on one thread).");
}

}  // namespace convforge::bindings
