"""Fuzzing the public API (convforge.functional) with Hypothesis.

Every call gets random shapes (1-sized dims, kernel == input, huge strides, paddings and
dilations), every padding form, float32/float64 or a bad dtype, every memory layout (C, Fortran,
reversed, strided, transposed, broadcast, read-only, unaligned, pickled dtype), values with NaN,
infinities, -0.0 and subnormals, an ISA cap and a thread count. The property, for every call:

* it raises the TypeError/ValueError the docs promise, with the expected message, or
* it agrees with the NumPy oracle: max-pool and ReLU exactly (NaN positions, -0.0 vs +0.0,
  indices), conv2d within the summation error bound of tests/test_conv2d.py, with NaN/inf at
  exactly the oracle's positions.

Anything else (another exception, a crash, a hang, a wrong value) is a failure.

Size of the run: ``CONVFORGE_FUZZ_EXAMPLES`` examples per test (default 600: about 4,000
executions in 12 s on 2 cores), derandomized so CI always runs the same examples. A long random
run (docs/RELIABILITY.md):

    CONVFORGE_FUZZ_EXAMPLES=20000 CONVFORGE_FUZZ_RANDOM=1 python -m pytest tests/test_fuzz.py

The number of executions is printed at the end ("fuzz: N executions ...").
"""

from __future__ import annotations

import collections
import os
import pickle
import time
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
# When an example fails, Hypothesis's pytest plugin imports libcst (to write a patch file), whose
# DeprecationWarning the suite's filterwarnings=error turns into an INTERNALERROR that hides the
# falsifying example. Import it now, quietly, so that later imports are no-ops.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # pragma: no cover - libcst not installed: nothing to pre-import
        pass
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import convforge  # noqa: E402
from convforge import _core, _params  # noqa: E402
from convforge import functional as F  # noqa: E402
from convforge import reference as R  # noqa: E402

EXAMPLES = int(os.environ.get("CONVFORGE_FUZZ_EXAMPLES", "600"))
RANDOM = os.environ.get("CONVFORGE_FUZZ_RANDOM", "") not in ("", "0")
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

_ORDER = ["ref", "avx2", "avx512"]
SUPPORTED_ISAS = _ORDER[: _ORDER.index(convforge.build_info()["isa_detected"]) + 1]
BIG = _params.MAX_PARAM
EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps), np.dtype(np.float64): float(np.finfo(np.float64).eps)}

# Executions per test and outcome, printed at the end of the module.
COUNTS: collections.Counter = collections.Counter()
REASONS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    start = time.perf_counter()
    yield
    total = sum(COUNTS.values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(COUNTS.items()))
    line = (f"fuzz: {total} executions in {time.perf_counter() - start:.1f} s "
            f"({EXAMPLES} examples per test, {'random' if RANDOM else 'derandomized'}; {detail})")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even with -q and output capture
            reporter.write_line(line)
    else:  # pragma: no cover
        print(line)
    if os.environ.get("CONVFORGE_FUZZ_REFUSALS"):  # debugging the mix of inputs: why calls were refused
        for reason, count in REASONS.most_common(40):
            print(f"{count:6d}  {reason}")


class Setting:
    """ISA cap and thread count for one example, restored afterwards."""

    def __init__(self, isa, threads):
        self.isa, self.threads = isa, threads

    def __enter__(self):
        self.saved = (_core._isa_cap(), convforge.get_num_threads())
        _core._set_isa_cap(self.isa)
        convforge.set_num_threads(self.threads)

    def __exit__(self, *exc):
        _core._set_isa_cap(self.saved[0])
        convforge.set_num_threads(self.saved[1])

    def __repr__(self):
        return f"Setting(isa={self.isa!r}, threads={self.threads})"


settings_st = st.builds(Setting, st.sampled_from(SUPPORTED_ISAS), st.sampled_from([1, 2]))

# ---------------------------------------------------------------------------------------------
# Values and layouts
# ---------------------------------------------------------------------------------------------

F32_SUB = float(np.float32(1e-40))
NAN_PAYLOAD = float(np.array([0x7FC00ABC], np.uint32).view(np.float32)[0])  # a quiet NaN with a payload
SPECIALS = [np.nan, -np.nan, NAN_PAYLOAD, np.inf, -np.inf, -0.0, 0.0, F32_SUB, -F32_SUB]


