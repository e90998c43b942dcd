"""The catalogue of hostile inputs: every one gets a documented TypeError/ValueError whose
message names the argument, or a defined answer; never a crash, a huge allocation, an
out-of-range index or a silently wrong result.

tests/test_errors.py holds the first, hand-written cases; this file extends it systematically
(every argument position of every op) without repeating them. Each parametrized case is one
catalogue entry: ``pytest tests/test_hostile.py --collect-only -q | tail -1`` counts them.
docs/RELIABILITY.md describes what is guaranteed.
"""

from __future__ import annotations

import copy
import fractions
import os
import pickle
import re
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import convforge
from convforge import _core
from convforge import functional as F
from convforge import reference as R

_ORDER = ["ref", "avx2", "avx512"]
SUPPORTED_ISAS = _ORDER[: _ORDER.index(convforge.build_info()["isa_detected"]) + 1]


def _under_asan() -> bool:
    with open("/proc/self/maps") as maps:
        return "libasan" in maps.read()


UNDER_ASAN = _under_asan()

# ---------------------------------------------------------------------------------------------
# One valid call per op; every case below changes one argument.
# ---------------------------------------------------------------------------------------------

_rng = np.random.default_rng(20240611)
X = _rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
W = _rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
B = _rng.standard_normal(4).astype(np.float32)
DY = _rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
PY, PIDX = F.max_pool2d(X, 2, return_indices=True)  # (2, 3, 4, 4)
PDY = _rng.standard_normal(PY.shape).astype(np.float32)

DEFAULTS = {
    "conv2d": dict(x=X, w=W, b=B, stride=1, padding=0, dilation=1),
    "conv2d_backward": dict(dy=DY, x=X, w=W, stride=1, padding=0, dilation=1, need_input_grad=True,
                            need_bias_grad=True),
    "max_pool2d": dict(x=X, kernel_size=2, stride=None, padding=0, ceil_mode=False, return_indices=False),
    "max_pool2d_backward": dict(dy=PDY, indices=PIDX, input_shape=X.shape),
    "relu": dict(x=X, out=None),
    "relu_backward": dict(dy=X[::-1].copy(), x=X),
}


def call(op: str, **overrides):
    """``F.<op>`` with its valid default arguments, some replaced."""
    kwargs = {**DEFAULTS[op], **overrides}
    return getattr(F, op)(**kwargs)


