"""Hypothesis: random shapes and parameters, kernels against the oracle (or the documented error)."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from convforge import _core  # noqa: E402
from convforge import functional as F  # noqa: E402
from convforge import reference as R  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
ISAS = st.sampled_from([isa for isa in ("ref", "avx2", "avx512")])

pair = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
padding = st.one_of(
    st.integers(0, 3),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    st.sampled_from(["valid", "same"]),
)


@st.composite
def conv_problem(draw):
    n, c, k = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 20))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    r, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (n, c, h, w), (k, c, r, s), draw(pair), draw(padding), draw(pair), draw(st.booleans()), draw(ISAS)


def _with_isa(isa):
    previous = _core._isa_cap()
    _core._set_isa_cap(isa)
    return previous


@SETTINGS
@given(conv_problem(), st.integers(0, 2**32 - 1))
def test_conv2d_agrees_or_refuses(problem, seed):
    x_shape, w_shape, stride, pad, dilation, with_bias, isa = problem
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=x_shape).astype(np.float32)  # exact in float32
    w = rng.integers(-3, 4, size=w_shape).astype(np.float32)
    b = rng.integers(-3, 4, size=w_shape[0]).astype(np.float32) if with_bias else None
    try:
        want = R.conv2d(x, w, b, stride, pad, dilation)
    except ValueError as err:
        with pytest.raises(ValueError, match="conv2d output would be"):
            F.conv2d(x, w, b, stride, pad, dilation)
        assert "conv2d output would be" in str(err)
        return
    previous = _with_isa(isa)
    try:
        np.testing.assert_array_equal(F.conv2d(x, w, b, stride, pad, dilation), want)
        dy = rng.integers(-3, 4, size=want.shape).astype(np.float32)
        got = F.conv2d_backward(dy, x, w, stride, pad, dilation, need_bias_grad=with_bias)
        ref = R.conv2d_backward(dy, x, w, stride, pad, dilation, need_bias_grad=with_bias)
        for g, r in zip(got, ref):
            if r is None:
                assert g is None
            else:
                np.testing.assert_array_equal(g, r)
    finally:
        _core._set_isa_cap(previous)


@st.composite
def pool_problem(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 20))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    return (n, c, h, w), (kh, kw), stride, pad, draw(st.booleans()), draw(st.integers(0, 3))


@SETTINGS
@given(pool_problem(), st.integers(0, 2**32 - 1))
def test_max_pool_agrees_or_refuses(problem, seed):
    shape, kernel, stride, pad, ceil_mode, n_distinct = problem
    rng = np.random.default_rng(seed)
    # few distinct values (ties), plus a sprinkle of NaN and infinities
    x = rng.integers(0, n_distinct + 1, size=shape).astype(np.float64)
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    try:
        want, want_idx = R.max_pool2d(x, kernel, stride, pad, ceil_mode, return_indices=True)
    except ValueError:
        with pytest.raises(ValueError, match="max_pool2d output would be"):
            F.max_pool2d(x, kernel, stride, pad, ceil_mode)
        return
    for dtype in (np.float32, np.float64):
        y, idx = F.max_pool2d(x.astype(dtype), kernel, stride, pad, ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, want.astype(dtype))
        np.testing.assert_array_equal(idx, want_idx)
        assert idx.min() >= 0 and idx.max() < shape[2] * shape[3]


@SETTINGS
@given(st.integers(1, 300), st.integers(0, 2**32 - 1), ISAS)
def test_relu_agrees(n, seed, isa):
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-2.5, -0.0, 0.0, 1.5, np.nan, np.inf, -np.inf, 1e-40], np.float32), size=n)
    previous = _with_isa(isa)
    try:
        np.testing.assert_array_equal(F.relu(x), R.relu(x))
        np.testing.assert_array_equal(F.relu_backward(x, x), R.relu_backward(x, x))
    finally:
        _core._set_isa_cap(previous)