@st.composite
def values(draw, shape, dtype, kind=None, specials=True):
    """An array of `shape` and `dtype` (C order) with one of several value distributions."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = kind or draw(st.sampled_from(["ints", "normal", "scaled", "ties"]))
    if kind == "ints":  # exact in float32 for the sizes drawn here
        a = rng.integers(-4, 5, size=shape).astype(np.float64)
    elif kind == "ties":
        a = rng.integers(0, 3, size=shape).astype(np.float64) - 1.0
    elif kind == "scaled":  # wide but overflow-free magnitudes: products stay below 1e30
        a = rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 7, size=shape)
    else:
        a = rng.standard_normal(shape)
    a = np.array(a, np.float64)  # 0-d stays an array, not a NumPy scalar
    if specials and a.size and draw(st.integers(0, 3)) == 0:
        k = draw(st.integers(1, min(4, a.size)))
        flat = a.reshape(-1)
        flat[rng.choice(a.size, size=k, replace=False)] = [draw(st.sampled_from(SPECIALS)) for _ in range(k)]
    with np.errstate(over="ignore", under="ignore"):
        return np.array(a, dtype)


LAYOUTS = ["C", "C", "C", "fortran", "reversed", "strided", "transposed", "broadcast", "read-only", "unaligned",
           "pickled-dtype"]


def relayout(a: np.ndarray, layout: str, axis: int) -> np.ndarray:
    """A view with the same values as `a` (for 'broadcast': a's first slice along `axis`, repeated)
    laid out in memory as `layout`."""
    if a.ndim == 0 or layout == "C":
        return a
    axis %= a.ndim
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "reversed":
        return np.flip(np.flip(a, axis).copy(), axis)
    if layout == "strided":
        return np.repeat(a, 2, axis=axis)[(slice(None),) * axis + (slice(None, None, 2),)]
    if layout == "transposed":
        perm = np.roll(np.arange(a.ndim), 1)
        return np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
    if layout == "broadcast":
        return np.broadcast_to(np.take(a, [0], axis=axis), a.shape)
    if layout == "read-only":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "unaligned":
        raw = np.zeros(a.nbytes + 1, np.uint8)
        b = raw[1:].view(a.dtype).reshape(a.shape)
        b[...] = a
        return b
    return pickle.loads(pickle.dumps(a))  # equal dtype, distinct dtype object


@st.composite
def laid_out(draw, a):
    return relayout(a, draw(st.sampled_from(LAYOUTS)), draw(st.integers(0, 3)))


BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.float16, np.longdouble, np.complex64, object, ">f4", ">f8"]


def as_bad_dtype(a, dtype):
    with np.errstate(all="ignore"):  # inf/NaN to int: whatever value, the call must refuse the dtype
        return a.astype(np.float64).astype(dtype)


def same_nonfinite(got, want, what):
    for pred in (np.isnan, np.isposinf, np.isneginf):
        mismatch = pred(got) != pred(want)
        assert not mismatch.any(), f"{what}: {pred.__name__} differs at {np.argwhere(mismatch)[:5].tolist()}"


def bits_equal_nan_aware(got, want, what):
    """Exact: same NaN positions, same bits everywhere else (-0.0 is not +0.0)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    gn, wn = np.isnan(got), np.isnan(want)
    assert (gn == wn).all(), f"{what}: NaN positions differ"
    g, w = np.ascontiguousarray(got[~gn]), np.ascontiguousarray(want[~wn])
    if g.size == 0:
        return
    bad = g.view(np.uint8).reshape(g.shape + (-1,)) != w.view(np.uint8).reshape(w.shape + (-1,))
    assert not bad.any(), f"{what}: {g[bad.any(-1)][:5]} != {w[bad.any(-1)][:5]} (bitwise)"


def within_bound(got, want, magnitude, n_terms, dtype, what):
    """tests/test_conv2d.py's bound |got - want| <= 2 n eps sum|terms| + tiny on the finite
    elements; NaN/inf exactly where the float64 oracle has them."""
    dtype = np.dtype(dtype)
    assert got.dtype == dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    same_nonfinite(got, want, what)
    fin = np.isfinite(want)
    bound = 2.0 * n_terms * EPS[dtype] * magnitude[fin] + float(np.finfo(dtype).tiny)
    err = np.abs(got[fin].astype(np.float64) - want[fin])
    if err.size:
        worst = int(np.argmax(err - bound))
        assert err[worst] <= bound[worst], f"{what}: error {err[worst]:.3g} > bound {bound[worst]:.3g}"


# ---------------------------------------------------------------------------------------------
# A conv2d oracle that never materialises the padding: each kernel tap gathers the input pixels
# it reads (zeros where it reads padding), exactly the arithmetic of convforge.reference.conv2d
# (same taps in the same order, same products) without np.pad. It is held to the reference on
# every example whose padded input is small, and used alone when the padding is huge (2**31 - 1).
# ---------------------------------------------------------------------------------------------


def _taps(n_out, step, offset, size):
    pos = np.arange(n_out, dtype=np.int64) * step + offset
    ok = (pos >= 0) & (pos < size)
    return np.where(ok, pos, 0), ok


def _gathered(x, rows, row_ok, cols, col_ok):
    patch = x[:, :, rows][:, :, :, cols]
    return np.where(row_ok[:, None] & col_ok[None, :], patch, 0.0)


def conv2d_gather(x, w, b, stride, pads, dilation, out_hw):
    x, w = x.astype(np.float64), w.astype(np.float64)
    (sh, sw), (pt, _, pl, _), (dh, dw) = stride, pads, dilation
    y = np.zeros((x.shape[0], w.shape[0], *out_hw))
    for r in range(w.shape[2]):
        rows, row_ok = _taps(out_hw[0], sh, r * dh - pt, x.shape[2])
        for s in range(w.shape[3]):
            cols, col_ok = _taps(out_hw[1], sw, s * dw - pl, x.shape[3])
            y += np.einsum("nchw,kc->nkhw", _gathered(x, rows, row_ok, cols, col_ok), w[:, :, r, s])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def conv2d_backward_gather(dy, x, w, stride, pads, dilation, out_hw):
    dy, x, w = dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64)
    (sh, sw), (pt, _, pl, _), (dh, dw_) = stride, pads, dilation
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for r in range(w.shape[2]):
        rows, row_ok = _taps(out_hw[0], sh, r * dh - pt, x.shape[2])
        for s in range(w.shape[3]):
            cols, col_ok = _taps(out_hw[1], sw, s * dw_ - pl, x.shape[3])
            dw[:, :, r, s] = np.einsum("nkhw,nchw->kc", dy, _gathered(x, rows, row_ok, cols, col_ok))
            t = np.einsum("nkhw,kc->nchw", dy, w[:, :, r, s])[:, :, row_ok][:, :, :, col_ok]
            # One tap reads distinct pixels (stride >= 1), so a plain indexed add is exact.
            dx[:, :, rows[row_ok][:, None], cols[col_ok][None, :]] += t
    return dx, dw, dy.sum(axis=(0, 2, 3))