def refused(exc, match, op, **overrides):
    with pytest.raises(exc, match=match):
        call(op, **overrides)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _same_answer(got, want):
    """Results of two calls: bit-identical arrays (or both None), tuples element by element."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, r in zip(got, want):
            _same_answer(g, r)
        return
    if want is None:
        assert got is None
        return
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
    assert _bits(got) == _bits(want)


# The float array arguments of the public API (name as in the messages).
FLOAT_POSITIONS = [
    ("conv2d", "x"), ("conv2d", "w"), ("conv2d", "b"),
    ("conv2d_backward", "dy"), ("conv2d_backward", "x"), ("conv2d_backward", "w"),
    ("max_pool2d", "x"), ("max_pool2d_backward", "dy"),
    ("relu", "x"), ("relu_backward", "dy"), ("relu_backward", "x"),
]
ALL_ARRAY_POSITIONS = FLOAT_POSITIONS + [("max_pool2d_backward", "indices"), ("relu", "out")]
FOUR_D_POSITIONS = [p for p in ALL_ARRAY_POSITIONS if p[0] != "relu" and p[0] != "relu_backward" and p[1] != "b"]


def _pid(p):
    return f"{p[0]}-{p[1]}"


def cases(*axes, skip=lambda *combo: False, ids=str):
    """The product of the parameter axes, less the combinations `skip` names (those that
    tests/test_errors.py already has, or that are valid), as pytest.params with readable ids."""
    import itertools

    out = []
    for combo in itertools.product(*axes):
        if not skip(*combo):
            out.append(pytest.param(*combo, id="-".join(ids(c) for c in combo)))
    return out


# ---------------------------------------------------------------------------------------------
# 1. dtypes: only float32 and float64 (native byte order) are accepted, and never converted.
# ---------------------------------------------------------------------------------------------

STRUCTURED = np.dtype([("a", np.float32)])
BAD_DTYPES = {
    **{np.dtype(t).name: np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                                np.uint32, np.uint64, np.bool_, np.float16, np.longdouble,
                                                np.complex64, np.complex128, np.clongdouble, object)},
    "str": np.dtype("U3"),
    "bytes": np.dtype("S4"),
    "void": np.dtype("V4"),
    "datetime64": np.dtype("M8[s]"),
    "timedelta64": np.dtype("m8[ms]"),
    "structured": STRUCTURED,
    "float32-byteswapped": np.dtype(">f4"),
    "float64-byteswapped": np.dtype(">f8"),
}
# Already in tests/test_errors.py::test_conv_rejects_dtype.
_IN_TEST_ERRORS = {("conv2d", arg, name) for arg in ("x", "w")
                   for name in ("int32", "int64", "uint8", "bool", "float16", "complex64", "object",
                                "float32-byteswapped")}


def _as_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "OUS":
        return a.astype(object).astype(dtype)
    if dtype.kind == "V" and dtype.fields is None:
        return np.zeros(a.shape, dtype)
    if dtype.fields is not None:
        out = np.zeros(a.shape, dtype)
        out["a"] = a
        return out
    if dtype.kind in "Mm":
        return a.astype(np.int64).astype(dtype)
    return a.astype(dtype)


def _id(v):
    return _pid(v) if isinstance(v, tuple) and len(v) == 2 else str(v)


@pytest.mark.parametrize("position, dtype_name", cases(FLOAT_POSITIONS, list(BAD_DTYPES), ids=_id,
                                                       skip=lambda p, d: (*p, d) in _IN_TEST_ERRORS))
def test_bad_dtype_is_refused(position, dtype_name):
    op, arg = position
    bad = _as_dtype(DEFAULTS[op][arg], BAD_DTYPES[dtype_name])
    refused(TypeError, f"{arg} must be float32 or float64", op, **{arg: bad})


BAD_INDEX_DTYPES = ["int8", "int32", "uint32", "uint64", "bool", "float32", "float64", "object", ">i8", "<U3"]


@pytest.mark.parametrize("dtype", [d for d in BAD_INDEX_DTYPES if d != "int32"])  # int32: test_errors.py
def test_bad_indices_dtype_is_refused(dtype):
    bad = _as_dtype(PIDX, np.dtype(dtype))
    refused(TypeError, "indices must be int64", "max_pool2d_backward", indices=bad)


MIXED = [
    ("conv2d", "w"), ("conv2d", "b"), ("conv2d_backward", "dy"), ("conv2d_backward", "x"), ("conv2d_backward", "w"),
    ("relu_backward", "dy"), ("relu_backward", "x"),
]


@pytest.mark.parametrize("position, other", cases(MIXED, ["float64", "float32"], ids=_id, skip=lambda p, o: (*p, o) in {
    ("conv2d", "w", "float64"), ("conv2d", "b", "float64"), ("conv2d_backward", "dy", "float64")}))
def test_mixed_float_dtypes_are_refused(position, other):
    op, arg = position
    rest = "float32" if other == "float64" else "float64"
    overrides = {k: v.astype(rest) for k, v in DEFAULTS[op].items() if isinstance(v, np.ndarray)}
    overrides[arg] = DEFAULTS[op][arg].astype(other)
    # x is what the others are compared with: when x is the odd one, the message names the other.
    match = f"is {rest} but x is {other}" if arg == "x" else f"{arg} is {other} but x is {rest}"
    refused(TypeError, match, op, **overrides)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "relu",
                                "relu_backward"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy", "newbyteorder-native", "metadata"])
def test_equal_but_distinct_dtype_objects_are_accepted(how, op, dtype):
    # Arrays that went through pickle (multiprocessing!) carry a float32 dtype that is equal to,
    # but not the same object as, np.dtype(np.float32). They were refused with the confusing
    # "x must be float32 or float64, got float32" before the bindings compared dtypes by value.
    args = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
            for k, v in DEFAULTS[op].items()}
    want = getattr(F, op)(**args)

    def odd(a):
        if how == "pickle":
            return pickle.loads(pickle.dumps(a))
        if how == "deepcopy":
            return a.view(copy.deepcopy(a.dtype))
        if how == "newbyteorder-native":
            return a.view(a.dtype.newbyteorder("="))
        return a.view(np.dtype(a.dtype, metadata={"unit": "volt"}))

    odd_args = {k: (odd(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    assert any(v.dtype is not np.dtype(v.dtype.str) for v in odd_args.values() if isinstance(v, np.ndarray))
    _same_answer(getattr(F, op)(**odd_args), want)


# ---------------------------------------------------------------------------------------------
# 2. Not arrays at all.
# ---------------------------------------------------------------------------------------------


class ArrayLike:
    def __array__(self, dtype=None, copy=None):
        return np.ones((2, 3, 8, 8), np.float32)


NOT_ARRAYS = {
    "None": None, "list": [[1.0, 2.0]], "tuple": (1.0, 2.0), "float": 3.0, "int": 3, "np.float32": np.float32(1),
    "str": "x", "bytes": b"\x00" * 16, "dict": {"x": 1}, "memoryview": memoryview(b"\x00" * 16),
    "array-like": ArrayLike(),
}
_NOT_ARRAYS_IN_TEST_ERRORS = {(op, "x", v) for op in ("conv2d", "max_pool2d", "relu") for v in ("None", "list", "float", "str")}


@pytest.mark.parametrize("position, value", cases(
    ALL_ARRAY_POSITIONS, list(NOT_ARRAYS), ids=_id,
    skip=lambda p, v: (*p, v) in _NOT_ARRAYS_IN_TEST_ERRORS or (p[1] in ("b", "out") and v == "None")))
def test_non_array_is_refused(position, value):
    op, arg = position
    refused(TypeError, f"{arg} must be a numpy.ndarray", op, **{arg: NOT_ARRAYS[value]})


# ---------------------------------------------------------------------------------------------
# 3. Shapes: wrong ndim, empty, mismatched.
# ---------------------------------------------------------------------------------------------


def _reshaped(a: np.ndarray, ndim: int) -> np.ndarray:
    return np.ones((2,) * ndim, a.dtype)


@pytest.mark.parametrize("position, ndim", cases(FOUR_D_POSITIONS, [0, 1, 2, 3, 5, 6], ids=_id,
                                                 skip=lambda p, n: (*p, n) in {("conv2d", "x", 3), ("conv2d", "w", 3)}))
def test_wrong_ndim_is_refused(position, ndim):
    op, arg = position
    bad = _reshaped(DEFAULTS[op][arg], ndim)
    assert bad.ndim == ndim
    match = "indices must have the shape of dy" if arg == "indices" else f"{arg} must have 4 dimensions"
    refused(ValueError, match, op, **{arg: bad})


@pytest.mark.parametrize("ndim", [0, 2, 3])
def test_bias_wrong_ndim_is_refused(ndim):
    refused(ValueError, r"b must have 1 dimensions \(K,\)", "conv2d", b=_reshaped(B, ndim))


@pytest.mark.parametrize("position, axis", cases(
    FLOAT_POSITIONS, [0, 1, 2, 3], ids=_id,
    # The batch axis (axis 0 of x and dy) may be empty: zero images give an empty result
    # (tests/test_hardening.py::test_every_functional_op_takes_an_empty_batch).
    skip=lambda p, a: a >= DEFAULTS[p[0]][p[1]].ndim or (a == 0 and p[1] in ("x", "dy"))
    or (*p, a) in {("conv2d", "x", 0), ("max_pool2d", "x", 2)}))
def test_empty_array_is_refused(position, axis):
    op, arg = position
    base = DEFAULTS[op][arg]
    refused(ValueError, f"{arg} is empty", op, **{arg: np.take(base, [], axis=axis)})


def test_relu_empty_0d_and_any_ndim():
    # ReLU is elementwise: any ndim from 0 to NumPy's maximum works; an array empty on any
    # axis but the first (the batch) is refused.
    for ndim in (0, 1, 2, 3, 5, 6, 32):
        x = np.full((1,) * ndim, -2.5, np.float32)
        assert F.relu(x).shape == x.shape and F.relu(x).max() == 0.0
        assert F.relu_backward(x, x).shape == x.shape
    with pytest.raises(ValueError, match="x is empty"):
        F.relu(np.zeros((3, 0, 2), np.float32))


MISMATCHED = [
    ("conv2d_backward", dict(x=X[:, :2]), ValueError, "x has 2 channels but w expects 3"),
    ("conv2d_backward", dict(w=W[:, :2]), ValueError, "x has 3 channels but w expects 2"),
    ("conv2d_backward", dict(dy=DY[:1]), ValueError, r"dy must have the shape of conv2d's output \(2, 4, 6, 6\)"),
    ("conv2d_backward", dict(dy=DY[:, :3]), ValueError, r"dy must have the shape of conv2d's output"),
    ("conv2d_backward", dict(dy=DY[:, :, :, :5]), ValueError, r"dy must have the shape of conv2d's output"),
    ("conv2d_backward", dict(dy=np.zeros((2, 4, 7, 7), np.float32)), ValueError, "dy must have the shape"),
    ("conv2d_backward", dict(dy=DY, padding=1), ValueError, r"dy must have the shape of conv2d's output \(2, 4, 8, 8\)"),
    ("max_pool2d_backward", dict(indices=PIDX[:1]), ValueError, "indices must have the shape of dy"),
    ("max_pool2d_backward", dict(indices=PIDX[:, :2]), ValueError, "indices must have the shape of dy"),
    ("max_pool2d_backward", dict(indices=PIDX[:, :, :, :3]), ValueError, "indices must have the shape of dy"),
    ("max_pool2d_backward", dict(input_shape=(2, 4, 8, 8)), ValueError, "input_shape must be"),
    ("max_pool2d_backward", dict(input_shape=(2, 3, 8, 8, 1)), ValueError, "input_shape must be"),
    ("max_pool2d_backward", dict(input_shape=()), ValueError, "input_shape must be"),
    ("max_pool2d_backward", dict(input_shape=(2, 3, 0, 8)), ValueError, "input_shape must be"),
    ("max_pool2d_backward", dict(input_shape=(2, 3, 8, -8)), ValueError, "input_shape must be"),
    ("relu_backward", dict(dy=X[:1]), ValueError, "dy must have the shape of x"),
    ("relu_backward", dict(dy=X[0]), ValueError, "dy must have the shape of x"),
    ("relu_backward", dict(dy=X.reshape(-1)), ValueError, "dy must have the shape of x"),
    ("relu_backward", dict(dy=X.transpose(0, 1, 3, 2)[:, :, :4]), ValueError, "dy must have the shape of x"),
]


@pytest.mark.parametrize("op, overrides, exc, match", MISMATCHED, ids=lambda v: v if isinstance(v, str) else None)
def test_mismatched_shapes_are_refused(op, overrides, exc, match):
    refused(exc, match, op, **overrides)


# Kernel larger than the (padded, dilated) input: refused with the sizes in the message.
TOO_SMALL = [
    ("conv2d", dict(w=np.ones((4, 3, 9, 3), np.float32)), "conv2d output would be 0x6"),
    ("conv2d", dict(w=np.ones((4, 3, 3, 9), np.float32)), "conv2d output would be 6x0"),
    ("conv2d", dict(w=np.ones((4, 3, 12, 12), np.float32), padding=1), "does not fit in the padded input 8x8"),
    ("conv2d", dict(w=np.ones((4, 3, 11, 11), np.float32), padding=((1, 1), (2, 0))), "conv2d output would be"),
    ("conv2d", dict(dilation=(4, 1)), "conv2d output would be 0x6"),
    ("conv2d", dict(dilation=(5, 1)), "conv2d output would be -2x6"),
    ("conv2d", dict(dilation=2**31 - 1), "conv2d output would be"),
    ("conv2d_backward", dict(w=np.ones((4, 3, 9, 9), np.float32)), "conv2d output would be"),
    ("max_pool2d", dict(kernel_size=(9, 2)), "max_pool2d output would be 0x4"),
    ("max_pool2d", dict(kernel_size=(2, 11), padding=(0, 1)), "max_pool2d output would be 4x0"),
    ("max_pool2d", dict(kernel_size=9, stride=1), "max_pool2d output would be 0x0"),
    ("max_pool2d", dict(kernel_size=2**31 - 1, stride=1), "max_pool2d output would be"),
]


@pytest.mark.parametrize("op, overrides, match", TOO_SMALL, ids=[m for _, _, m in TOO_SMALL])
def test_kernel_larger_than_padded_input(op, overrides, match):
    refused(ValueError, match, op, **overrides)


@pytest.mark.parametrize("isa", SUPPORTED_ISAS)
def test_kernel_equal_to_padded_input_gives_one_pixel(isa):
    previous = _core._isa_cap()
    _core._set_isa_cap(isa)
    try:
        w = _rng.standard_normal((2, 3, 10, 9)).astype(np.float64)
        x = X.astype(np.float64)
        y = F.conv2d(x, w, None, padding=((1, 1), (0, 1)))
        assert y.shape == (2, 2, 1, 1)
        np.testing.assert_allclose(y, R.conv2d(x, w, None, padding=((1, 1), (0, 1))), rtol=1e-12)
        # A window equal to the input, and (ceil mode) one larger than it, clipped: a global max.
        for kernel, ceil in ((8, False), (9, True), ((8, 12), True)):
            p, i = F.max_pool2d(x, kernel, ceil_mode=ceil, return_indices=True)
            assert p.shape == (2, 3, 1, 1)
            np.testing.assert_array_equal(p[..., 0, 0], x.max(axis=(2, 3)))
            np.testing.assert_array_equal(i[..., 0, 0], x.reshape(2, 3, -1).argmax(-1))
    finally:
        _core._set_isa_cap(previous)


# ---------------------------------------------------------------------------------------------
# 4. Hyper-parameters: every position, every kind of bad value.
# ---------------------------------------------------------------------------------------------

# (op, argument name, how to place the value) -> the smallest valid value of that position.
INT_POSITIONS = [
    ("conv2d", "stride", "int", 1), ("conv2d", "stride", "pair0", 1), ("conv2d", "stride", "pair1", 1),
    ("conv2d", "dilation", "int", 1), ("conv2d", "dilation", "pair1", 1),
    ("conv2d", "padding", "int", 0), ("conv2d", "padding", "pair0", 0),
    ("conv2d", "padding", "nested", 0),
    ("conv2d_backward", "stride", "int", 1), ("conv2d_backward", "dilation", "pair0", 1),
    ("conv2d_backward", "padding", "pair1", 0),
    ("max_pool2d", "kernel_size", "int", 1), ("max_pool2d", "kernel_size", "pair1", 1),
    ("max_pool2d", "stride", "int", 1), ("max_pool2d", "stride", "pair0", 1),
    ("max_pool2d", "padding", "int", 0), ("max_pool2d", "padding", "pair1", 0),
]


def _place(how, value, valid):
    if how == "int":
        return value
    if how == "pair0":
        return (value, valid)
    if how == "pair1":
        return (valid, value)
    return ((valid, valid), (valid, value))  # nested: the right padding


def _name(arg, how):
    return {"int": arg, "pair0": f"{arg}[0]", "pair1": f"{arg}[1]", "nested": arg}[how]


BAD_INTS = {
    "zero": (0, ValueError, ">= {min}, got 0"),
    "minus1": (-1, ValueError, ">= {min}, got -1"),
    "minus2**64": (-2**64, ValueError, ">= {min}, got -18446744073709551616"),
    "2**31": (2**31, ValueError, "<= 2147483647, got 2147483648"),
    "2**62": (2**62, ValueError, "<= 2147483647"),
    "2**64": (2**64, ValueError, "<= 2147483647"),
    "np.uint64max": (np.uint64(2**64 - 1), ValueError, "<= 2147483647"),
    "np.int64min": (np.int64(-2**63), ValueError, ">= {min}"),
    "float": (2.0, TypeError, "must be an int, got float"),
    "nan": (float("nan"), TypeError, "must be an int, got float"),
    "inf": (float("inf"), TypeError, "must be an int, got float"),
    "np.float64": (np.float64(2), TypeError, "must be an int, got float64"),
    "bool": (True, TypeError, "must be an int, got bool"),
    "np.bool_": (np.bool_(True), TypeError, "must be an int, got bool"),
    "None": (None, TypeError, "must be an int, got NoneType"),
    "str": ("2", TypeError, "must be an int, got str"),
    "bytes": (b"2", TypeError, "must be an int, got bytes"),
    "complex": (2 + 0j, TypeError, "must be an int, got complex"),
    "Fraction": (fractions.Fraction(2), TypeError, "must be an int, got Fraction"),
    "0-d array": (np.array(2), TypeError, "must be an int, got ndarray"),
}
_PARAMS_IN_TEST_ERRORS = {("conv2d", "stride", "int", v) for v in ("zero", "float", "bool", "2**31", "2**62")} | {
    ("conv2d", "dilation", "int", "zero"), ("conv2d", "padding", "int", "minus1"),
    ("max_pool2d", "kernel_size", "int", "zero"), ("max_pool2d", "kernel_size", "int", "float"),
    ("max_pool2d", "stride", "int", "zero"),
}


def _bad_int_skip(position, bad):
    op, arg, how, minimum = position
    return (
        (*position[:3], bad) in _PARAMS_IN_TEST_ERRORS
        or (bad == "zero" and minimum == 0)  # a valid padding
        or (bad == "None" and (op, arg, how) == ("max_pool2d", "stride", "int"))  # the default
        or (bad == "str" and arg == "padding" and how == "int")  # conv2d: a padding mode, pool: see below
    )


@pytest.mark.parametrize("position, bad", cases(INT_POSITIONS, list(BAD_INTS), skip=_bad_int_skip,
                                               ids=lambda v: "-".join(map(str, v[:3])) if isinstance(v, tuple) else v))
def test_bad_int_parameter(position, bad):
    op, arg, how, minimum = position
    value, exc, match = BAD_INTS[bad]
    match = match.replace("{min}", str(minimum))
    refused(exc, f"{re.escape(_name(arg, how))}.*{match}", op, **{arg: _place(how, value, minimum)})


GOOD_INTS = {"np.int8": np.int8(2), "np.uint64": np.uint64(2), "np.int64": np.int64(2), "python": 2}


@pytest.mark.parametrize("kind", list(GOOD_INTS))
@pytest.mark.parametrize("position", [p for p in INT_POSITIONS if p[2] != "nested"],
                         ids=lambda p: f"{p[0]}-{p[1]}-{p[2]}")
def test_numpy_integers_are_plain_integers(position, kind):
    op, arg, how, minimum = position
    extra = {"kernel_size": 4} if (op, arg) == ("max_pool2d", "padding") else {}
    if op == "conv2d_backward":  # a dy of the output's shape for these parameters
        extra = {"dy": np.ones_like(F.conv2d(X, W, None, **{arg: _place(how, 2, minimum)}))}
    want = call(op, **extra, **{arg: _place(how, 2, minimum)})
    _same_answer(call(op, **extra, **{arg: _place(how, GOOD_INTS[kind], minimum)}), want)


BAD_SHAPES_OF_PARAMS = [
    ("conv2d", "stride", (), ValueError, r"stride must be an int or a pair \(h, w\), got \(\)"),
    ("conv2d", "stride", [1], ValueError, "stride must be an int or a pair"),
    ("conv2d", "dilation", (1, 1, 1), ValueError, "dilation must be an int or a pair"),
    ("conv2d", "padding", ((1, 1), (1, 1), (1, 1)), ValueError, "padding must be an int or a pair"),
    ("conv2d", "padding", ((1, 2, 3), (0, 0)), ValueError, "padding must be an int or a pair"),
    ("conv2d", "padding", ((1, 2), 3), TypeError, r"padding\[0\] must be an int, got tuple"),
    ("conv2d", "padding", {1: 2}, TypeError, "padding must be an int, got dict"),
    ("conv2d", "padding", np.array([1, 1]), TypeError, "padding must be an int, got ndarray"),
    ("conv2d", "padding", None, TypeError, "padding must be an int, got NoneType"),
    ("conv2d", "padding", "SAME ", ValueError, "padding must be 'valid', 'same'"),
    ("conv2d", "padding", "", ValueError, "padding must be 'valid', 'same'"),
    ("conv2d", "padding", b"same", TypeError, "padding must be an int, got bytes"),
    ("conv2d", "stride", "same", TypeError, "stride must be an int, got str"),
    ("conv2d_backward", "need_input_grad", 1, TypeError, "need_input_grad must be True or False"),
    ("conv2d_backward", "need_input_grad", None, TypeError, "need_input_grad must be True or False"),
    ("conv2d_backward", "need_bias_grad", "False", TypeError, "need_bias_grad must be True or False"),
    ("conv2d_backward", "need_bias_grad", 0.0, TypeError, "need_bias_grad must be True or False"),
    ("max_pool2d", "padding", "same", TypeError, "padding must be an int, got str"),
    ("max_pool2d", "kernel_size", None, TypeError, "kernel_size must be an int, got NoneType"),
    ("max_pool2d", "kernel_size", (2, 2, 2), ValueError, "kernel_size must be an int or a pair"),
    ("max_pool2d", "stride", (), ValueError, "stride must be an int or a pair"),
    ("max_pool2d", "ceil_mode", None, TypeError, "ceil_mode must be a bool"),
    ("max_pool2d", "ceil_mode", "True", TypeError, "ceil_mode must be a bool"),
    ("max_pool2d", "return_indices", 1, TypeError, "return_indices must be True or False"),
    ("max_pool2d", "return_indices", None, TypeError, "return_indices must be True or False"),
    ("max_pool2d_backward", "input_shape", np.array([2, 3, 8, 8]), TypeError, "input_shape must be a tuple of 4 ints"),
    ("max_pool2d_backward", "input_shape", "2388", TypeError, "input_shape must be a tuple of 4 ints"),
    ("max_pool2d_backward", "input_shape", None, TypeError, "input_shape must be a tuple of 4 ints"),
    ("max_pool2d_backward", "input_shape", (2, 3, 8.0, 8), TypeError, "input_shape must be a tuple of 4 ints"),
    ("max_pool2d_backward", "input_shape", (2, 3, True, 8), TypeError, "input_shape must be a tuple of 4 ints"),
    ("max_pool2d_backward", "input_shape", (2, 3, None, 8), TypeError, "input_shape must be a tuple of 4 ints"),
    ("max_pool2d_backward", "input_shape", (2, 3, 2**31, 8), ValueError, r"input_shape \(2, 3, 2147483648, 8\) is too large"),
    ("max_pool2d_backward", "input_shape", (2, 3, 2**62, 2), ValueError, "input_shape .* is too large"),
    ("max_pool2d_backward", "input_shape", (2, 3, 2**32, 2**32), ValueError, "input_shape .* is too large"),
    ("max_pool2d_backward", "input_shape", (2, 3, 2**64, 2), ValueError, "input_shape .* is too large"),
    ("max_pool2d_backward", "input_shape", (2, 3, 2**30, 2**30), ValueError, "input_shape .* is too large"),
]


@pytest.mark.parametrize("op, arg, value, exc, match", BAD_SHAPES_OF_PARAMS,
                         ids=[f"{o}-{a}-{v!r}" for o, a, v, _, _ in BAD_SHAPES_OF_PARAMS])
def test_bad_parameter_forms(op, arg, value, exc, match):
    refused(exc, match, op, **{arg: value})


GOOD_FORMS = [
    ("conv2d", dict(padding=[[1, 0], [0, 1]]), dict(padding=((1, 0), (0, 1)))),
    ("conv2d", dict(padding="SAME"), dict(padding="same")),
    ("conv2d", dict(padding="Valid"), dict(padding=0)),
    ("conv2d", dict(stride=[2, 1]), dict(stride=(2, 1))),
    ("conv2d", dict(padding=(np.int32(1), np.uint8(1))), dict(padding=1)),
    ("conv2d_backward", dict(need_input_grad=np.bool_(False)), dict(need_input_grad=False)),
    ("max_pool2d", dict(ceil_mode=np.bool_(True)), dict(ceil_mode=True)),
    ("max_pool2d", dict(kernel_size=[2, 2], stride=[2, 2]), dict(kernel_size=2)),
    ("max_pool2d", dict(return_indices=np.bool_(True)), dict(return_indices=True)),
    ("max_pool2d_backward", dict(input_shape=[2, 3, np.int64(8), np.uint16(8)]), dict(input_shape=(2, 3, 8, 8))),
]


@pytest.mark.parametrize("op, given, same_as", GOOD_FORMS, ids=[repr(g) for _, g, _ in GOOD_FORMS])
def test_equivalent_parameter_forms(op, given, same_as):
    _same_answer(call(op, **given), call(op, **same_as))


# ---------------------------------------------------------------------------------------------
# 5. Sizes that overflow 32 or 64 bits: refused before anything is allocated, or computed with
#    64-bit index arithmetic when the output itself is small.
# ---------------------------------------------------------------------------------------------

HUGE_VIEW = np.broadcast_to(np.zeros(1, np.float32), (2**20, 2**20, 2**10, 2**10))  # 2**60 elements, 4 EiB
TALL_VIEW = np.broadcast_to(np.zeros(1, np.float32), (1, 1, 2**31, 2))  # a dimension past 2**31 - 1
WIDE_VIEW = np.broadcast_to(np.zeros(1, np.float32), (2**16, 4, 2**8, 2**8))  # 2**34 elements, 64 GiB

NO_ALLOCATION = [
    ("conv2d", dict(x=HUGE_VIEW), r"x is too large \(shape \(1048576, 1048576, 1024, 1024\)\)"),
    ("conv2d", dict(x=TALL_VIEW, w=np.ones((1, 1, 1, 1), np.float32), b=None), r"x is too large \(shape \(1, 1, 2147483648, 2\)\)"),
    ("conv2d", dict(x=WIDE_VIEW), "x has 4 channels but w expects 3"),  # checked before the 64 GiB copy
    ("conv2d", dict(x=WIDE_VIEW, w=np.ones((1, 4, 3, 3), np.float32), b=None, stride=0), "stride must be >= 1"),
    ("conv2d", dict(x=WIDE_VIEW, w=np.ones((1, 4, 3, 3), np.float32), b=None, dilation=2**20), "conv2d output would be"),
    ("conv2d", dict(w=np.broadcast_to(np.zeros(1, np.float32), (2**30, 3, 2**10, 2**10)), b=None), "w is too large"),
    ("conv2d", dict(b=np.broadcast_to(np.zeros(1, np.float32), (2**51,))), "b is too large"),
    ("conv2d", dict(padding=2**31 - 1), r"conv2d output would be 4294967300x4294967300 .* too large"),
    ("conv2d", dict(padding=((0, 2**31 - 1), (2**31 - 1, 0)), dilation=3), "conv2d output would be .* too large"),
    ("conv2d", dict(padding="same", dilation=2**31 - 1, w=np.ones((4, 3, 4, 4), np.float32)), "padding='same' would need"),
    ("conv2d_backward", dict(dy=np.broadcast_to(np.zeros(1, np.float32), (2**20, 2**20, 2**10, 2**10))), "dy is too large"),
    ("conv2d_backward", dict(x=WIDE_VIEW, w=np.ones((4, 4, 3, 3), np.float32)), "dy must have the shape"),
    ("max_pool2d", dict(x=HUGE_VIEW), "x is too large"),
    ("max_pool2d", dict(x=TALL_VIEW), "x is too large"),
    ("max_pool2d", dict(x=WIDE_VIEW, kernel_size=2**9), "max_pool2d output would be"),
    ("max_pool2d_backward", dict(dy=HUGE_VIEW), "dy is too large"),
    ("max_pool2d_backward", dict(input_shape=(2, 3, 2**25, 2**25)), "input_shape .* is too large"),
    ("relu", dict(x=HUGE_VIEW), "x is too large"),
    ("relu", dict(x=WIDE_VIEW, out=np.zeros(3, np.float32)), "out must be a float32 array of shape"),
    ("relu_backward", dict(dy=HUGE_VIEW, x=HUGE_VIEW), "dy is too large"),
    ("relu_backward", dict(dy=WIDE_VIEW, x=WIDE_VIEW[:1]), "dy must have the shape of x"),
]


@pytest.mark.parametrize("op, overrides, match", NO_ALLOCATION, ids=[f"{o}-{m[:40]}" for o, _, m in NO_ALLOCATION])
def test_refused_before_any_allocation(op, overrides, match):
    # NumPy reports its data allocations to tracemalloc: a refused call must not have made the
    # contiguous copy of a broadcast view (a 16 GiB copy preceded the refusal of TALL_VIEW once).
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            call(op, **overrides)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before the refusal"


def _isa_loop():
    previous = _core._isa_cap()
    try:
        for isa in SUPPORTED_ISAS:
            _core._set_isa_cap(isa)
            yield isa
    finally:
        _core._set_isa_cap(previous)


def test_huge_stride_and_padding_use_64_bit_indices():
    # Padding and stride of 2**31 - 1: the read position of output pixel (1, 1) is 2**31 - 1 rows
    # into the padded input and the sums pass 2**32, while the output is only 3x3. Only that
    # pixel sees the input (its window starts exactly at x[0, 0]); every other one reads padding.
    big = 2**31 - 1
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    w = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    want = np.zeros((1, 1, 3, 3), np.float32)
    want[0, 0, 1, 1] = np.sum(x[0, 0, :3, :3] * w[0, 0])
    for isa in _isa_loop():
        np.testing.assert_array_equal(F.conv2d(x, w, None, stride=big, padding=big), want, err_msg=isa)
        dx, dw, db = F.conv2d_backward(np.ones((1, 1, 3, 3), np.float32), x, w, stride=big, padding=big)
        expected_dx = np.zeros_like(x)
        expected_dx[0, 0, :3, :3] = w[0, 0]
        np.testing.assert_array_equal(dx, expected_dx, err_msg=isa)
        np.testing.assert_array_equal(dw[0, 0], x[0, 0, :3, :3], err_msg=isa)
        np.testing.assert_array_equal(db, [9.0], err_msg=isa)


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with this environment (so under the sanitizers too, when
    they are on): a crash fails one test instead of killing the whole run."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


CENTRE_TAP = """
    import numpy as np
    from convforge import functional as F, reference as R
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, {x_shape}).astype(np.{dtype})
    w = rng.integers(-4, 5, {w_shape}).astype(np.{dtype})
    # Only the centre tap of w ever lands on the input: a 1x1 convolution with that tap.
    centre = w[:, :, 1:2, 1:2]
    y = F.conv2d(x, w, None, padding="same", dilation={dilation})
    np.testing.assert_array_equal(y, R.conv2d(x, centre))
    dy = rng.integers(-4, 5, y.shape).astype(np.{dtype})
    dx, dw, db = F.conv2d_backward(dy, x, w, padding="same", dilation={dilation})
    dx_want, dw_centre, db_want = R.conv2d_backward(dy, x, centre)
    dw_want = np.zeros(w.shape)
    dw_want[:, :, 1, 1] = dw_centre[:, :, 0, 0]
    np.testing.assert_array_equal(dx, dx_want)
    np.testing.assert_array_equal(dw, dw_want)
    np.testing.assert_array_equal(db, db_want)
    print("OK")
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape, w_shape", [((2, 3, 5, 6), (4, 3, 3, 3)), ((1, 1, 2, 2), (1, 1, 3, 3))])
def test_large_dilation_with_same_padding_is_the_centre_tap(x_shape, w_shape, dtype):
    # dilation 50 with 'same': pads of 50 a side, only the centre tap of a 3x3 kernel reads input.
    r = run_isolated(CENTRE_TAP.format(x_shape=x_shape, w_shape=w_shape, dtype=dtype, dilation=50))
    assert r.returncode == 0 and r.stdout.split() == ["OK"], r.stderr[-3000:]


