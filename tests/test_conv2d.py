"""conv2d forward/backward kernels against the NumPy float64 oracle, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import numerical_grad
from shapes import TEST_CONV

from convforge import _core, _params
from convforge import functional as F
from convforge import reference as R

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def make_case(case, dtype, rng, integers=False):
    def draw(shape):
        if integers:
            return rng.integers(-4, 5, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    x = draw((case.n, case.c, case.h, case.w))
    w = draw((case.k, case.c, case.r, case.s))
    b = draw((case.k,))
    return x, w, b


def conv_args(case):
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation)


def core_args(case):
    """The normalised (stride, pads, dilation, out_hw) that the private _core API takes."""
    return _params.conv_params((case.h, case.w), (case.r, case.s), case.stride, case.padding, case.dilation)


def assert_within_bound(got, want, abs_terms, n_terms, dtype):
    """|got - want| <= n_terms * eps * sum|terms| elementwise: the classic bound on a float sum.

    ``abs_terms`` is the same computation applied to absolute values, i.e. the sum of the
    magnitudes of the terms that make up each output element.
    """
    assert got.dtype == dtype
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), "non-finite output (an element was skipped or overflowed)"
    bound = 2.0 * n_terms * EPS[dtype] * abs_terms + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.id)
def test_forward_matches_oracle(case, dtype, isa, rng):
    x, w, b = make_case(case, dtype, rng)
    # reference
    want = R.conv2d(x, w, b, **conv_args(case))
    magnitude = R.conv2d(np.abs(x), np.abs(w), np.abs(b), **conv_args(case))
    # kernel: into a NaN-filled output, so an element the kernel skips cannot pass
    stride, pads, dilation, out_hw = core_args(case)
    out = np.full((case.n, case.k, *out_hw), np.nan, dtype=dtype)
    got = _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out)
    # verify
    assert got is out
    assert_within_bound(got, want, magnitude, case.c * case.r * case.s + 1, dtype)
    np.testing.assert_array_equal(F.conv2d(x, w, b, **conv_args(case)), got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.id)
def test_backward_matches_oracle(case, dtype, isa, rng):
    x, w, _ = make_case(case, dtype, rng)
    stride, pads, dilation, out_hw = core_args(case)
    dy = rng.standard_normal((case.n, case.k, *out_hw)).astype(dtype)
    # reference
    dx_want, dw_want, db_want = R.conv2d_backward(dy, x, w, **conv_args(case))
    dx_mag, dw_mag, db_mag = R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **conv_args(case))
    # kernel, NaN-prefilled
    dx = _core.conv2d_bwd_data(dy, w, x.shape, stride, pads, dilation, out=np.full(x.shape, np.nan, dtype))
    dw, db = _core.conv2d_bwd_weights(
        dy, x, w.shape, stride, pads, dilation, True,
        out_w=np.full(w.shape, np.nan, dtype), out_b=np.full(case.k, np.nan, dtype),
    )
    # verify
    assert_within_bound(dx, dx_want, dx_mag, case.k * case.r * case.s, dtype)
    assert_within_bound(dw, dw_want, dw_mag, case.n * out_hw[0] * out_hw[1], dtype)
    assert_within_bound(db, db_want, db_mag, case.n * out_hw[0] * out_hw[1], dtype)
    fdx, fdw, fdb = F.conv2d_backward(dy, x, w, **conv_args(case))
    np.testing.assert_array_equal(fdx, dx)
    np.testing.assert_array_equal(fdw, dw)
    np.testing.assert_array_equal(fdb, db)


@pytest.mark.parametrize("case", [c for c in TEST_CONV if c.name in ("lenet_c1", "w17", "stride3", "dilation_hw", "pointwise", "c25_rows")], ids=lambda c: c.id)
def test_small_integers_are_exact(case, isa, rng):
    # Sums of products of integers in [-4, 4] stay far below 2**24: float32 is exact, so any
    # difference from the oracle is a wrong index, not rounding.
    x, w, b = make_case(case, np.float32, rng, integers=True)
    np.testing.assert_array_equal(F.conv2d(x, w, b, **conv_args(case)), R.conv2d(x, w, b, **conv_args(case)))
    dy = np.rint(F.conv2d(x, w, None, **conv_args(case)) / 8).astype(np.float32)
    got = F.conv2d_backward(dy, x, w, **conv_args(case))
    want = R.conv2d_backward(dy, x, w, **conv_args(case))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


def test_need_flags_skip_work(rng):
    x, w, _ = make_case(TEST_CONV[0], np.float32, rng)
    dy = np.ones((3, 6, 28, 28), np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, padding=2, need_input_grad=False, need_bias_grad=False)
    assert dx is None and db is None and dw.shape == w.shape


@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided", "broadcast"])
def test_non_contiguous_inputs_equal_contiguous(layout, rng):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    if layout == "fortran":
        xv, wv = np.asfortranarray(x), np.asfortranarray(w)
    elif layout == "reversed":
        xv, wv = x[:, :, ::-1, ::-1], w[::-1]
    elif layout == "strided":
        big = rng.standard_normal((2, 6, 18, 11)).astype(np.float32)
        xv, wv = big[:, ::2, ::2, :], w
    else:
        xv, wv = np.broadcast_to(x[:1], x.shape), w
    want = F.conv2d(np.ascontiguousarray(xv), np.ascontiguousarray(wv), padding=1)
    np.testing.assert_array_equal(F.conv2d(xv, wv, padding=1), want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    got = F.conv2d_backward(dy[..., ::1], xv, wv, padding=1)
    ref = F.conv2d_backward(dy, np.ascontiguousarray(xv), np.ascontiguousarray(wv), padding=1)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_inputs_are_not_modified(rng):
    x, w, b = make_case(TEST_CONV[1], np.float32, rng)
    copies = [a.copy() for a in (x, w, b)]
    y = F.conv2d(x, w, b)
    F.conv2d_backward(np.ones_like(y), x, w)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)




GRAD_CASES = [c for c in TEST_CONV if c.name in ("w3", "w7", "c25_rows", "stride2_same", "dilation_hw", "asym_pad", "big_pad")]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_gradients_numerically(case, rng):
    x, w, b = make_case(case, np.float64, rng)
    args = conv_args(case)
    y = F.conv2d(x, w, b, **args)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(dy, x, w, **args)

    def forward():
        return F.conv2d(x, w, b, **args)

    for analytic, param in ((dx, x), (dw, w), (db, b)):
        numeric = numerical_grad(lambda: np.sum(forward() * dy), param)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


def test_gradient_check_detects_a_wrong_gradient(rng):
    # The check above must be able to fail: a gradient off by one tap, or by a small amount
    # in one element, is caught.
    case = GRAD_CASES[0]
    x, w, b = make_case(case, np.float64, rng)
    args = conv_args(case)
    dy = rng.standard_normal(F.conv2d(x, w, b, **args).shape)
    _, dw, _ = F.conv2d_backward(dy, x, w, **args)
    numeric = numerical_grad(lambda: np.sum(F.conv2d(x, w, b, **args) * dy), w)
    for broken in (np.flip(dw, axis=(2, 3)), dw + np.where(np.arange(dw.size).reshape(dw.shape) == 5, 1e-4, 0)):
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(broken, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.id)
def test_fused_relu_equals_relu_after_conv(case, dtype, isa, rng):
    # The forward's relu post-op (what Conv2D(activation='relu') uses in training) must give the
    # bits of conv2d then relu, on every path (direct store, scattered rows, im2col), NaN kept,
    # no -0.0 out, and write every element (the output starts as +inf).
    x, w, b = make_case(case, dtype, rng)
    x.flat[0] = np.nan  # reaches the outputs whose windows read it
    b[0] = -1e3  # filter 0: negative outputs for relu to clear
    stride, pads, dilation, out_hw = core_args(case)
    plain = _core.conv2d_fwd(x, w, b, stride, pads, dilation)
    assert (plain < 0).any()
    want = F.relu(plain)
    out = np.full((case.n, case.k, *out_hw), np.inf, dtype=dtype)
    got = _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out, relu=True)
    assert got is out
    np.testing.assert_array_equal(got, want)
    assert not np.signbit(got[np.isfinite(got)]).any()