def _padded_elements(x_shape, pads):
    return x_shape[0] * x_shape[1] * (x_shape[2] + pads[0] + pads[1]) * (x_shape[3] + pads[2] + pads[3])


# ---------------------------------------------------------------------------------------------
# conv2d and conv2d_backward
# ---------------------------------------------------------------------------------------------

small_int = st.integers(1, 3)


def pairish(v):
    return st.one_of(v, st.tuples(v, v), st.lists(v, min_size=2, max_size=2))


def small_padding(v=st.integers(0, 3)):
    return st.one_of(pairish(v), st.tuples(st.tuples(v, v), st.tuples(v, v)),
                     st.sampled_from(["same", "valid", "SAME", "Valid"]))


HUGE = [BIG, 2**20, np.int64(BIG), 2**31 - 2]
INVALID = {  # a bad value for one parameter; _params says what the error is
    "stride": [0, -1, BIG + 1, 2**64, 1.0, True, np.bool_(False), None, "1", (1, 2, 3), (), np.array([1, 1])],
    "dilation": [0, -2, 2.5, False, np.float32(1), [1, 0], (BIG + 1, 1)],
    "padding": [-1, BIG + 1, 0.5, -2**64, "full", "", b"same", ((1,), (1, 1)), (1, 2, 3), None, ((0, 0), (0, -1))],
}


@st.composite
def conv_geometry(draw):
    """stride, padding, dilation: mostly small and valid; sometimes one of them huge (2**20 up to
    2**31 - 1) or invalid."""
    kind = draw(st.sampled_from(["small"] * 6 + ["huge-stride", "huge-dilation", "huge-padding", "invalid"]))
    geo = dict(stride=draw(pairish(small_int)), padding=draw(small_padding()),
               dilation=draw(pairish(st.sampled_from([1, 1, 1, 2, 3]))))
    if kind == "huge-stride":
        geo["stride"] = draw(pairish(st.one_of(small_int, st.sampled_from(HUGE))))
    elif kind == "huge-dilation":  # valid when the kernel is 1 wide or the padding is 'same' (huge)
        geo["dilation"] = draw(pairish(st.one_of(small_int, st.sampled_from(HUGE))))
        geo["padding"] = draw(st.sampled_from(["same", "same", 0]))
    elif kind == "huge-padding":  # valid (small output) with a huge stride, else "too large"
        geo["padding"] = draw(small_padding(st.one_of(st.integers(0, 3), st.sampled_from(HUGE))))
        geo["stride"] = draw(st.one_of(st.sampled_from(HUGE), pairish(st.one_of(small_int, st.sampled_from(HUGE)))))
    elif kind == "invalid":
        name = draw(st.sampled_from(sorted(INVALID)))
        geo[name] = draw(st.sampled_from(INVALID[name]))
    return geo


ARRAY_FAULTS = ["none"] * 24 + ["dtype", "mixed", "not-array", "ndim", "empty", "channels", "bias-shape",
                                "dy-shape"]