# Once a segfault (int64 overflow sizing the unit-stride frame): such problems now take the
# im2col path, whose scratch memory is bounded by the output.
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape, w_shape", [((2, 3, 5, 6), (4, 3, 3, 3)), ((1, 1, 2, 2), (1, 1, 3, 3))])
def test_huge_dilation_with_same_padding_is_the_centre_tap(x_shape, w_shape, dtype):
    # dilation 2**31 - 1 with 'same': pads of 2**31 - 1 a side, and again only the centre tap
    # ever lands on the input. Run in a child process, so that a crash is a failure, not an abort.
    r = run_isolated(CENTRE_TAP.format(x_shape=x_shape, w_shape=w_shape, dtype=dtype, dilation=2**31 - 1))
    assert r.returncode == 0 and r.stdout.split() == ["OK"], r.stderr[-3000:]


def test_huge_pool_stride_and_window():
    x = _rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    y, i = F.max_pool2d(x, (5, 7), stride=2**31 - 1, padding=(2, 3), ceil_mode=True, return_indices=True)
    want, want_i = R.max_pool2d(x, (5, 7), 2**31 - 1, (2, 3), True, return_indices=True)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(i, want_i)
    assert y.shape == (2, 3, 1, 1)


@pytest.mark.skipif(UNDER_ASAN, reason="an address-space limit and ASan's shadow memory do not mix")
def test_output_too_big_for_memory_is_a_memory_error():
    # A valid problem whose output (2**34 floats, 64 GiB) cannot be allocated: MemoryError, not a
    # crash. Run under a 2 GiB address-space limit, so that the answer is the same on any machine.
    code = textwrap.dedent(
        """
        import resource, numpy as np
        from convforge import functional as F
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        x = np.ones((1, 1, 1, 1), np.float32)
        for call in (lambda: F.conv2d(x, np.ones((4, 1, 1, 1), np.float32), padding=2**16),
                     lambda: F.relu(np.broadcast_to(np.zeros(1, np.float32), (2**17, 2**17)))):
            try:
                call()
            except MemoryError:
                print("MemoryError")
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONVFORGE_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MemoryError", "MemoryError"]


# ---------------------------------------------------------------------------------------------
# 6. Memory layouts: accepted, and the same answer as a contiguous copy.
# ---------------------------------------------------------------------------------------------


def _unaligned(a: np.ndarray) -> np.ndarray:
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = raw[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "fortran": np.asfortranarray,
    "reversed": lambda a: a[::-1].copy()[::-1],  # same values, negative strides
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),  # zero stride (values of a[0] repeated)
    "read-only": _readonly,
    "unaligned": _unaligned,
    "ndarray-subclass": lambda a: a.view(np.ma.MaskedArray),
    "memmap-like": lambda a: np.frombuffer(bytearray(a.tobytes()), a.dtype).reshape(a.shape),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("position", ALL_ARRAY_POSITIONS[:-1], ids=_pid)  # out=: section 7
def test_layouts_give_the_contiguous_answer(position, layout):
    op, arg = position
    odd = LAYOUTS[layout](DEFAULTS[op][arg])
    if layout in ("reversed", "strided", "broadcast"):
        assert not odd.flags.c_contiguous
    plain = np.array(odd, order="C", subok=False)
    assert plain.flags.c_contiguous and plain.flags.aligned and type(plain) is np.ndarray
    _same_answer(call(op, **{arg: odd}), call(op, **{arg: plain}))


# ---------------------------------------------------------------------------------------------
# 7. out= (relu's public one, and the private _core ones), and max_pool2d_backward's indices.
# ---------------------------------------------------------------------------------------------


def _relu_out_cases():
    ro = np.zeros(X.shape, np.float32)
    ro.flags.writeable = False
    return [
        ("read-only", ro, ValueError, "out is read-only"),
        ("broadcast", np.broadcast_to(np.zeros(1, np.float32), X.shape), ValueError, "out is read-only"),
        ("float64", np.zeros(X.shape, np.float64), ValueError, "out must be a float32 array of shape"),
        ("int32", np.zeros(X.shape, np.int32), ValueError, "out must be a float32 array of shape"),
        (">f4", np.zeros(X.shape, ">f4"), ValueError, "out must be a float32 array of shape"),
        ("transposed-shape", np.zeros(X.shape[::-1], np.float32), ValueError, "out must be a float32 array of shape"),
        ("flat", np.zeros(X.size, np.float32), ValueError, "out must be a float32 array of shape"),
        ("0-d", np.zeros((), np.float32), ValueError, "out must be a float32 array of shape"),
        ("list", X.tolist(), TypeError, "out must be a numpy.ndarray"),
    ]


@pytest.mark.parametrize("case", _relu_out_cases(), ids=lambda c: c[0])
def test_relu_bad_out(case):
    _, out, exc, match = case
    before = out.copy() if isinstance(out, np.ndarray) else None
    refused(exc, match, "relu", out=out)
    if before is not None:
        np.testing.assert_array_equal(out, before)


OUT_ALIASES = ["same", "same-fortran", "shifted-overlap", "reversed-view", "strided-view", "unaligned", "other"]


@pytest.mark.parametrize("alias", OUT_ALIASES)
def test_relu_out_aliasing_the_input(alias):
    base = _rng.standard_normal(4 * 5 * 6 + 1).astype(np.float32)
    if alias == "shifted-overlap":  # out is x moved by one element: must not read what it wrote
        x, out = base[1:], base[:-1]
    elif alias == "same":
        x = out = base[1:].reshape(4, 5, 6)
    elif alias == "same-fortran":
        x = out = np.asfortranarray(base[1:].reshape(4, 5, 6))
    elif alias == "reversed-view":
        x, out = base[1:], base[1:][::-1]
    elif alias == "strided-view":
        x, out = base[:60], base[::2][:60]
    elif alias == "unaligned":
        x, out = base[1:], _unaligned(np.zeros(base.size - 1, np.float32))
    else:
        x, out = base[1:], np.zeros(base.size - 1, np.float32)
    want = R.relu(x.copy()).astype(np.float32)
    got = F.relu(x, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)


CORE_OUT = [
    ("conv out float64", lambda o: _core.conv2d_fwd(X, W, None, (1, 1), (0, 0, 0, 0), (1, 1), out=o["f64"]),
     TypeError, "out must be float32"),
    ("conv out non-contiguous", lambda o: _core.conv2d_fwd(X, W, None, (1, 1), (0, 0, 0, 0), (1, 1), out=o["fortran"]),
     ValueError, "out must be C-contiguous"),
    ("conv out unaligned", lambda o: _core.conv2d_fwd(X, W, None, (1, 1), (0, 0, 0, 0), (1, 1), out=o["unaligned"]),
     ValueError, "out must be aligned"),
    ("conv out list", lambda o: _core.conv2d_fwd(X, W, None, (1, 1), (0, 0, 0, 0), (1, 1), out=[0.0]),
     TypeError, "out must be a numpy.ndarray"),
    ("conv b list", lambda o: _core.conv2d_fwd(X, W, [1.0] * 4, (1, 1), (0, 0, 0, 0), (1, 1)),
     TypeError, "b must be a numpy.ndarray"),
    ("conv x unaligned", lambda o: _core.conv2d_fwd(_unaligned(X), W, None, (1, 1), (0, 0, 0, 0), (1, 1)),
     ValueError, "x must be aligned"),
    ("bwd_weights out_b read-only", lambda o: _core.conv2d_bwd_weights(
        DY, X, W.shape, (1, 1), (0, 0, 0, 0), (1, 1), True, out_b=o["ro4"]), ValueError, "out_b is read-only"),
    ("bwd_data out wrong shape", lambda o: _core.conv2d_bwd_data(DY, W, X.shape, (1, 1), (0, 0, 0, 0), (1, 1), out=o["f32"]),
     ValueError, r"out must have shape \(2, 3, 8, 8\)"),
    ("pool out_indices int", lambda o: _core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (4, 4), True, out_indices=3),
     TypeError, "out_indices must be a numpy.ndarray"),  # was a segmentation fault
    ("pool out_indices list", lambda o: _core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (4, 4), True, out_indices=[0]),
     TypeError, "out_indices must be a numpy.ndarray"),
    ("pool out_indices int32", lambda o: _core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (4, 4), True,
                                                            out_indices=np.zeros((2, 3, 4, 4), np.int32)),
     ValueError, "out_indices must be a writable C-contiguous int64"),
    ("pool out_indices unaligned", lambda o: _core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (4, 4), True,
                                                                out_indices=_unaligned(PIDX)),
     ValueError, "out_indices must be a writable C-contiguous int64"),
    ("pool bwd indices unaligned", lambda o: _core.maxpool2d_bwd(PDY, _unaligned(PIDX), X.shape),
     ValueError, "indices must be a C-contiguous, aligned"),
    ("pool bwd input_shape 2**62", lambda o: _core.maxpool2d_bwd(PDY, PIDX, (2, 3, 2**62, 2)),
     ValueError, "input_shape must be .* 1 <= H, W <= 2147483647"),  # was a signed overflow
    ("relu_bwd out list", lambda o: _core.relu_bwd(X, X, out=[1.0]),
     TypeError, "out must be a numpy.ndarray"),  # was read as an array: garbage
    ("relu_bwd out str", lambda o: _core.relu_bwd(X, X, out="abc"), TypeError, "out must be a numpy.ndarray"),
    ("relu out unaligned", lambda o: _core.relu_fwd(X, o["unaligned"]), ValueError, "out must be aligned"),
]


# These crashed or read garbage memory before the bindings checked the type of `out`: run them
# in a child process, so that a build without the check fails these cases, not the whole run.
CORE_CRASHERS = {
    "pool out_indices int": "_core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (4, 4), True, out_indices=3)",
    "pool out_indices list": "_core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (4, 4), True, out_indices=[0])",
    "relu_bwd out list": "_core.relu_bwd(X, X, out=[1.0])",
    "relu_bwd out str": "_core.relu_bwd(X, X, out='abc')",
}


@pytest.mark.parametrize("case", CORE_OUT, ids=lambda c: c[0])
def test_private_core_checks_out_arguments(case):
    # _core is private, but must be safe on its own: never a crash on a bad argument.
    _, f, exc, match = case
    if case[0] in CORE_CRASHERS:
        r = run_isolated(f"""
            import numpy as np
            from convforge import _core
            X = np.ones((2, 3, 8, 8), np.float32)
            try:
                {CORE_CRASHERS[case[0]]}
            except {exc.__name__} as err:
                print(err)
            """)
        assert r.returncode == 0, f"exit status {r.returncode}: {r.stderr[-2000:]}"
        assert re.search(match, r.stdout), r.stdout
        return
    ro4 = np.zeros(4, np.float32)
    ro4.flags.writeable = False
    outs = {
        "f64": np.zeros((2, 4, 6, 6), np.float64),
        "f32": np.zeros((2, 4, 6, 6), np.float32),
        "fortran": np.asfortranarray(np.zeros((2, 4, 6, 6), np.float32)),
        "unaligned": _unaligned(np.zeros((2, 4, 6, 6) if "conv" in case[0] else X.shape, np.float32)),
        "ro4": ro4,
    }
    with pytest.raises(exc, match=match):
        f(outs)



def _overlap_cases():
    """(name, call, out array, match): an out= that shares memory with an input of the same op.

    Shapes are chosen so that the aliasing array has exactly the output's shape (1x1 kernels with
    C == K; a kernel the size of the image), the only way such a call got past the shape checks.
    """
    rng = np.random.default_rng(7)
    cases = []
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((1, 8, 5, 5)).astype(dtype)  # C == K == 8, 1x1 kernel
        w = rng.standard_normal((8, 8, 1, 1)).astype(dtype)
        b = rng.standard_normal(8).astype(dtype)
        p0, p1 = (1, 1), (0, 0, 0, 0)
        dt = np.dtype(dtype).name
        cases += [
            (f"conv fwd out=x {dt}", lambda x=x, w=w: _core.conv2d_fwd(x, w, None, p0, p1, p0, out=x), "x", "out must not share memory with x"),
            (f"conv fwd out=x relu {dt}", lambda x=x, w=w, b=b: _core.conv2d_fwd(x, w, b, p0, p1, p0, out=x, relu=True), "x", "out must not share memory with x"),
            (f"conv bwd_data out=dy {dt}", lambda x=x, w=w: _core.conv2d_bwd_data(x, w, x.shape, p0, p1, p0, out=x), "x", "out must not share memory with dy"),
        ]
        xs = rng.standard_normal((8, 8, 2, 2)).astype(dtype)  # the shape of w: N = K, H = R, W = S
        dy8 = rng.standard_normal((8, 8, 1, 1)).astype(dtype)
        grads = np.zeros(8 * 8 * 2 * 2, dtype)  # out_b the first 8 elements of out_w
        cases += [
            (f"conv bwd_weights out_w=x {dt}",
             lambda xs=xs, dy8=dy8: _core.conv2d_bwd_weights(dy8, xs, xs.shape, p0, p1, p0, False, out_w=xs),
             "xs", "out_w must not share memory with x"),
            (f"conv bwd_weights out_b in out_w {dt}",
             lambda xs=xs, dy8=dy8, g=grads: _core.conv2d_bwd_weights(dy8, xs, xs.shape, p0, p1, p0, True,
                                                                     out_w=g.reshape(xs.shape), out_b=g[:8]),
             "grads", "out_b must not share memory with out_w"),
        ]
    return cases


@pytest.mark.parametrize("case", _overlap_cases(), ids=lambda c: c[0])
def test_conv2d_out_overlapping_an_input_is_refused(case):
    # The 1x1 conv with out=x was accepted and wrong on every ISA (max error 2e2 to 5e3).
    name, call, _, match = case
    with pytest.raises(ValueError, match=match or "must not share memory with"):
        call()


def test_refused_overlap_writes_nothing():
    x = np.random.default_rng(1).standard_normal((1, 8, 5, 5)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((8, 8, 1, 1)).astype(np.float32)
    before = x.copy()
    with pytest.raises(ValueError, match="out must not share memory with x"):
        _core.conv2d_fwd(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), out=x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("op", ["maxpool fwd out=x view", "maxpool fwd out_indices over out", "maxpool bwd out=dy",
                                "relu shifted", "relu_bwd shifted", "add shifted", "add gate shifted",
                                "dense fwd out=b"])
def test_other_ops_refuse_overlapping_out(op):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 8)).astype(np.float32)
    if op == "maxpool fwd out=x view":  # out is the first half of x's own buffer
        call = lambda: _core.maxpool2d_fwd(x, (2, 2), (2, 2), (0, 0), (2, 4), False, out=x.reshape(-1)[:16].reshape(1, 2, 2, 4))  # noqa: E731
        match = "out must not share memory with x"
    elif op == "maxpool fwd out_indices over out":
        buf = np.zeros(16 * 2, np.float32)  # 16 int64 indices = 32 floats
        call = lambda: _core.maxpool2d_fwd(x, (2, 2), (2, 2), (0, 0), (2, 4), True, out=buf[:16].reshape(1, 2, 2, 4),  # noqa: E731
                                           out_indices=buf.view(np.int64).reshape(1, 2, 2, 4))
        match = "out_indices must not share memory with out"
    elif op == "maxpool bwd out=dy":
        y, idx = _core.maxpool2d_fwd(x, (2, 2), (2, 2), (0, 0), (2, 4), True)
        big = np.zeros(x.size, np.float32)
        big[:16] = y.reshape(-1)
        dy = big[:16].reshape(y.shape)
        call = lambda: _core.maxpool2d_bwd(dy, idx, x.shape, out=big.reshape(x.shape))  # noqa: E731
        match = "out must not share memory with dy"
    elif op == "relu shifted":
        flat = x.reshape(-1)
        call = lambda: _core.relu_fwd(flat[1:], out=flat[:-1])  # noqa: E731
        match = r"out must not share memory with x \(except by being x itself\)"
    elif op == "relu_bwd shifted":
        flat = x.reshape(-1)
        call = lambda: _core.relu_bwd(flat[1:], flat[1:].copy(), out=flat[:-1])  # noqa: E731
        match = "out must not share memory with dy"
    elif op == "add shifted":
        flat = x.reshape(-1)
        call = lambda: _core.add(flat[1:], flat[1:].copy(), out=flat[:-1])  # noqa: E731
        match = r"out must not share memory with a \(except by being a itself\)"
    elif op == "add gate shifted":
        flat = x.reshape(-1)
        call = lambda: _core.add(flat[:-1].copy(), flat[:-1].copy(), out=flat[:-1], gate=flat[1:])  # noqa: E731
        match = r"out must not share memory with gate \(except by being gate itself\)"
    else:
        d = rng.standard_normal((1, 8)).astype(np.float32)
        wd = rng.standard_normal((8, 8)).astype(np.float32)
        call = lambda: _core.dense_fwd(d, wd, wd[0], out=wd[:1])  # noqa: E731
        match = "out must not share memory with w"
    before = x.copy()
    with pytest.raises(ValueError, match=match):
        call()
    np.testing.assert_array_equal(x, before)


def _channel_op_overlap(op):
    """(call, match, inputs) of one per-channel op (batchnorm, global pooling, depthwise) whose
    out= shares memory with one of its inputs or with an earlier output."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 4, 8)).astype(np.float32)
    ones = np.ones(2, np.float32)
    p0, p1 = (1, 1), (0, 0, 0, 0)
    if op == "batchnorm train out=x":
        return lambda: _core.batchnorm_fwd_training(x, None, None, 1e-3, out=x), "out must not share memory with x", [x]
    if op == "batchnorm train out_var over out_mean":
        stats = np.zeros(3, np.float32)
        return (lambda: _core.batchnorm_fwd_training(x, ones, None, 1e-3, out_mean=stats[:2], out_var=stats[1:]),
                "out_var must not share memory with out_mean", [x, stats])
    if op == "batchnorm train out_mean=gamma":
        return (lambda: _core.batchnorm_fwd_training(x, ones, None, 1e-3, out_mean=ones),
                "out_mean must not share memory with gamma", [x, ones])
    if op == "batchnorm inference shifted":  # out is x moved by one element
        flat = np.concatenate([x.reshape(-1), [0]]).astype(np.float32)
        xs = flat[1:].reshape(x.shape)
        return (lambda: _core.batchnorm_fwd_inference(xs, ones, ones, None, None, 1e-3, out=flat[:-1].reshape(x.shape)),
                r"out must not share memory with x \(except by being x itself\)", [flat])
    if op == "batchnorm bwd out shifted over dy":  # out=dy itself is allowed (test_channel_ops)
        buf = np.zeros(x.size + 1, np.float32)
        buf[1:] = x.reshape(-1)
        dy = buf[1:].reshape(x.shape)
        return (lambda: _core.batchnorm_bwd(dy, x, ones, ones, None, 1e-3, True, out=buf[:-1].reshape(x.shape)),
                r"out must not share memory with dy \(except by being dy itself\)", [x, dy])
    if op == "batchnorm bwd out=x":
        return (lambda: _core.batchnorm_bwd(x.copy(), x, ones, ones, None, 1e-3, True, out=x),
                "out must not share memory with x", [x])
    if op == "batchnorm bwd out_beta=out_gamma":
        g = np.zeros(2, np.float32)
        return (lambda: _core.batchnorm_bwd(x.copy(), x, ones, ones, None, 1e-3, True, out_gamma=g, out_beta=g),
                "out_beta must not share memory with out_gamma", [x, g])
    if op == "global avg out in x":
        return (lambda: _core.global_avg_pool2d_fwd(x, out=x.reshape(-1)[:2].reshape(1, 2)),
                "out must not share memory with x", [x])
    if op == "global max out_indices over out":
        buf = np.zeros(4, np.float32)  # 2 int64 indices = 4 floats
        return (lambda: _core.global_max_pool2d_fwd(x, True, out=buf[:2].reshape(1, 2),
                                                    out_indices=buf.view(np.int64).reshape(1, 2)),
                "out_indices must not share memory with out", [x, buf])
    if op == "global avg bwd out over dy":
        big = np.zeros(x.size, np.float32)
        big[:2] = 1
        return (lambda: _core.global_avg_pool2d_bwd(big[:2].reshape(1, 2), x.shape, out=big.reshape(x.shape)),
                "out must not share memory with dy", [big])
    if op == "global max bwd out over indices":
        big = np.zeros(x.size, np.float32)  # its first 4 floats read as indices (0, 0): valid ones
        dy = np.ones((1, 2), np.float32)
        return (lambda: _core.global_max_pool2d_bwd(dy, big[:4].view(np.int64).reshape(1, 2), x.shape,
                                                    out=big.reshape(x.shape)),
                "out must not share memory with indices", [big])
    w = rng.standard_normal((2, 1, 1, 1)).astype(np.float32)  # 1x1 depthwise: the output has x's shape
    if op == "depthwise fwd out=x":
        return (lambda: _core.depthwise_conv2d_fwd(x, w, None, p0, p1, p0, out=x),
                "out must not share memory with x", [x, w])
    if op == "depthwise fwd out=b":
        return (lambda: _core.depthwise_conv2d_fwd(x[:, :, :1, :1].copy(), w, w.reshape(2), p0, p1, p0,
                                                   out=w.reshape(1, 2, 1, 1)),
                "out must not share memory with w", [x, w])
    if op == "depthwise bwd_data out=dy":
        dy = x.copy()
        return (lambda: _core.depthwise_conv2d_bwd_data(dy, w, x.shape, p0, p1, p0, out=dy),
                "out must not share memory with dy", [dy, w])
    assert op == "depthwise bwd_weights out_b=out_w"
    g = np.zeros(2, np.float32)
    return (lambda: _core.depthwise_conv2d_bwd_weights(x.copy(), x, w.shape, p0, p1, p0, True,
                                                       out_w=g.reshape(w.shape), out_b=g),
            "out_b must not share memory with out_w", [x, g])


