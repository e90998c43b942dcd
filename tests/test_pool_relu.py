"""max_pool2d, ReLU and add kernels against the NumPy oracle: exact, on every ISA path."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from shapes import BENCH_POOL

import convforge
from convforge import _core, _params
from convforge import functional as F
from convforge import reference as R

POOL_CASES = [
    # (shape, kernel, stride, padding, ceil_mode)
    ((3, 6, 28, 28), 2, None, 0, False),
    ((2, 16, 10, 10), 2, 2, 0, False),
    ((1, 1, 7, 7), 2, 2, 0, True),
    ((2, 3, 9, 11), 3, 2, 1, True),
    ((1, 2, 15, 17), 3, 1, 1, False),
    ((1, 2, 16, 33), (2, 3), (1, 2), (1, 0), False),
    ((5, 1, 31, 1), (3, 1), (2, 1), 0, True),
    ((1, 3, 1, 1), 1, 1, 0, False),
    ((1, 1, 2, 2), 2, 2, 1, True),
    ((1, 4, 5, 5), 5, 3, 2, True),
    # 2x2/2 without padding is the SIMD path: odd sizes, several 16/8-output steps plus a tail
    ((1, 2, 15, 17), 2, 2, 0, False),
    ((2, 1, 6, 70), 2, None, 0, False),
    ((1, 3, 5, 33), 2, 2, 0, False),
    ((1, 1, 2, 2), 2, 2, 0, False),
    # narrow planes (up to 8 outputs a row) take two output rows per step on AVX-512
    ((2, 3, 12, 16), 2, 2, 0, False),
    ((1, 2, 9, 3), 2, 2, 0, False),
    ((3, 2, 4, 15), 2, 2, 0, False),
]


def _pool_id(c):
    return f"{'x'.join(map(str, c[0]))}-k{c[1]}-s{c[2]}-p{c[3]}-{'ceil' if c[4] else 'floor'}"


def _fill(rng, shape, dtype, ties):
    if ties:  # few distinct values: many ties, whose first occurrence must win
        return rng.integers(0, 3, size=shape).astype(dtype)
    # distinct values, so a wrong argmax cannot hide behind an equal value
    return (rng.permutation(np.prod(shape)).reshape(shape) - np.prod(shape) // 2).astype(dtype)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_max_pool_matches_oracle(case, dtype, ties, isa, rng):
    shape, k, s, p, ceil = case
    x = _fill(rng, shape, dtype, ties)
    # reference
    y_want, i_want = R.max_pool2d(x, k, s, p, ceil, return_indices=True)
    # kernel, NaN / -1 prefilled
    kernel, stride, pad, out_hw = _params.pool_params(shape[2:], k, s, p, ceil)
    out = np.full((*shape[:2], *out_hw), np.nan, dtype)
    idx = np.full(out.shape, -1, np.int64)
    y, i = _core.maxpool2d_fwd(x, kernel, stride, pad, out_hw, True, out=out, out_indices=idx)
    # verify: exact values and indices
    np.testing.assert_array_equal(y, y_want)
    np.testing.assert_array_equal(i, i_want)
    np.testing.assert_array_equal(F.max_pool2d(x, k, s, p, ceil), y)
    dy = rng.integers(-3, 4, size=y.shape).astype(dtype)
    np.testing.assert_array_equal(F.max_pool2d_backward(dy, i, shape), R.max_pool2d_backward(dy, i, shape))


def test_max_pool_special_values(isa):
    nan, inf = np.nan, np.inf
    x = np.array([[[
        [1.0, nan, 2.0, nan],    # first NaN wins its window
        [-inf, -inf, -inf, -inf],
        [-0.0, 0.0, inf, 3.0],   # -0.0 == 0.0: the first one wins
        [0.0, -0.0, -inf, inf],
    ]]], np.float32)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(i[0, 0], [[1, 3], [8, 10]])
    assert np.isnan(y[0, 0, 0]).all() and y[0, 0, 1, 1] == inf
    assert np.signbit(y[0, 0, 1, 0])  # -0.0 came first, and is what the window returns
    all_inf = np.full((1, 1, 3, 3), -np.inf, np.float32)
    y, i = F.max_pool2d(all_inf, 3, 2, 1, ceil_mode=True, return_indices=True)
    assert np.all(y == -np.inf) and np.all((i >= 0) & (i < 9))


@pytest.mark.parametrize("ow", range(1, 18))
def test_max_pool_writes_nothing_past_its_outputs(ow, isa, rng):
    # Output rows of every width from 1 to 17: every part step of the 8- and 16-output SIMD steps
    # (a part step taken as a whole one stores past its row, which the next row's step writes
    # again, except after the last row). The outputs and indices are the front of larger buffers
    # whose rest must stay as it was.
    shape = (2, 3, 4, 2 * ow)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel, stride, pad, out_hw = _params.pool_params(shape[2:], 2, 2, 0, False)
    n = shape[0] * shape[1] * out_hw[0] * out_hw[1]
    values, indices = np.full(n + 32, 7.0, np.float32), np.full(n + 32, -7, np.int64)
    y, i = _core.maxpool2d_fwd(x, kernel, stride, pad, out_hw, True, out=values[:n].reshape(*shape[:2], *out_hw),
                               out_indices=indices[:n].reshape(*shape[:2], *out_hw))
    y_want, i_want = R.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, y_want)
    np.testing.assert_array_equal(i, i_want)
    assert np.all(values[n:] == 7.0) and np.all(indices[n:] == -7)


@pytest.mark.parametrize("shape", BENCH_POOL, ids=lambda s: "x".join(map(str, s)))
def test_max_pool_bench_shapes(shape, isa, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    y_want, i_want = R.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, y_want)
    np.testing.assert_array_equal(i, i_want)


# Sizes around the vector widths (8, 16) and the unrolled steps (32, 64) and one >64Ki block.
RELU_SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1000, (1 << 16) + 3, 3 * (1 << 16) + 17]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", RELU_SIZES)
def test_relu_matches_oracle(n, dtype, isa, rng):
    x = rng.standard_normal(n).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
    x[rng.choice(n, size=min(n, 5), replace=False)] = specials[: min(n, 5)]
    dy = rng.standard_normal(n).astype(dtype)
    out = np.full(n, np.nan, dtype)
    y = _core.relu_fwd(x, out)
    np.testing.assert_array_equal(y, R.relu(x))
    assert not np.any(np.signbit(y[~np.isnan(y)])), "relu(-0.0) must be +0.0"
    dx = _core.relu_bwd(dy, x, np.full(n, np.nan, dtype))
    np.testing.assert_array_equal(dx, R.relu_backward(dy, x))


def test_relu_in_place_and_out(rng):
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    want = R.relu(x)
    y = F.relu(x, out=x)
    assert y is x
    np.testing.assert_array_equal(x, want)
    # a strided out is filled through a temporary
    base = np.zeros((4, 5, 12), np.float32)
    out = base[:, :, ::2]
    F.relu(rng.standard_normal((4, 5, 6)).astype(np.float32), out=out)
    assert np.all(base[:, :, 1::2] == 0)
    # a 0-d array stays 0-d
    assert F.relu(np.full((), -2.0, np.float32)).shape == ()


def test_relu_backward_zero_at_zero_and_nan():
    x = np.array([-1.0, -0.0, 0.0, 1e-30, np.nan, np.inf], np.float32)
    dy = np.full(6, 7.0, np.float32)
    np.testing.assert_array_equal(F.relu_backward(dy, x), [0, 0, 0, 7, 0, 7])


@pytest.mark.parametrize("n", [1, 15, 16, 33, 1000])
def test_relu_any_alignment_of_input_and_output(n, isa, rng):
    # The SIMD kernels peel a masked head up to out's next 64-byte boundary: every head length,
    # with x offset differently from out (then only the stores are aligned), and in place.
    for x_off, out_off in ((0, 0), (1, 1), (3, 7), (15, 0), (0, 13), (9, 9)):
        x = np.full(n + 16, np.inf, np.float32)[x_off : x_off + n]
        x[...] = rng.standard_normal(n)
        x[:: 7] = -0.0
        dy = rng.standard_normal(n).astype(np.float32)
        buf = np.full(n + 32, 5.0, np.float32)
        out = buf[out_off : out_off + n]
        np.testing.assert_array_equal(_core.relu_fwd(x, out), R.relu(x))
        assert (buf[:out_off] == 5).all() and (buf[out_off + n :] == 5).all()
        np.testing.assert_array_equal(_core.relu_bwd(dy, x, out), R.relu_backward(dy, x))
        assert (buf[:out_off] == 5).all() and (buf[out_off + n :] == 5).all()
        want = R.relu(x)
        np.testing.assert_array_equal(_core.relu_fwd(x, x), want)


@pytest.mark.parametrize("offset", [0, 1, 5], ids=lambda o: f"offset{o}")
def test_relu_streaming_path_for_large_arrays(offset, isa, rng):
    # Passes that move >= 64 MiB take non-temporal stores after a masked head up to a 64-byte
    # boundary (forward: x and out, 8 bytes per element); an offset view makes that head
    # non-empty, in place too.
    n = (64 << 20) // 8 + 37
    base = rng.standard_normal(n + offset).astype(np.float32)
    x = base[offset:]
    x[:: 997] = np.nan
    dy = rng.standard_normal(n).astype(np.float32)
    want = R.relu(x)
    want_grad = R.relu_backward(dy, x)
    out = np.full(n + offset, np.nan, np.float32)[offset:]
    np.testing.assert_array_equal(_core.relu_fwd(x, out), want)
    np.testing.assert_array_equal(_core.relu_bwd(dy, x, out), want_grad)
    np.testing.assert_array_equal(F.relu(x, out=x), want)  # in place


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", RELU_SIZES)
def test_add_matches_numpy_on_any_thread_count(n, dtype, rng):
    # add (the training step's residual and fan-out sums): NumPy's a + b bit for bit, specials
    # included, on 1 and 2 threads (blocks of 64Ki elements: the larger sizes split).
    a = rng.standard_normal(n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 3.0], dtype)
    a[rng.choice(n, size=min(n, 5), replace=False)] = specials[: min(n, 5)]
    b[rng.choice(n, size=min(n, 5), replace=False)] = -specials[: min(n, 5)]
    with np.errstate(invalid="ignore"):  # inf + -inf
        want = a + b
    previous = convforge.get_num_threads()
    try:
        for threads in (2, 1):
            convforge.set_num_threads(threads)
            np.testing.assert_array_equal(_core.add(a, b, np.full(n, 7, dtype)), want)
            np.testing.assert_array_equal(F.add(a, b), want)
            rectified = F.add(a, b, relu=True)  # relu(a + b) as the relu kernel: NaN kept, -0 -> +0
            np.testing.assert_array_equal(rectified, R.relu(want))
            assert not np.any(np.signbit(rectified[~np.isnan(rectified)]))
            # gate: relu_backward of the sum (0 where the gate is <= 0 or NaN), in place too
            gate = np.roll(a, 1)
            np.testing.assert_array_equal(F.add(a, b, gate=gate), R.relu_backward(want, gate))
            in_place = gate.copy()
            np.testing.assert_array_equal(F.add(a, b, out=in_place, gate=in_place), R.relu_backward(want, gate))
    finally:
        convforge.set_num_threads(previous)


def test_add_in_place_strided_and_empty(rng):
    a = rng.standard_normal((4, 5, 6)).astype(np.float32)
    b = rng.standard_normal((4, 5, 6)).astype(np.float32)
    want = a + b
    for target in ("a", "b"):
        x, y = a.copy(), b.copy()
        out = x if target == "a" else y
        assert F.add(x, y, out=out) is out
        np.testing.assert_array_equal(out, want)
    # strided inputs (a Concatenate's gradient slices) and a strided out: NumPy's add
    wide = rng.standard_normal((4, 10, 6)).astype(np.float32)
    np.testing.assert_array_equal(F.add(wide[:, :5], wide[:, 5:]), wide[:, :5] + wide[:, 5:])
    base = np.zeros((4, 5, 12), np.float32)
    F.add(a, b, out=base[:, :, ::2])
    np.testing.assert_array_equal(base[:, :, ::2], want)
    assert np.all(base[:, :, 1::2] == 0)
    assert F.add(np.ones((0, 3), np.float32), np.ones((0, 3), np.float32)).shape == (0, 3)
    np.testing.assert_array_equal(F.add(wide[:, :5], -wide[:, 5:], relu=True), R.relu(wide[:, :5] - wide[:, 5:]))
    F.add(a, -b, out=base[:, :, ::2], relu=True)
    np.testing.assert_array_equal(base[:, :, ::2], R.relu(a - b))
    np.testing.assert_array_equal(F.add(wide[:, :5], wide[:, 5:], gate=wide[:, 5:]),
                                  R.relu_backward(wide[:, :5] + wide[:, 5:], wide[:, 5:]))


def test_add_refuses_bad_arguments():
    a = np.ones((2, 3), np.float32)
    read_only = np.ones((2, 3), np.float32)
    read_only.flags.writeable = False
    shared = np.zeros(12, np.float32)
    x = shared[:6].reshape(2, 3)
    cases = [
        (lambda: F.add(a, np.ones((3, 2), np.float32)), ValueError, "b must have the shape of a (2, 3)"),
        (lambda: F.add(a, np.ones((2, 3), np.float64)), TypeError, "b is float64 but a is float32"),
        (lambda: F.add(a, [[1, 2, 3]] * 2), TypeError, "b must be a numpy.ndarray"),
        (lambda: F.add(a.astype(np.int32), a.astype(np.int32)), TypeError, "a must be float32 or float64"),
        (lambda: F.add(a, a, out=np.ones((2, 2), np.float32)), ValueError, "out must be a float32 array of shape"),
        (lambda: F.add(a, a, out=read_only), ValueError, "out is read-only"),
        (lambda: _core.add(x, a, shared[3:9].reshape(2, 3)), ValueError, "out must not share memory with a"),
        (lambda: _core.add(a, np.ones((2, 4), np.float32)), ValueError, "b must have the shape of a (2, 3), got (2, 4)"),
        (lambda: _core.add(a, a, np.ones((3, 2), np.float32).T), ValueError, "out must be C-contiguous"),
        (lambda: F.add(a, a, relu="yes"), TypeError, "relu must be True or False, got 'yes'"),
        (lambda: F.add(a, a, relu=True, gate=a), ValueError, "add takes relu=True or a gate, not both"),
        (lambda: F.add(a, a, gate=np.ones((3, 2), np.float32)), ValueError, "gate must have the shape of a (2, 3)"),
        (lambda: F.add(a, a, gate=np.ones((2, 3))), TypeError, "gate is float64 but a is float32"),
        (lambda: _core.add(a, a, None, False, [[1.0] * 3] * 2), TypeError, "gate must be a numpy.ndarray or None"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_max_pool_backward_gate_is_relu_backward(case, dtype, isa, rng):
    # gate= (the pool's input, a ReLU's output) fuses that ReLU's backward into the scatter:
    # the bits of relu_backward(max_pool2d_backward(dy), gate), with zeros, negatives and NaN
    # in the gate (the ReLU gradient is 0 at 0 and at NaN).
    shape, k, s, p, ceil = case
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[::3] = 0.0
    x.flat[1::7] = np.nan
    _, idx = F.max_pool2d(x, k, s, p, ceil, return_indices=True)
    dy = rng.standard_normal(idx.shape).astype(dtype)
    want = F.relu_backward(F.max_pool2d_backward(dy, idx, shape), x)
    got = _core.maxpool2d_bwd(dy, idx, shape, np.full(shape, np.nan, dtype), gate=x)
    np.testing.assert_array_equal(got, want)
    if x.size >= 64:  # the gate cleared some gradients and let others through
        assert (F.max_pool2d_backward(dy, idx, shape)[got == 0] != 0).any() and (got != 0).any()


def test_max_pool_backward_gate_is_checked():
    x = np.ones((1, 2, 4, 4), np.float32)
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    dy = np.ones(idx.shape, np.float32)
    with pytest.raises(ValueError, match="gate must have the input's shape"):
        _core.maxpool2d_bwd(dy, idx, x.shape, gate=x[:, :1].copy())
    with pytest.raises(TypeError, match="gate must be float32"):
        _core.maxpool2d_bwd(dy, idx, x.shape, gate=x.astype(np.float64))
    with pytest.raises(ValueError, match="out must not share memory with gate"):
        _core.maxpool2d_bwd(dy, idx, x.shape, out=x, gate=x)


def _gelu_oracle(x):
    """GELU and its derivative in float64, from math.erfc (relatively exact in the tails)."""
    import math

    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        phi2 = erfc(-x / math.sqrt(2))  # 2 Phi(x)
        density = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return 0.5 * x * phi2, 0.5 * phi2, x * density


def _ulps(got, want, scale):
    """|got - want| in units of the float32 spacing at |scale| (the smallest subnormal at least)."""
    spacing = np.spacing(np.abs(scale).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / np.maximum(spacing, 2.0**-149)


def test_gelu_float32_is_within_half_an_ulp_of_the_exact_value(rng):
    # float32 GELU is evaluated in double (kernels/gelu/gelu_impl.h): within 0.51 ulp of x Phi(x)
    # from math.erfc, the far negative tail included (the NumPy expression 0.5 x (1 + erf) lost it
    # there, 1 + erf(x / sqrt 2) cancelling), and its gradient within 0.51 ulp of the size of its
    # two terms (it crosses zero near -0.75, where no relative bound holds).
    x = np.concatenate([rng.standard_normal(300_000) * 4, np.linspace(-14.5, 14.5, 300_001),
                        rng.uniform(-1e-3, 1e-3, 20_000), [0.0, -0.0, 1e-30, -1e-30, 1e-40, -1e-40]]).astype(np.float32)
    want, cdf, slope = _gelu_oracle(x)
    assert _ulps(F.gelu(x), want, want).max() <= 0.51
    dy = rng.standard_normal(x.size).astype(np.float32)
    assert _ulps(F.gelu_backward(dy, x), dy * (cdf + slope), np.abs(dy) * (cdf + np.abs(slope))).max() <= 0.51


def test_gelu_float32_specials():
    x = np.array([np.inf, -np.inf, np.nan, 3e38, -3e38, -14.6, -20.0, 20.0, 0.0, -0.0], np.float32)
    y = F.gelu(x)
    np.testing.assert_array_equal(y[:2], [np.inf, np.nan])  # -inf: -inf * 0, as 0.5 x (1 + erf) gives
    assert np.isnan(y[2]) and y[3] == np.float32(3e38) and y[7] == 20.0
    assert np.all(y[[4, 5, 6, 9]] == 0) and np.all(np.signbit(y[[4, 5, 6, 9]])) and not np.signbit(y[8])
    g = F.gelu_backward(np.ones_like(x), x)
    assert np.all(np.isnan(g[:3]))  # inf * 0 in x phi(x), as PyTorch's
    np.testing.assert_array_equal(g[3:], [1, 0, 0, 0, 1, 0.5, 0.5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 17, 4095, 4096, 4097, 100_003])  # SIMD tails; the kernel's items of 4096
def test_gelu_is_the_same_on_any_thread_count_strided_or_in_place(n, dtype, rng):
    x = (4 * rng.standard_normal(n)).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-30], dtype)
    x[rng.choice(n, size=min(n, 5), replace=False)] = specials[: min(n, 5)]
    dy = rng.standard_normal(n).astype(dtype)
    previous = convforge.get_num_threads()
    try:
        convforge.set_num_threads(1)
        want, want_dx = F.gelu(x), F.gelu_backward(dy, x)
        convforge.set_num_threads(2)
        for got in (F.gelu(x), F.gelu(np.repeat(x, 2)[::2])):  # a view: copied to contiguous
            np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        np.testing.assert_array_equal(F.gelu_backward(dy, x).view(np.uint8), want_dx.view(np.uint8))
        in_place = x.copy()
        assert _core.gelu_fwd(in_place, in_place) is in_place
        np.testing.assert_array_equal(in_place.view(np.uint8), want.view(np.uint8))
        assert _core.gelu_bwd(dy.copy(), x, dy_out := dy.copy()) is dy_out
    finally:
        convforge.set_num_threads(previous)
    if n > 1:
        finite = np.isfinite(x)
        ref, cdf, slope = _gelu_oracle(x[finite])
        ref_dx, scale = dy[finite] * (cdf + slope), np.abs(dy[finite]) * (cdf + np.abs(slope))
        if dtype == np.float32:
            assert _ulps(want[finite], ref, ref).max() <= 0.51
            assert _ulps(want_dx[finite], ref_dx, scale).max() <= 0.51
        else:  # 1 + erf(x / sqrt 2) as NumPy computed it: ~1e-16 absolute, in the far tail too
            np.testing.assert_allclose(want[finite], ref, rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(want_dx[finite], ref_dx, rtol=1e-13, atol=1e-14)


def test_gelu_float32_has_the_same_bits_on_every_isa_path():
    # The AVX-512, AVX2 and portable paths run gelu_impl.h's operations in one order, unfused.
    script = (
        "import hashlib, numpy as np, convforge\n"
        "from convforge import functional as F\n"
        "x = (4 * np.random.default_rng(5).standard_normal(100_003)).astype(np.float32)\n"
        "x[:6] = [np.nan, np.inf, -np.inf, -0.0, 1e-40, -14.49]\n"
        "y = np.concatenate([F.gelu(x), F.gelu_backward(np.ones_like(x), x)])\n"
        "print(convforge.build_info()['isa'], hashlib.sha256(y.tobytes()).hexdigest())\n"
    )
    import subprocess
    import sys

    isas = ["ref", "avx2", "avx512"]
    best = convforge.build_info()["isa"]
    digests = {}
    for isa in isas[: isas.index(best) + 1]:
        env = {**os.environ, "CONVFORGE_MAX_ISA": isa}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        ran, digest = out.stdout.split()
        assert ran == isa
        digests[isa] = digest
    assert len(set(digests.values())) == 1, digests


def test_gelu_and_erf_refuse_bad_arguments():
    a = np.ones((2, 3), np.float32)
    assert F.gelu(np.ones((0, 3), np.float32)).shape == (0, 3) and F.erf(np.ones((0, 3))).dtype == np.float64
    cases = [
        (lambda: F.gelu(a.astype(np.int32)), TypeError, "x must be float32 or float64"),
        (lambda: F.erf([1.0, 2.0]), TypeError, "x must be a numpy.ndarray"),
        (lambda: _core.gelu_fwd(a, np.ones((3, 2), np.float32)), ValueError, "out must"),
        (lambda: _core.gelu_fwd(a, np.ones((2, 3), np.float64)), TypeError, "out"),
        (lambda: F.gelu_backward(a, a.T), ValueError, "dy must have the shape of x (3, 2), got (2, 3)"),
        (lambda: F.gelu_backward(a, a.astype(np.float64)), TypeError, "float32"),
        (lambda: _core.gelu_bwd(a, a, np.ones((2, 3), np.float64)), TypeError, "out"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            call()