@st.composite
def conv_case(draw):
    n, c, k = draw(small_int), draw(st.integers(1, 6)), draw(st.integers(1, 20))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 24))
    r = draw(st.sampled_from([1, 1, 2, 3, 3, 4, 5, h]))  # kernel == input is among the draws
    s = draw(st.sampled_from([1, 1, 2, 3, 3, 4, 5, w]))
    return dict(
        x_shape=(n, c, h, w), w_shape=(k, c, r, s), bias=draw(st.booleans()), **draw(conv_geometry()),
        dtype=draw(st.sampled_from([np.float32, np.float64])), fault=draw(st.sampled_from(ARRAY_FAULTS)),
        setting=draw(settings_st),
    )


def _conv_prediction(case):
    """(stride, pads, dilation, out_hw) or the (exception type, message fragment) expected."""
    x_shape, w_shape = case["x_shape"], case["w_shape"]
    try:
        stride, pads, dilation, out_hw = _params.conv_params(
            x_shape[2:], w_shape[2:], case["stride"], case["padding"], case["dilation"])
    except (TypeError, ValueError) as err:
        return None, (type(err), str(err))
    pixels = out_hw[0] * out_hw[1]
    if max(x_shape[0] * w_shape[0], w_shape[1] * w_shape[2] * w_shape[3]) * pixels > _params.MAX_ELEMENTS:
        return None, (ValueError, "too large")
    return (stride, pads, dilation, out_hw), None


def _inject(fault, draw, arrays, dtype):
    """Break one array as `fault` says; returns the expected (type, message fragment)."""
    names = [n for n in ("dy", "x", "w", "b") if arrays.get(n) is not None]
    name = draw(st.sampled_from(names))
    a = arrays[name]
    if fault == "dtype":
        arrays[name] = as_bad_dtype(a, draw(st.sampled_from(BAD_DTYPES)))
        return TypeError, f"{name} must be float32 or float64"
    if fault == "mixed":
        other = np.dtype(np.float64 if np.dtype(dtype) == np.float32 else np.float32)
        arrays[name] = a.astype(other)
        if name == "x":  # x is what the others are compared with: the first other one is named
            return TypeError, f"is {np.dtype(dtype).name} but x is {other.name}"
        return TypeError, f"{name} is {other.name} but x is"
    if fault == "not-array":
        arrays[name] = draw(st.sampled_from([a.tolist(), None if name != "b" else [1.0], 1.5, "x"]))
        return TypeError, f"{name} must be a numpy.ndarray"
    if fault == "ndim":
        arrays[name] = a.reshape(a.shape + (1,)) if draw(st.booleans()) or a.ndim == 1 else a[0]
        return ValueError, f"{name} must have {a.ndim} dimensions"
    # empty: any axis but the batch axis of x and dy, which may be empty (an empty result)
    axis = draw(st.integers(1 if name in ("x", "dy") and a.ndim > 1 else 0, a.ndim - 1))
    arrays[name] = np.take(a, [], axis=axis)
    return ValueError, f"{name} is empty"


def _check_refusal(err, expected, what):
    REASONS[f"{what}: {str(err)[:60]}"] += 1
    assert expected is not None, f"{what}: refused a valid call: {type(err).__name__}: {err}"
    exc, fragment = expected
    assert isinstance(err, exc), f"{what}: expected {exc.__name__}({fragment!r}), got {type(err).__name__}: {err}"
    assert fragment in str(err), f"{what}: expected {fragment!r} in {err}"


def _conv_oracle(x, w, b, dy, case, geometry, backward):
    stride, pads, dilation, out_hw = geometry
    args = (stride, pads, dilation, out_hw)
    with np.errstate(invalid="ignore", over="ignore"):
        if backward:
            got = conv2d_backward_gather(dy, x, w, *args)
            mag = conv2d_backward_gather(np.abs(dy), np.abs(x), np.abs(w), *args)
        else:
            got = conv2d_gather(x, w, b, *args)
            mag = conv2d_gather(np.abs(x), np.abs(w), None if b is None else np.abs(b), *args)
        if _padded_elements(x.shape, pads) <= 1 << 16:  # the reference itself is affordable: agree
            kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
            ref = R.conv2d_backward(dy, x, w, **kw) if backward else R.conv2d(x, w, b, **kw)
            for g, r_, m in zip(*((t if backward else (t,)) for t in (got, ref, mag))):
                # Same taps, same order; only einsum's own reduction order may differ (by an ulp).
                within_bound(g, r_, m, 4 * max(g.size, 1), np.float64, "gather oracle vs convforge.reference")
    return got, mag