@pytest.mark.parametrize("op", [
    "batchnorm train out=x", "batchnorm train out_var over out_mean", "batchnorm train out_mean=gamma",
    "batchnorm inference shifted", "batchnorm bwd out shifted over dy", "batchnorm bwd out=x",
    "batchnorm bwd out_beta=out_gamma",
    "global avg out in x", "global max out_indices over out", "global avg bwd out over dy",
    "global max bwd out over indices", "depthwise fwd out=x", "depthwise fwd out=b", "depthwise bwd_data out=dy",
    "depthwise bwd_weights out_b=out_w",
])
def test_channel_ops_refuse_overlapping_out(op):
    call, match, arrays = _channel_op_overlap(op)
    before = [a.copy() for a in arrays]
    with pytest.raises(ValueError, match=match):
        call()
    for a, b in zip(arrays, before):  # refused before anything was written
        np.testing.assert_array_equal(a, b)


def test_in_place_batchnorm_inference_is_still_allowed():
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5)).astype(np.float32)
    mean, var = np.full(3, 0.5, np.float32), np.full(3, 4.0, np.float32)
    want = _core.batchnorm_fwd_inference(x, mean, var, None, None, 1e-3)
    assert _core.batchnorm_fwd_inference(x, mean, var, None, None, 1e-3, out=x) is not None
    np.testing.assert_array_equal(x, want)


