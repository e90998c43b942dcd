"""dense forward/backward kernels against the NumPy float64 oracle, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import numerical_grad
from test_conv2d import assert_within_bound

import convforge
from convforge import _core
from convforge import functional as F
from convforge import reference as R

# (batch, in_features, units): around the micro-kernels' row panels (AVX-512 12 rows, AVX2 6,
# ref 4), vector widths (16 / 8 floats) and column panels (32 / 64), the 256-long reduction
# block, the 64-column items of the packed backward-data pass, plus LeNet-5's three layers.
DENSE_SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (2, 16, 16),
    (5, 17, 33),
    (6, 33, 64),
    (7, 300, 5),
    (12, 15, 65),
    (13, 64, 31),
    (25, 257, 17),
    (64, 400, 120),
    (64, 120, 84),
    (64, 84, 10),
    (97, 130, 129),
    (300, 520, 3),
    # One to four samples (the forward's row-by-row form): outputs in registers (up to 8
    # vectors), in memory (wider), and in several column ranges on two threads (over 512 columns).
    (1, 400, 120),
    (1, 130, 129),
    (1, 64, 1040),
    (3, 400, 120),
    (4, 130, 129),
    (2, 64, 1040),
    # The forward's packed form (a reduction block of w over 512 KiB, more rows than one panel):
    # float64 only at 260 x 300, both dtypes at 300 x 520 (ragged last column block and
    # reduction block), and past the 1024-row chunk.
    (13, 260, 300),
    (30, 300, 520),
    (1030, 256, 520),
]


def _id(shape):
    return "x".join(map(str, shape))


def _draw(rng, shape, dtype, integers=False):
    if integers:
        return rng.integers(-4, 5, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=_id)
def test_dense_matches_oracle(shape, dtype, isa, rng):
    n, i, u = shape
    x, w, b, dy = (_draw(rng, s, dtype) for s in ((n, i), (i, u), (u,), (n, u)))
    # reference, and the same sums over magnitudes for the error bound
    y_want = R.dense(x, w, b)
    dx_want, dw_want, db_want = R.dense_backward(dy, x, w)
    y_mag = R.dense(np.abs(x), np.abs(w), np.abs(b))
    dx_mag, dw_mag, db_mag = R.dense_backward(np.abs(dy), np.abs(x), np.abs(w))
    # kernels, into NaN-filled outputs: an element a kernel skips cannot pass
    y = _core.dense_fwd(x, w, b, out=np.full((n, u), np.nan, dtype))
    dx = _core.dense_bwd_data(dy, w, out=np.full((n, i), np.nan, dtype))
    dw, db = _core.dense_bwd_weights(dy, x, True, out_w=np.full((i, u), np.nan, dtype), out_b=np.full(u, np.nan, dtype))
    assert_within_bound(y, y_want, y_mag, i + 1, dtype)
    assert_within_bound(dx, dx_want, dx_mag, u, dtype)
    assert_within_bound(dw, dw_want, dw_mag, n, dtype)
    assert_within_bound(db, db_want, db_mag, n, dtype)
    # functional gives the same bits
    np.testing.assert_array_equal(F.dense(x, w, b), y)
    for got, want in zip(F.dense_backward(dy, x, w), (dx, dw, db)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(13, 64, 31), (64, 400, 120), (97, 130, 129)], ids=_id)
def test_dense_small_integers_are_exact(shape, isa, rng):
    # Integer sums far below 2**24 are exact in float32: a difference is a wrong index.
    n, i, u = shape
    x, w, b, dy = (_draw(rng, s, np.float32, integers=True) for s in ((n, i), (i, u), (u,), (n, u)))
    np.testing.assert_array_equal(F.dense(x, w, b), R.dense(x, w, b))
    for got, want in zip(F.dense_backward(dy, x, w), R.dense_backward(dy, x, w)):
        np.testing.assert_array_equal(got, want)


def test_dense_without_bias_and_need_flags(rng):
    x, w = rng.standard_normal((9, 20), np.float32), rng.standard_normal((20, 7), np.float32)
    np.testing.assert_allclose(F.dense(x, w), x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    dx, dw, db = F.dense_backward(np.ones((9, 7), np.float32), x, w, need_input_grad=False, need_bias_grad=False)
    assert dx is None and db is None and dw.shape == w.shape


@pytest.mark.parametrize("shape", [(64, 400, 120), (300, 520, 3), (97, 130, 129), (30, 300, 520), (1030, 256, 520)],
                         ids=_id)
def test_dense_bit_identical_across_threads(shape, isa, threads, rng):
    n, i, u = shape
    x, w, b, dy = (_draw(rng, s, np.float32) for s in ((n, i), (i, u), (u,), (n, u)))
    results = []
    for t in (1, 2, 3):
        convforge.set_num_threads(t)
        results.append((F.dense(x, w, b), *F.dense_backward(dy, x, w)))
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_few_rows_give_the_batch_rows_bits(dtype, with_bias, isa, threads, rng):
    # Batches of 1-4 rows run their own form (dense_fwd_few_rows: w read row after row, once for
    # all the rows), a batch of 6 the micro-kernel's row panels: every row's bits must agree, at
    # lane and register edges (1-17, 63-65, 127-129 units), in memory (200, 520) and in column
    # ranges split between threads (1040, 1537), on one and two threads.
    for units in (1, 7, 15, 16, 17, 63, 64, 65, 120, 127, 128, 129, 200, 520, 1040, 1537):
        # Wide ones past 1 MFLOP (two threads take them); rows of w four at a time and 3 / 1 left.
        features = 601 if units > 600 else 299
        x = rng.standard_normal((6, features)).astype(dtype)
        w = rng.standard_normal((features, units)).astype(dtype)
        b = rng.standard_normal(units).astype(dtype) if with_bias else None
        convforge.set_num_threads(1)
        batch = F.dense(x, w, b)
        for t in (1, 2):
            convforge.set_num_threads(t)
            for rows in (1, 2, 3, 4):
                first = 6 - rows  # the last rows: x's rows at an offset
                few = _core.dense_fwd(x[first:], w, b, out=np.full((rows, units), np.nan, dtype))
                np.testing.assert_array_equal(few, batch[first:], err_msg=f"{units} units, {rows} rows, {t} threads")


@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided", "broadcast"])
def test_dense_non_contiguous_inputs_equal_contiguous(layout, rng):
    x = rng.standard_normal((6, 40)).astype(np.float32)
    w = rng.standard_normal((40, 18)).astype(np.float32)
    if layout == "fortran":
        xv, wv = np.asfortranarray(x), np.asfortranarray(w)
    elif layout == "reversed":
        xv, wv = x[::-1, ::-1], w[::-1]
    elif layout == "strided":
        xv, wv = rng.standard_normal((12, 40)).astype(np.float32)[::2], w[:, :]
    else:
        xv, wv = np.broadcast_to(x[:1], x.shape), w
    want = F.dense(np.ascontiguousarray(xv), np.ascontiguousarray(wv))
    np.testing.assert_array_equal(F.dense(xv, wv), want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    got = F.dense_backward(np.asfortranarray(dy), xv, wv)
    ref = F.dense_backward(dy, np.ascontiguousarray(xv), np.ascontiguousarray(wv))
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_dense_gradients_numerically(rng):
    x, w, b = (rng.standard_normal(s) for s in ((5, 19), (19, 17), (17,)))
    dy = rng.standard_normal((5, 17))
    dx, dw, db = F.dense_backward(dy, x, w)
    for analytic, param in ((dx, x), (dw, w), (db, b)):
        numeric = numerical_grad(lambda: np.sum(F.dense(x, w, b) * dy), param)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
    # ... and the check can fail: dw transposed the wrong way round, or one element nudged
    numeric = numerical_grad(lambda: np.sum(F.dense(x, w, b) * dy), w)
    for broken in (dw[::-1], dw + np.where(np.arange(dw.size).reshape(dw.shape) == 5, 1e-4, 0)):
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(broken, numeric, rtol=1e-6, atol=1e-7)


def test_dense_propagates_nan_and_inf(isa):
    x = np.ones((3, 20), np.float32)
    w = np.ones((20, 18), np.float32)
    x[1, 4] = np.nan
    w[2, 5] = np.inf
    y = F.dense(x, w)
    assert np.isnan(y[1]).all()
    assert np.isinf(y[[0, 2], 5]).all() and np.isfinite(np.delete(y[[0, 2]], 5, axis=1)).all()


BAD_DENSE = [
    ("x float16", lambda x, w, b: F.dense(x.astype(np.float16), w), TypeError, "x must be float32 or float64"),
    ("x int", lambda x, w, b: F.dense(x.astype(np.int64), w), TypeError, "x must be float32 or float64"),
    ("mixed dtypes", lambda x, w, b: F.dense(x, w.astype(np.float64)), TypeError, "w is float64 but x is float32"),
    ("x 3-d", lambda x, w, b: F.dense(x[None], w), ValueError, r"x must have 2 dimensions \(batch, in_features\)"),
    ("x list", lambda x, w, b: F.dense(x.tolist(), w), TypeError, "x must be a numpy.ndarray"),
    ("features mismatch", lambda x, w, b: F.dense(x[:, :5], w), ValueError, "x has 5 features but w expects 8"),
    ("bias shape", lambda x, w, b: F.dense(x, w, b[:2]), ValueError, r"b must have shape \(3,\)"),
    ("empty features", lambda x, w, b: F.dense(x[:, :0], w[:0]), ValueError, "x is empty"),  # an empty batch is fine
    ("dy shape", lambda x, w, b: F.dense_backward(np.ones((4, 4), np.float32), x, w), ValueError,
     r"dy must have the shape of dense's output \(4, 3\)"),
    ("flag not bool", lambda x, w, b: F.dense_backward(np.ones((4, 3), np.float32), x, w, need_input_grad=1),
     TypeError, "need_input_grad must be True or False"),
    ("core out aliases x", lambda x, w, b: _core.dense_fwd(x, w, None, out=x.reshape(-1)[:12].reshape(4, 3)),
     ValueError, "out must not share memory with x"),
    ("core out read-only", lambda x, w, b: _core.dense_fwd(x, w, None, out=_read_only((4, 3))),
     ValueError, "out is read-only"),
    ("core dx aliases dy", lambda x, w, b: _dx_over_dy(w), ValueError, "out must not share memory with dy"),
    ("core dy batch", lambda x, w, b: _core.dense_bwd_weights(np.ones((5, 3), np.float32), x, True), ValueError,
     "dy must have the shape of the output"),
    ("core w non-contiguous", lambda x, w, b: _core.dense_fwd(x, np.asfortranarray(w), None), ValueError,
     "w must be C-contiguous"),
]


def _dx_over_dy(w):
    buf = np.zeros(64, np.float32)
    return _core.dense_bwd_data(buf[:12].reshape(4, 3), w, out=buf[:32].reshape(4, 8))


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("case", BAD_DENSE, ids=lambda c: c[0])
def test_dense_bad_input_is_refused(case, rng):
    _, call, exc, match = case
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 8), (8, 3), (3,)))
    copies = [a.copy() for a in (x, w, b)]
    with pytest.raises(exc, match=match):
        call(x, w, b)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


def test_need_weight_grad_false_computes_dx_alone(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 13)).astype(np.float32)
    w = rng.standard_normal((13, 4)).astype(np.float32)
    dy = rng.standard_normal((9, 4)).astype(np.float32)
    dx_all, _, _ = F.dense_backward(dy, x, w)
    monkeypatch.setattr(F, "dense_backward_weights", lambda *a, **k: pytest.fail("weight gradient computed"))
    dx, dw, db = F.dense_backward(dy, x, w, need_weight_grad=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, dx_all)