def _run_conv(draw, backward):
    case = draw(conv_case())
    dtype = case["dtype"]
    geometry, expected = _conv_prediction(case)
    if geometry is not None:
        out_hw = geometry[3]
        # Keep the oracle cheap; huge *parameters* with small outputs are what is being fuzzed.
        assume(case["x_shape"][0] * case["w_shape"][0] * out_hw[0] * out_hw[1] <= 20000)
    x = draw(values(case["x_shape"], dtype))
    w = draw(values(case["w_shape"], dtype))
    b = draw(values((case["w_shape"][0],), dtype)) if case["bias"] and not backward else None
    dy = None
    if backward:
        dy_shape = (case["x_shape"][0], case["w_shape"][0], *(geometry[3] if geometry else (1, 1)))
        dy = draw(values(dy_shape, dtype))
    arrays = {"x": draw(laid_out(x)), "w": draw(laid_out(w)), "b": None if b is None else draw(laid_out(b)),
              "dy": None if dy is None else draw(laid_out(dy))}
    fault = case["fault"]
    if fault == "channels":
        arrays["w"] = np.concatenate([arrays["w"], arrays["w"][:, :1]], axis=1)
        expected = (ValueError, f"x has {case['x_shape'][1]} channels but w expects {case['x_shape'][1] + 1}")
    elif fault == "bias-shape" and not backward:
        arrays["b"] = np.zeros(case["w_shape"][0] + 1, dtype)
        expected = (ValueError, "b must have shape")
    elif fault == "dy-shape" and backward and geometry is not None:
        arrays["dy"] = np.zeros((dy.shape[0], dy.shape[1], dy.shape[2] + 1, dy.shape[3]), dtype)
        expected = (ValueError, "dy must have the shape of conv2d's output")
    elif fault in ("dtype", "mixed", "not-array", "ndim", "empty"):
        expected = _inject(fault, draw, arrays, dtype)
    return case, geometry, expected, arrays


@SETTINGS
@given(st.data())
def test_fuzz_conv2d(data):
    case, geometry, expected, a = _run_conv(data.draw, backward=False)
    kwargs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    with case["setting"]:
        try:
            y = F.conv2d(a["x"], a["w"], a["b"], **kwargs)
        except (TypeError, ValueError) as err:
            COUNTS["conv2d refused"] += 1
            _check_refusal(err, expected, "conv2d")
            return
    COUNTS["conv2d computed"] += 1
    assert expected is None, f"conv2d accepted a call that must fail with {expected}"
    want, mag = _conv_oracle(a["x"], a["w"], a["b"], None, case, geometry, backward=False)
    n_terms = case["w_shape"][1] * case["w_shape"][2] * case["w_shape"][3] + 1
    within_bound(y, want, mag, n_terms, case["dtype"], "conv2d")


@SETTINGS
@given(st.data(), st.booleans(), st.booleans())
def test_fuzz_conv2d_backward(data, need_input_grad, need_bias_grad):
    case, geometry, expected, a = _run_conv(data.draw, backward=True)
    kwargs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    with case["setting"]:
        try:
            dx, dw, db = F.conv2d_backward(a["dy"], a["x"], a["w"], **kwargs, need_input_grad=need_input_grad,
                                           need_bias_grad=need_bias_grad)
        except (TypeError, ValueError) as err:
            COUNTS["conv2d_backward refused"] += 1
            _check_refusal(err, expected, "conv2d_backward")
            return
    COUNTS["conv2d_backward computed"] += 1
    assert expected is None, f"conv2d_backward accepted a call that must fail with {expected}"
    (dx_want, dw_want, db_want), (dx_mag, dw_mag, db_mag) = _conv_oracle(
        a["x"], a["w"], None, a["dy"], case, geometry, backward=True)
    n, k, r, s = case["x_shape"][0], case["w_shape"][0], case["w_shape"][2], case["w_shape"][3]
    pixels = n * geometry[3][0] * geometry[3][1]
    assert (dx is None) == (not need_input_grad) and (db is None) == (not need_bias_grad)
    if need_input_grad:
        within_bound(dx, dx_want, dx_mag, k * r * s, case["dtype"], "dx")
    within_bound(dw, dw_want, dw_mag, pixels, case["dtype"], "dw")
    if need_bias_grad:
        within_bound(db, db_want, db_mag, pixels, case["dtype"], "db")


# ---------------------------------------------------------------------------------------------
# max_pool2d and max_pool2d_backward: exact
# ---------------------------------------------------------------------------------------------

POOL_VALUES = [-2.0, -1.0, -0.0, 0.0, 1.0, np.nan, -np.nan, NAN_PAYLOAD, np.inf, -np.inf, F32_SUB, -F32_SUB,
               float(np.finfo(np.float32).max), -float(np.finfo(np.float32).max)]
pool_int = st.one_of(st.integers(1, 4), st.just(2))