def test_in_place_relu_is_still_allowed():
    x = np.random.default_rng(4).standard_normal((3, 5)).astype(np.float32)
    want = np.maximum(x, 0)
    assert _core.relu_fwd(x, out=x) is not None
    np.testing.assert_array_equal(x, want)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(_core.relu_bwd(dy, x, out=dy), (x > 0).astype(np.float32))


BAD_INDEX_VALUES = {
    "-1-first": (0, -1), "plane": (5, 64), "plane-last": (-1, 64), "int64max": (7, 2**63 - 1),
    "int64min": (3, -2**63), "2**32": (11, 2**32), "2**31": (2, 2**31),
}


@pytest.mark.parametrize("case", list(BAD_INDEX_VALUES))
def test_out_of_range_indices_are_refused(case):
    where, value = BAD_INDEX_VALUES[case]
    broken = PIDX.copy()
    broken.reshape(-1)[where] = value
    flat = where % broken.size
    refused(ValueError, rf"indices\[{flat}\] = {value} is outside the input plane of 8x8 \(valid: 0..63\)",
            "max_pool2d_backward", indices=broken)


def test_out_of_range_indices_never_write_outside_out():
    # The kernel checks each plane's indices as it goes: a bad one anywhere is refused, and no
    # write lands outside `out` (here a window of a larger buffer full of sentinels).
    for where, value in ((0, 64), (PIDX.size - 1, -1), (PIDX.size // 2, 2**40)):
        broken = PIDX.copy()
        broken.reshape(-1)[where] = value
        buf = np.full(X.size + 64, 7.0, X.dtype)
        out = buf[32:-32].reshape(X.shape)
        with pytest.raises(ValueError, match=rf"indices\[{where}\] = {value} is outside the input plane"):
            _core.maxpool2d_bwd(PDY, broken, X.shape, out)
        assert (buf[:32] == 7).all() and (buf[-32:] == 7).all()


def test_indices_of_a_smaller_input_are_refused():
    # Indices from an 8x8 forward pass replayed against a 4x4 input_shape: out of range, refused.
    with pytest.raises(ValueError, match="is outside the input plane of 4x4"):
        F.max_pool2d_backward(PDY, PIDX, (2, 3, 4, 4))


@pytest.mark.parametrize("layout", ["fortran", "reversed", "broadcast", "read-only", "unaligned"])
def test_indices_layouts(layout):
    idx = {"fortran": np.asfortranarray, "reversed": lambda a: a[::-1].copy()[::-1],
           "broadcast": lambda a: np.broadcast_to(a, (2,) + a.shape)[0], "read-only": _readonly,
           "unaligned": _unaligned}[layout](PIDX)
    _same_answer(F.max_pool2d_backward(PDY, idx, X.shape), F.max_pool2d_backward(PDY, PIDX, X.shape))


def test_pool_backward_accumulates_repeated_indices():
    # Any in-range index is accepted (not only argmaxes): repeats add up, like np.add.at.
    idx = np.zeros_like(PIDX)
    dx = F.max_pool2d_backward(np.ones_like(PDY), idx, X.shape)
    assert dx[0, 0, 0, 0] == 16 and np.count_nonzero(dx) == 6


# ---------------------------------------------------------------------------------------------
# 8. NaN, infinities, -0.0, subnormals: max-pool and ReLU semantics, identical on every ISA.
# ---------------------------------------------------------------------------------------------

NAN_A = np.array(np.nan, np.float32)
QNAN_PAYLOAD = np.array([0x7FC00123], np.uint32).view(np.float32)[0]  # a quiet NaN with a payload
NEG_NAN = np.array([0xFFC00000], np.uint32).view(np.float32)[0]
SUB = np.float32(1e-40)  # subnormal in float32
nan, inf = np.float32(np.nan), np.float32(np.inf)

# 4x4 planes pooled 2x2 (stride 2): each pattern fills the four windows; the oracle decides.
POOL_PATTERNS = {
    "nan-first": [[nan, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]],
    "nan-last-of-window": [[1, 2, 3, 4], [5, nan, 6, 7], [1, 2, 3, 4], [5, 6, 7, 8]],
    "two-nans-first-wins": [[1, QNAN_PAYLOAD, 1, NEG_NAN], [nan, 0, QNAN_PAYLOAD, 0], [0] * 4, [0] * 4],
    "nan-beats-inf": [[inf, nan, nan, inf], [0, 0, 0, 0], [inf, inf, -inf, nan], [0, 0, 0, 0]],
    "all-nan": [[nan] * 4] * 4,
    "all-minus-inf": [[-inf] * 4] * 4,
    "all-plus-inf": [[inf] * 4] * 4,
    "minus-zero-first": [[-0.0, 0.0, -0.0, -0.0], [0.0, -0.0, 0.0, 0.0], [-1, -0.0, -0.0, -1], [0.0, -1, -1, 0.0]],
    "subnormals": [[SUB, -SUB, 0, SUB], [2 * SUB, 0, -0.0, -SUB], [-SUB, -SUB, -SUB, -SUB], [SUB, SUB, SUB, SUB]],
    "extremes": [[np.finfo(np.float32).max, -np.finfo(np.float32).max, 0, 0],
                 [np.finfo(np.float32).tiny, 0, -inf, -np.finfo(np.float32).max], [0] * 4, [0] * 4],
}
POOL_GEOMETRIES = {
    "2x2": dict(kernel_size=2),
    "3x3-s2-p1-ceil": dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),  # windows hang into -inf padding
    "2x2-s1": dict(kernel_size=2, stride=1),
    "4x4-p2": dict(kernel_size=4, stride=3, padding=2, ceil_mode=True),
}


def _nan_aware_bits_equal(got, want):
    """Same NaN positions, same bits elsewhere (so -0.0 and +0.0 differ)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    gn, wn = np.isnan(got), np.isnan(want)
    np.testing.assert_array_equal(gn, wn)
    assert _bits(got[~gn]) == _bits(want[~wn]), f"{got[~gn]} != {want[~wn]} (bitwise)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", list(POOL_GEOMETRIES))
@pytest.mark.parametrize("pattern", list(POOL_PATTERNS))
def test_max_pool_special_values_every_isa(pattern, geometry, dtype):
    plane = np.array(POOL_PATTERNS[pattern], np.float32).astype(dtype)
    x = np.stack([plane, plane.T.copy()])[None]  # (1, 2, 4, 4)
    kwargs = POOL_GEOMETRIES[geometry]
    want, want_i = R.max_pool2d(x, return_indices=True, **kwargs)
    results = []
    for isa in _isa_loop():
        y, i = F.max_pool2d(x, return_indices=True, **kwargs)
        assert ((i >= 0) & (i < 16)).all(), f"index out of range on {isa}"
        np.testing.assert_array_equal(i, want_i, err_msg=isa)
        _nan_aware_bits_equal(y, want.astype(dtype))
        # the value at the index is the maximum, bit for bit (NaN payloads included)
        picked = np.take_along_axis(x.reshape(1, 2, -1), i.reshape(1, 2, -1), -1).reshape(y.shape)
        assert _bits(picked) == _bits(y)
        dy = np.arange(1, y.size + 1, dtype=dtype).reshape(y.shape)
        dx = F.max_pool2d_backward(dy, i, x.shape)
        np.testing.assert_array_equal(dx, R.max_pool2d_backward(dy, i, x.shape).astype(dtype))
        results.append((_bits(y), _bits(i), _bits(dx)))
    assert all(r == results[0] for r in results), "results differ between ISA paths"


RELU_SPECIALS = {
    "nan": nan, "negative-nan": NEG_NAN, "nan-payload": QNAN_PAYLOAD, "+inf": inf, "-inf": -inf, "-0.0": -0.0,
    "+0.0": 0.0, "+subnormal": SUB, "-subnormal": -SUB, "max": np.finfo(np.float32).max,
    "-max": -np.finfo(np.float32).max, "tiny": np.finfo(np.float32).tiny,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", list(RELU_SPECIALS))
def test_relu_special_values_every_isa(special, dtype):
    # The special value at every position of a vector-sized block and in the tails, on every path.
    value = np.array(RELU_SPECIALS[special], np.float32).astype(dtype)  # f32 -> f64 keeps NaN payloads
    for n in (1, 7, 16, 33, 67):
        x = np.full(n, value, dtype)
        x[::3] = np.array([1.5, -2.5], dtype).repeat(len(x[::3]))[: len(x[::3])]
        dy = np.arange(1, n + 1, dtype=dtype)
        want_y = R.relu(x).astype(dtype)
        want_dx = R.relu_backward(dy, x).astype(dtype)
        results = []
        for isa in _isa_loop():
            y, dx = F.relu(x), F.relu_backward(dy, x)
            _nan_aware_bits_equal(y, want_y)
            assert not np.signbit(y[~np.isnan(y)]).any(), f"relu gave -0.0 on {isa}"
            nan_in = np.isnan(x)
            assert _bits(y[nan_in]) == _bits(x[nan_in]), f"NaN payload or sign changed on {isa}"
            assert _bits(dx) == _bits(want_dx), f"relu_backward differs on {isa}"
            inplace = x.copy()
            F.relu(inplace, out=inplace)
            assert _bits(inplace) == _bits(y)
            results.append(_bits(y) + _bits(dx))
        assert all(r == results[0] for r in results), "results differ between ISA paths"


@pytest.mark.parametrize("filters", [4, 16])  # 16: weight gradients as outer products
@pytest.mark.parametrize("special", ["nan", "+inf", "-inf", "inf-times-zero", "inf-weight-on-padding", "opposite-infs"])
def test_conv_propagates_nan_and_inf_like_the_oracle(special, filters):
    # Same NaN/Inf positions as the float64 oracle, on every path, forward and backward.
    x = _rng.integers(-3, 4, (2, 3, 7, 7)).astype(np.float32)
    w = _rng.integers(-3, 4, (filters, 3, 3, 3)).astype(np.float32)
    if special == "nan":
        x[0, 1, 3, 3] = nan
    elif special in ("+inf", "-inf"):
        x[1, 2, 0, 6] = inf if special == "+inf" else -inf
    elif special == "inf-times-zero":  # inf * 0 = NaN
        x[0, 1, 3, 3] = inf
        w[:, 1, 1, 1] = 0
    elif special == "inf-weight-on-padding":  # a corner tap reads the zero padding at the border
        w[1, 0, 0, 0] = inf
    else:
        x[0, 0, 2, 2], x[0, 0, 2, 3] = inf, -inf
    kwargs = dict(stride=1, padding=1)
    with np.errstate(invalid="ignore"):  # inf - inf and inf * 0 in the oracle: NaN is the point
        want = R.conv2d(x, w, None, **kwargs)
        dy = np.ones(want.shape, np.float32)
        want_b = R.conv2d_backward(dy, x, w, **kwargs)
    for isa in _isa_loop():
        y = F.conv2d(x, w, None, **kwargs)
        for got, ref in [(y, want), *zip(F.conv2d_backward(dy, x, w, **kwargs), want_b)]:
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=isa)
            np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref), err_msg=isa)
            np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref), err_msg=isa)
            finite = np.isfinite(ref)
            np.testing.assert_array_equal(got[finite], ref[finite], err_msg=isa)  # small integers: exact