@st.composite
def pool_case(draw):
    n, c = draw(small_int), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 20))
    # Windows up to one larger than the input (ceil mode clips them); no huge windows: the
    # reference loops over window offsets. Huge strides are fine.
    window = st.sampled_from([1, 2, 2, 2, 3, 3, 4, h, w, h + 1, w + 1])
    kernel = draw(pairish(window))
    stride = draw(st.one_of(st.none(), st.none(), pairish(st.sampled_from([1, 2, 2, 3, BIG, 2**20]))))
    pmax = min(kernel) // 2 if isinstance(kernel, (tuple, list)) else kernel // 2
    padding = draw(pairish(st.sampled_from([0, 0, min(1, pmax), pmax, pmax, pmax + 1])))  # pmax + 1: refused
    ceil_mode = draw(st.sampled_from([False, True, np.bool_(True)]))
    if draw(st.integers(0, 9)) == 0:  # one invalid parameter
        bad = draw(st.sampled_from([("kernel", 0), ("kernel", -1), ("kernel", BIG + 1), ("kernel", 2.0),
                                    ("kernel", None), ("kernel", (2, 2, 2)), ("stride", 0), ("stride", (1, 0)),
                                    ("stride", 1.5), ("stride", "2"), ("padding", -1), ("padding", "same"),
                                    ("padding", None), ("padding", BIG + 1), ("ceil_mode", 1), ("ceil_mode", None)]))
        kernel, stride, padding, ceil_mode = [bad[1] if bad[0] == n else v for n, v in
                                              zip(("kernel", "stride", "padding", "ceil_mode"),
                                                  (kernel, stride, padding, ceil_mode))]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = np.array(draw(st.lists(st.sampled_from(POOL_VALUES), min_size=1, max_size=6)), np.float32)
    x = rng.choice(pool, size=(n, c, h, w)).astype(dtype)  # few distinct values: ties and special windows
    fault = draw(st.sampled_from(["none"] * 20 + ["dtype", "not-array", "ndim", "empty"]))
    return x, kernel, stride, padding, ceil_mode, fault, draw(settings_st)


@SETTINGS
@given(st.data(), pool_case(), st.booleans())
def test_fuzz_max_pool2d(data, case, return_indices):
    x, kernel, stride, padding, ceil_mode, fault, setting = case
    expected = None
    try:  # the shared parameter rules predict the refusal, if any
        _params.pool_params(x.shape[2:], kernel, stride, padding, ceil_mode)
    except (TypeError, ValueError) as err:
        expected = (type(err), str(err))
    xv = data.draw(laid_out(x))
    x = np.array(xv)  # the values the call sees ('broadcast' repeats a slice)
    if fault != "none":
        arrays = {"x": xv}
        expected = _inject(fault, data.draw, arrays, x.dtype)
        xv = arrays["x"]
    with setting:
        try:
            got = F.max_pool2d(xv, kernel, stride, padding, ceil_mode, return_indices=return_indices)
        except (TypeError, ValueError) as err:
            COUNTS["max_pool2d refused"] += 1
            _check_refusal(err, expected, "max_pool2d")
            return
        COUNTS["max_pool2d computed"] += 1
        assert expected is None, f"max_pool2d accepted a call that must fail with {expected}"
        y, idx = got if return_indices else (got, None)
        want, want_idx = R.max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
        bits_equal_nan_aware(y, want.astype(x.dtype), "max_pool2d")
        if not return_indices:
            return
        plane = x.shape[2] * x.shape[3]
        assert idx.dtype == np.int64 and ((idx >= 0) & (idx < plane)).all(), "index out of range"
        np.testing.assert_array_equal(idx, want_idx)
        # backward: integer dy, so the float64 oracle's sums are exact in float32 too
        dyv = data.draw(laid_out(data.draw(values(y.shape, x.dtype, kind="ints", specials=False))))
        idxv = data.draw(laid_out(idx))
        dx = F.max_pool2d_backward(dyv, idxv, x.shape)
        bits_equal_nan_aware(dx, R.max_pool2d_backward(np.array(dyv), np.array(idxv), x.shape).astype(x.dtype),
                             "max_pool2d_backward")
        COUNTS["max_pool2d_backward computed"] += 1


@SETTINGS
@given(st.data())
def test_fuzz_max_pool2d_backward_indices(data):
    # Indices that did not come from max_pool2d: any value, dtype, shape or layout.
    n, c, oh, ow = (data.draw(st.integers(1, 3)) for _ in range(4))
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    dy = data.draw(values((n, c, oh, ow), dtype, kind="ints", specials=False))
    lo, hi = data.draw(st.sampled_from([(0, h * w)] * 6 + [(-3, h * w + 3), (-2**63, 2**63 - 1), (h * w - 1, h * w + 1)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    idx = rng.integers(lo, hi, size=dy.shape, dtype=np.int64, endpoint=False)
    idx_dtype = data.draw(st.sampled_from([np.int64] * 16 + [np.int32, np.uint64, np.float64, ">i8"]))
    shape_fault = data.draw(st.sampled_from([None] * 12 + ["indices", "input_shape"]))
    input_shape = (n, c, h, w)
    dyv, idx = data.draw(laid_out(dy)), data.draw(laid_out(idx))
    dy = np.array(dyv)
    expected = None
    if idx_dtype is not np.int64:
        idx = idx.astype(idx_dtype)
        expected = (TypeError, "indices must be int64")
    elif shape_fault == "indices":
        idx = idx[..., :-1] if ow > 1 else np.concatenate([idx, idx], axis=-1)
        expected = (ValueError, "indices must have the shape of dy")
    elif shape_fault == "input_shape":
        input_shape = data.draw(st.sampled_from([(n, c + 1, h, w), (n, c, h), (n, c, 0, w), (n, c, BIG + 1, w),
                                                 (n, c, h, 2**62), [n, c, h, 1.5]]))
        expected = (TypeError, "input_shape") if 1.5 in input_shape else (ValueError, "input_shape")
    elif ((idx < 0) | (idx >= h * w)).any():
        flat = np.array(idx).reshape(-1)
        bad = np.flatnonzero((flat < 0) | (flat >= h * w))[0]
        expected = (ValueError, f"indices[{bad}] = {flat[bad]} is outside the input plane of {h}x{w}")
    with data.draw(settings_st):
        try:
            dx = F.max_pool2d_backward(dyv, idx, input_shape)
        except (TypeError, ValueError) as err:
            COUNTS["max_pool2d_backward refused"] += 1
            _check_refusal(err, expected, "max_pool2d_backward")
            return
    COUNTS["max_pool2d_backward computed"] += 1
    assert expected is None, f"accepted a call that must fail with {expected}"
    bits_equal_nan_aware(dx, R.max_pool2d_backward(dy, np.array(idx), input_shape).astype(dtype), "max_pool2d_backward")


# ---------------------------------------------------------------------------------------------
# relu and relu_backward: exact, any shape, every out= form
# ---------------------------------------------------------------------------------------------

RELU_SIZES = st.one_of(st.integers(1, 40), st.sampled_from([63, 64, 65, 127, 128, 129, (1 << 16) + 5]))
OUT_FORMS = ["none"] * 4 + ["fresh", "x-itself", "view-of-x", "shifted-overlap", "strided", "unaligned",
                            "read-only", "wrong-dtype", "wrong-shape", "list"]


@st.composite
def relu_shape(draw):
    size = draw(RELU_SIZES)
    ndim = draw(st.integers(0, 5)) if size < 1000 else 1
    if ndim == 0:
        return ()
    dims = [1] * ndim
    dims[draw(st.integers(0, ndim - 1))] = size
    return tuple(dims)


@SETTINGS
@given(st.data(), relu_shape(), st.sampled_from([np.float32, np.float64]), st.sampled_from(OUT_FORMS), settings_st)
def test_fuzz_relu(data, shape, dtype, out_form, setting):
    x = data.draw(values(shape, dtype))
    if x.size and data.draw(st.booleans()):  # many specials, at tails and vector boundaries too
        flat = x.reshape(-1)
        where = data.draw(st.lists(st.integers(0, x.size - 1), max_size=8))
        flat[where] = [data.draw(st.sampled_from(SPECIALS)) for _ in where]
    dy = data.draw(values(shape, dtype))
    xv = data.draw(laid_out(x))
    expected, out = None, None
    if out_form == "fresh":
        out = np.full(shape, 7.0, dtype)
    elif out_form == "x-itself":
        xv = x.copy()
        out = xv
    elif out_form == "view-of-x" and x.ndim:
        xv = x.copy()
        out = xv[...]
    elif out_form == "shifted-overlap" and x.size > 1:
        buf = np.concatenate([x.reshape(-1), x.reshape(-1)[:1]])
        xv, out = buf[1:].reshape(shape), buf[:-1].reshape(shape)
    elif out_form == "strided" and x.ndim:
        out = relayout(np.zeros(shape, dtype), "strided", -1)
    elif out_form == "unaligned" and x.ndim:
        out = relayout(np.zeros(shape, dtype), "unaligned", 0)
    elif out_form == "read-only":
        out = np.zeros(shape, dtype)
        out.flags.writeable = False
        expected = (ValueError, "out is read-only")
    elif out_form == "wrong-dtype":
        out = np.zeros(shape, np.float64 if dtype == np.float32 else np.float32)
        expected = (ValueError, "out must be a")
    elif out_form == "wrong-shape":
        out = np.zeros(shape + (2,), dtype)
        expected = (ValueError, "out must be a")
    elif out_form == "list":
        out = x.tolist()
        expected = (TypeError, "out must be a numpy.ndarray")
    x = np.array(xv)  # the values the call sees, before an in-place call overwrites them
    want = R.relu(x).astype(dtype)
    with setting:
        try:
            y = F.relu(xv) if out is None else F.relu(xv, out=out)
        except (TypeError, ValueError) as err:
            COUNTS["relu refused"] += 1
            _check_refusal(err, expected, "relu")
            return
        COUNTS["relu computed"] += 1
        assert expected is None, f"relu accepted a call that must fail with {expected}"
        if out is not None:
            assert y is out
        bits_equal_nan_aware(np.asarray(y), want, "relu")
        nan = np.isnan(want)
        assert (np.asarray(y)[nan].view(np.uint8) == want[nan].view(np.uint8)).all(), "relu changed a NaN's bits"
        dyv, xv = data.draw(laid_out(dy)), data.draw(laid_out(x))
        dx = F.relu_backward(dyv, xv)
        COUNTS["relu_backward computed"] += 1
        assert dx.shape == x.shape and dx.dtype == x.dtype
        # dy where x > 0, else +0.0; R goes through float64, which keeps -0.0 and NaN payloads
        bits_equal_nan_aware(dx, R.relu_backward(np.array(dyv), np.array(xv)).astype(dtype), "relu_backward")


# ---------------------------------------------------------------------------------------------
# Garbage in any argument of any op: TypeError/ValueError or a correct answer, nothing else.
# ---------------------------------------------------------------------------------------------

X = np.random.default_rng(1).standard_normal((2, 3, 6, 7)).astype(np.float32)
W = np.random.default_rng(2).standard_normal((4, 3, 3, 3)).astype(np.float32)
Y, IDX = F.max_pool2d(X, 2, return_indices=True)
for _a in (X, W, Y, IDX):  # shared by every example: garbage such as out=X must not modify them
    _a.flags.writeable = False
GARBAGE = st.one_of(
    # ints: small (often valid) or at least 2**31 - 5 (refused, or valid with a tiny output); a
    # medium padding would be a valid multi-gigabyte problem, not garbage
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(BIG - 4, 2**70), st.integers(-2**70, -1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.binary(max_size=5), st.complex_numbers(max_magnitude=1e3),
    st.lists(st.integers(-3, 3), max_size=5).map(tuple), st.lists(st.integers(-3, 3), max_size=5),
    st.tuples(st.tuples(st.integers(-2, 2), st.integers(-2, 2)), st.tuples(st.integers(-2, 2), st.integers(-2, 2))),
    st.sampled_from([np.int64(2), np.uint64(2**64 - 1), np.float32(2), np.bool_(True), np.array(2), np.array([1, 2]),
                     X, W, X[0], X.astype(np.float64), X.astype(np.int32), IDX, Y, object(), {}, slice(1), Ellipsis,
                     np.broadcast_to(np.zeros(1, np.float32), (2**20, 2**20, 2**10, 2**10))]),
)
def _conv_geometry(k):
    return _params.conv_params(k["x"].shape[2:], k["w"].shape[2:], k["stride"], k["padding"], k["dilation"])


def _conv2d_oracle(**k):  # the gather oracle: huge paddings are fine
    geometry = _conv_geometry(k)
    return conv2d_gather(k["x"], k["w"], k["b"], *geometry[:3], geometry[3])


def _conv2d_backward_oracle(**k):
    geometry = _conv_geometry(k)
    dx, dw, db = conv2d_backward_gather(k["dy"], k["x"], k["w"], *geometry[:3], geometry[3])
    return dx if k["need_input_grad"] else None, dw, db if k["need_bias_grad"] else None


CALLS = {
    "conv2d": (dict(x=X, w=W, b=None, stride=1, padding=0, dilation=1), _conv2d_oracle),
    "conv2d_backward": (dict(dy=np.ones((2, 4, 4, 5), np.float32), x=X, w=W, stride=1, padding=0, dilation=1,
                             need_input_grad=True, need_bias_grad=True), _conv2d_backward_oracle),
    "max_pool2d": (dict(x=X, kernel_size=2, stride=None, padding=0, ceil_mode=False, return_indices=False),
                   lambda **k: R.max_pool2d(**k)),
    "max_pool2d_backward": (dict(dy=Y, indices=IDX, input_shape=X.shape), lambda **k: R.max_pool2d_backward(**k)),
    "relu": (dict(x=X, out=None), lambda **k: R.relu(k["x"])),
    "relu_backward": (dict(dy=X, x=X), lambda **k: R.relu_backward(**k)),
}


@SETTINGS
@given(st.sampled_from(sorted(CALLS)), st.data())
def test_fuzz_garbage_arguments(op, data):
    defaults, oracle = CALLS[op]
    kwargs = dict(defaults)
    for name in data.draw(st.lists(st.sampled_from(sorted(defaults)), min_size=1, max_size=2, unique=True)):
        kwargs[name] = data.draw(GARBAGE)
    if op.startswith("conv2d"):
        try:
            geometry = _conv_geometry(kwargs)
        except (AttributeError, IndexError, TypeError, ValueError):
            pass  # not a valid geometry: the call must refuse it
    try:
        got = getattr(F, op)(**kwargs)
    except (TypeError, ValueError):
        COUNTS["garbage refused"] += 1
        return
    COUNTS["garbage accepted"] += 1
    # Accepted: then the arguments were valid, and the answer is the oracle's.
    with np.errstate(all="ignore"):
        want = oracle(**kwargs)
    for g, r_ in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert (g is None) == (r_ is None)
        if g is not None:
            np.testing.assert_allclose(g, r_, rtol=1e-4, atol=1e-4)
