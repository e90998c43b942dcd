"""Tests of the NumPy oracles themselves (convforge.reference).

The C++ kernels are judged against these functions, so they get their own
evidence: hand-computed cases, two independent formulations (direct loops
over kernel offsets vs im2col + matmul) that must agree, a numerical gradient
check that is shown to catch a wrong gradient, and PyTorch when installed.
"""

import numpy as np
import pytest
from gradients import numerical_grad

from convforge import reference
from convforge._params import conv_params
from convforge.reference import (
    conv2d,
    conv2d_backward,
    conv2d_backward_im2col,
    conv2d_im2col,
    max_pool2d,
    max_pool2d_backward,
    max_pool2d_backward_im2col,
    max_pool2d_im2col,
    relu,
    relu_backward,
)

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


GRAD_TOL = 1e-7


def grad_error(analytic, numeric):
    """Largest difference, relative to the gradient's scale (at least 1)."""
    return np.max(np.abs(analytic - numeric)) / max(1.0, np.max(np.abs(numeric)))


def random_conv_case(rng):
    """A random small conv2d problem: (x, w, b, stride, padding, dilation)."""
    n, c, k = rng.integers(1, 4, size=3)
    r, s = rng.integers(1, 5, size=2)
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
    # At least the dilated kernel span, so every padding choice has an output.
    h = dilation[0] * (r - 1) + 1 + rng.integers(0, 6)
    w_ = dilation[1] * (s - 1) + 1 + rng.integers(0, 6)
    padding = [
        0,
        int(rng.integers(0, 3)),
        tuple(int(v) for v in rng.integers(0, 3, size=2)),
        tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in range(2)),
        "same",
        "valid",
    ][rng.integers(0, 6)]
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((k, c, r, s))
    b = rng.standard_normal(k) if rng.random() < 0.7 else None
    return x, w, b, stride, padding, dilation


CONV_CASES = [
    # (x shape, w shape, stride, padding, dilation)
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1),
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 1, 1),
    ((1, 2, 8, 9), (3, 2, 3, 2), 2, 1, 1),
    ((1, 2, 8, 9), (3, 2, 3, 2), (2, 3), (1, 0), (1, 2)),
    ((2, 1, 9, 9), (2, 1, 3, 3), 1, 0, 2),
    ((2, 3, 6, 7), (2, 3, 3, 3), 2, "same", 1),
    ((2, 3, 5, 5), (2, 3, 4, 4), 1, "same", 1),
    ((1, 2, 7, 6), (2, 2, 3, 3), 3, "same", 2),
    ((1, 2, 6, 6), (3, 2, 2, 3), 1, ((0, 2), (1, 0)), 1),
    ((1, 4, 5, 5), (6, 4, 1, 1), 1, 0, 1),
    ((1, 1, 4, 4), (1, 1, 4, 4), 1, 0, 1),  # kernel as large as the input
    ((3, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),  # LeNet conv2
]


def make_conv(shape_x, shape_w, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape_x), rng.standard_normal(shape_w), rng.standard_normal(shape_w[0])


# ---------------------------------------------------------------------------
# conv2d: hand-computed cases
# ---------------------------------------------------------------------------

X3 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
W2 = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)


@pytest.mark.parametrize("conv", [conv2d, conv2d_im2col])
def test_conv2d_hand_computed(conv):
    # Cross-correlation, not convolution: y[0,0] = 1*1 + 2*2 + 4*3 + 5*4.
    np.testing.assert_array_equal(conv(X3, W2)[0, 0], [[37, 47], [67, 77]])
    np.testing.assert_array_equal(conv(X3, W2, b=np.array([-7.0]))[0, 0], [[30, 40], [60, 70]])
    # Zero padding: the corner output sees only x[0,0] under w[1,1].
    np.testing.assert_array_equal(
        conv(X3, W2, padding=1)[0, 0],
        [[4, 11, 18, 9], [18, 37, 47, 21], [36, 67, 77, 33], [14, 23, 26, 9]],
    )
    np.testing.assert_array_equal(conv(X3, W2, padding=1, stride=2)[0, 0], [[4, 18], [36, 77]])
    # Dilation 2 spreads the taps over the corners of the 3x3 input.
    np.testing.assert_array_equal(conv(X3, W2, dilation=2)[0, 0], [[1 * 1 + 3 * 2 + 7 * 3 + 9 * 4]])
    # Two input channels sum; two filters give two output channels.
    x = np.concatenate([X3, 10 * X3], axis=1)
    w = np.stack([np.concatenate([W2[0], W2[0]]), np.concatenate([W2[0], -W2[0]])])
    y = conv(x, w)
    np.testing.assert_array_equal(y[0, 0], 11 * np.array([[37, 47], [67, 77]]))
    np.testing.assert_array_equal(y[0, 1], -9 * np.array([[37, 47], [67, 77]]))


@pytest.mark.parametrize("backward", [conv2d_backward, conv2d_backward_im2col])
def test_conv2d_backward_hand_computed(backward):
    dx, dw, db = backward(np.ones((1, 1, 2, 2)), X3, W2)
    # dw[r, s] = sum of x over the positions tap (r, s) visits.
    np.testing.assert_array_equal(dw[0, 0], [[1 + 2 + 4 + 5, 2 + 3 + 5 + 6], [4 + 5 + 7 + 8, 5 + 6 + 8 + 9]])
    # dx[i, j] = sum of the weights that ever touch x[i, j].
    np.testing.assert_array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    np.testing.assert_array_equal(db, [4])
    # With padding the gradient landing on the padding is discarded.
    dx, _, _ = backward(np.ones((1, 1, 4, 4)), X3, W2, padding=1)
    np.testing.assert_array_equal(dx[0, 0], np.full((3, 3), 10.0))


@pytest.mark.parametrize(
    "size, kernel, stride, dilation, pads",
    [
        (5, 3, 1, 1, (1, 1)),
        (5, 4, 1, 1, (1, 2)),  # odd total: the extra row goes after
        (5, 3, 2, 1, (1, 1)),
        (6, 3, 2, 1, (0, 1)),
        (7, 1, 3, 1, (0, 0)),
        (7, 3, 1, 2, (2, 2)),
        (2, 5, 1, 1, (2, 2)),
    ],
)
def test_conv2d_same_padding(size, kernel, stride, dilation, pads):
    rng = np.random.default_rng(size * 100 + kernel * 10 + stride)
    x = rng.standard_normal((1, 2, size, size + 1))
    w = rng.standard_normal((3, 2, kernel, kernel))
    y = conv2d(x, w, stride=stride, padding="same", dilation=dilation)
    assert y.shape[2:] == (-(-size // stride), -(-(size + 1) // stride))  # ceil(in / stride)
    pads_w = conv_params((size, size + 1), (kernel, kernel), stride, "same", dilation)[1][2:]
    explicit = conv2d(x, w, stride=stride, padding=(pads, pads_w), dilation=dilation)
    np.testing.assert_array_equal(y, explicit)


# ---------------------------------------------------------------------------
# conv2d: direct vs im2col
# ---------------------------------------------------------------------------


def assert_conv_agree(x, w, b, stride, padding, dilation, rtol=1e-12):
    originals = [a.copy() for a in (x, w)]
    y = conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(
        conv2d_im2col(x, w, b, stride=stride, padding=padding, dilation=dilation), y, rtol=rtol, atol=1e-12
    )
    dy = np.random.default_rng(1).standard_normal(y.shape)
    direct = conv2d_backward(dy, x, w, stride=stride, padding=padding, dilation=dilation)
    im2col = conv2d_backward_im2col(dy, x, w, stride=stride, padding=padding, dilation=dilation)
    for name, a, e in zip(("dx", "dw", "db"), im2col, direct):
        assert a.shape == e.shape, name
        np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-12, err_msg=name)
    for a, o in zip((x, w), originals):
        np.testing.assert_array_equal(a, o)  # oracles must not modify their inputs


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_direct_matches_im2col(case):
    shape_x, shape_w, stride, padding, dilation = case
    x, w, b = make_conv(shape_x, shape_w, seed=len(str(case)))
    assert_conv_agree(x, w, b, stride, padding, dilation)


@pytest.mark.parametrize("seed", range(40))
def test_conv2d_direct_matches_im2col_random(seed):
    assert_conv_agree(*random_conv_case(np.random.default_rng(seed)))


def test_conv2d_backward_optional_gradients():
    x, w, _ = make_conv((2, 3, 6, 6), (4, 3, 3, 3), seed=3)
    dy = np.random.default_rng(4).standard_normal((2, 4, 4, 4))
    full = conv2d_backward(dy, x, w)
    for backward in (conv2d_backward, conv2d_backward_im2col):
        dx, dw, db = backward(dy, x, w, need_input_grad=False, need_bias_grad=False)
        assert dx is None and db is None
        np.testing.assert_allclose(dw, full[1], rtol=1e-12)


# ---------------------------------------------------------------------------
# conv2d_backward: numerical gradient check
# ---------------------------------------------------------------------------

GRAD_CASES = [
    # (x shape, w shape, stride, padding, dilation)
    ((2, 2, 5, 5), (3, 2, 3, 3), 1, 0, 1),
    ((2, 2, 6, 5), (3, 2, 3, 2), 2, 1, 1),
    ((1, 3, 6, 6), (2, 3, 2, 2), 1, "same", 2),
    ((2, 2, 7, 6), (2, 2, 3, 3), (2, 3), "same", 1),
    ((1, 2, 5, 6), (2, 2, 2, 3), 1, ((1, 0), (0, 2)), (2, 1)),
]


def conv_grads_numeric(x, w, b, g, params):
    """Central-difference gradients of L = sum(g * conv2d(x, w, b))."""

    def loss():
        return float(np.sum(g * conv2d(x, w, b, **params)))

    return numerical_grad(loss, x, eps=1e-5), numerical_grad(loss, w, eps=1e-5), numerical_grad(loss, b, eps=1e-5)


@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
def test_conv2d_backward_numerical_gradient(case):
    shape_x, shape_w, stride, padding, dilation = case
    params = dict(stride=stride, padding=padding, dilation=dilation)
    x, w, b = make_conv(shape_x, shape_w, seed=len(str(case)))
    g = np.random.default_rng(7).standard_normal(conv2d(x, w, b, **params).shape)

    numeric = conv_grads_numeric(x, w, b, g, params)
    analytic = conv2d_backward(g, x, w, **params)
    for name, a, n in zip(("dx", "dw", "db"), analytic, numeric):
        assert grad_error(a, n) < GRAD_TOL, name


def test_gradient_check_detects_wrong_gradients():
    # The check above is only evidence if it can fail: feed it gradients that
    # are wrong by a little, and by a plausible bug, and require rejection.
    params = dict(stride=2, padding=1, dilation=1)
    x, w, b = make_conv((2, 2, 6, 5), (3, 2, 3, 3), seed=11)
    g = np.random.default_rng(12).standard_normal(conv2d(x, w, b, **params).shape)
    numeric = conv_grads_numeric(x, w, b, g, params)
    analytic = conv2d_backward(g, x, w, **params)

    rng = np.random.default_rng(13)
    for name, a, n in zip(("dx", "dw", "db"), analytic, numeric):
        assert grad_error(a, n) < GRAD_TOL, name
        nudged = a.copy()
        nudged.flat[rng.integers(a.size)] += 1e-4
        assert grad_error(nudged, n) > GRAD_TOL, f"a nudged {name} passed the check"
    # Convolution instead of cross-correlation: the kernel-flip bug.
    assert grad_error(analytic[1][:, :, ::-1, ::-1], numeric[1]) > GRAD_TOL
    # Cropping the padded dx at the wrong offset.
    dx_unpadded = conv2d_backward(g, np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), w, stride=2)[0]
    assert grad_error(dx_unpadded[:, :, :-2, :-2], numeric[0]) > GRAD_TOL


# ---------------------------------------------------------------------------
# max_pool2d
# ---------------------------------------------------------------------------

POOLS = [max_pool2d, max_pool2d_im2col]


@pytest.mark.parametrize("pool", POOLS)
def test_max_pool2d_hand_computed(pool):
    x = np.array([[1, 5, 2, 0], [3, 4, 8, 7], [9, 0, 1, 1], [2, 6, 1, 3]], dtype=float).reshape(1, 1, 4, 4)
    y, idx = pool(x, 2, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[5, 8], [9, 3]])
    np.testing.assert_array_equal(idx[0, 0], [[0 * 4 + 1, 1 * 4 + 2], [2 * 4 + 0, 3 * 4 + 3]])
    assert idx.dtype == np.int64 and idx.shape == y.shape
    np.testing.assert_array_equal(pool(x, 2), y)
    # Overlapping windows, stride 1.
    np.testing.assert_array_equal(pool(x, 3, stride=1)[0, 0], [[9, 8], [9, 8]])


@pytest.mark.parametrize("pool", POOLS)
def test_max_pool2d_ties_take_first_in_row_major_order(pool):
    y, idx = pool(np.full((1, 1, 3, 3), 2.0), 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])  # each window's top-left
    x = np.array([[1.0, 7.0], [7.0, 2.0]]).reshape(1, 1, 2, 2)
    assert pool(x, 2, return_indices=True)[1][0, 0, 0, 0] == 1  # (0, 1) before (1, 0)


@pytest.mark.parametrize("pool", POOLS)
def test_max_pool2d_nan_propagates_first_nan_wins(pool):
    nan, inf = np.nan, np.inf
    x = np.array([[1.0, nan, inf, 0.0], [nan, 3.0, 4.0, nan]]).reshape(1, 1, 2, 4)
    y, idx = pool(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 7  # NaN beats +inf


@pytest.mark.parametrize("pool", POOLS)
def test_max_pool2d_padding_never_chosen(pool):
    # All -inf ties with the implicit -inf padding; the index must still
    # point at real input: the first real element of each clipped window.
    y, idx = pool(np.full((1, 1, 3, 3), -np.inf), 2, stride=2, padding=1, return_indices=True)
    assert y.shape == (1, 1, 2, 2) and np.all(y == -np.inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])
    # Negative values lose nothing to padding either.
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y, idx = pool(x, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[-1, -2], [-4, -5]])  # each clipped window's top-left
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])


@pytest.mark.parametrize("pool", POOLS)
def test_max_pool2d_ceil_mode(pool):
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    assert pool(x, 2).shape == (1, 1, 2, 2)
    y, idx = pool(x, 2, ceil_mode=True, return_indices=True)
    # The last window hangs over the edge and is clipped to row/column 4.
    np.testing.assert_array_equal(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    np.testing.assert_array_equal(idx[0, 0], y[0, 0])  # x[h, w] == h*5 + w
    # PyTorch's rule: no window may start in the right padding.
    assert pool(np.zeros((1, 1, 5, 5)), 2, stride=2, padding=1, ceil_mode=True).shape == (1, 1, 3, 3)


def test_max_pool2d_parameter_errors():
    x = np.zeros((1, 1, 6, 6))
    for pool in POOLS:
        with pytest.raises(ValueError, match="at most half the kernel"):
            pool(x, 2, padding=2)
        with pytest.raises(ValueError, match="too small"):
            pool(x, 7)
        with pytest.raises(ValueError, match=r"x must have 4 dimensions \(N, C, H, W\), got shape \(6, 6\)"):
            pool(x[0, 0], 2)
    assert max_pool2d(x, 3).shape == (1, 1, 2, 2)  # stride defaults to kernel_size


def random_pool_case(rng):
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    stride = None if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
    n, c = (int(v) for v in rng.integers(1, 4, size=2))
    shape = (n, c, kh + int(rng.integers(0, 6)), kw + int(rng.integers(0, 6)))
    kind = rng.integers(0, 3)
    if kind == 0:
        x = rng.standard_normal(shape)
    else:  # small integers: many ties
        x = rng.integers(-2, 3, size=shape).astype(float)
        if kind == 2:  # and some NaN / -inf
            x[rng.random(shape) < 0.1] = np.nan
            x[rng.random(shape) < 0.2] = -np.inf
    return x, (kh, kw), stride, padding, bool(rng.random() < 0.5)


@pytest.mark.parametrize("seed", range(60))
def test_max_pool2d_direct_matches_im2col_random(seed):
    x, kernel, stride, padding, ceil_mode = random_pool_case(np.random.default_rng(seed))
    y, idx = max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
    y2, idx2 = max_pool2d_im2col(x, kernel, stride, padding, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y2, y)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(idx2, idx)
    # Every index names a real input element holding the maximum.
    n, c, h, w = x.shape
    assert idx.min() >= 0 and idx.max() < h * w
    picked = np.take_along_axis(x.reshape(n, c, -1), idx.reshape(n, c, -1), axis=-1).reshape(y.shape)
    np.testing.assert_array_equal(picked, y)

    dy = np.random.default_rng(seed + 1000).standard_normal(y.shape)
    dx = max_pool2d_backward(dy, idx, x.shape)
    np.testing.assert_allclose(max_pool2d_backward_im2col(dy, idx, x.shape), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx.sum(), dy.sum())  # every dy lands somewhere


@pytest.mark.parametrize("backward", [max_pool2d_backward, max_pool2d_backward_im2col])
def test_max_pool2d_backward_accumulates_overlaps(backward):
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the maximum of all four 2x2 windows
    _, idx = max_pool2d(x, 2, stride=1, return_indices=True)
    dy = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    dx = backward(dy, idx, x.shape)
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    np.testing.assert_array_equal(dx[0, 0], expected)
    with pytest.raises(ValueError, match="indices must lie in"):
        backward(dy, idx + 9, x.shape)
    with pytest.raises(ValueError, match="indices must have the shape of dy"):
        backward(dy, idx[..., :1], x.shape)


def test_max_pool2d_backward_numerical_gradient():
    rng = np.random.default_rng(21)
    # Distinct values 0.01 apart: a 1e-4 step cannot change any argmax.
    x = (rng.permutation(2 * 3 * 7 * 6) * 0.01).reshape(2, 3, 7, 6)
    params = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y, idx = max_pool2d(x, return_indices=True, **params)
    g = rng.standard_normal(y.shape)
    numeric = numerical_grad(lambda: float(np.sum(g * max_pool2d(x, **params))), x, eps=1e-4)
    assert grad_error(max_pool2d_backward(g, idx, x.shape), numeric) < GRAD_TOL


# ---------------------------------------------------------------------------
# relu
# ---------------------------------------------------------------------------


def test_relu_values():
    x = np.array([-2.0, -0.0, 0.0, 3.5, np.nan, -np.inf, np.inf])
    y = relu(x)
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.0, 3.5, np.nan, 0.0, np.inf])
    assert not np.signbit(y[1])  # relu(-0.0) is +0.0
    assert y.dtype == np.float64 and not np.shares_memory(y, x)
    assert relu([[-1, 2]]).tolist() == [[0.0, 2.0]]


def test_relu_out_and_in_place():
    x = np.array([[-1.0, 2.0], [np.nan, -0.0]])
    out = np.full_like(x, 99.0)
    assert relu(x, out=out) is out
    np.testing.assert_array_equal(out, [[0.0, 2.0], [np.nan, 0.0]])
    assert relu(x, out=x) is x
    np.testing.assert_array_equal(x, out)
    assert not np.signbit(x[1, 1])
    with pytest.raises(ValueError, match="out must be"):
        relu(x, out=np.zeros(3))


def test_relu_backward():
    x = np.array([-1.0, -0.0, 0.0, 1e-300, 2.0, np.nan])
    dy = np.arange(1.0, 7.0)
    np.testing.assert_array_equal(relu_backward(dy, x), [0, 0, 0, 4, 5, 0])
    with pytest.raises(ValueError, match="dy must have the shape of x"):
        relu_backward(dy[:3], x)
    # Away from 0 it is the derivative of relu.
    x = np.random.default_rng(5).standard_normal((3, 4)) + 0.5
    x[np.abs(x) < 1e-3] = 1.0
    g = np.random.default_rng(6).standard_normal(x.shape)
    numeric = numerical_grad(lambda: float(np.sum(g * relu(x))), x, eps=1e-6)
    assert grad_error(relu_backward(g, x), numeric) < GRAD_TOL


# ---------------------------------------------------------------------------
# Validation and dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("conv", [conv2d, conv2d_im2col])
def test_conv2d_shape_errors(conv):
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"w must have 4 dimensions \(K, C, R, S\), got shape \(3, 3\)"):
        conv(x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"x must have 4 dimensions \(N, C, H, W\), got shape \(3, 5, 5\)"):
        conv(x[0], w)
    with pytest.raises(ValueError, match="x has 3 channels but w expects 1"):
        conv(x, np.zeros((4, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"b must have shape \(K,\) = \(4,\), got shape \(3,\)"):
        conv(x, w, np.zeros(3))
    with pytest.raises(ValueError, match="conv2d output would be"):
        conv(x, np.zeros((4, 3, 6, 6)))
    with pytest.raises(TypeError, match="stride must be an int"):
        conv(x, w, stride=True)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        conv(x, w, padding="full")


@pytest.mark.parametrize("backward", [conv2d_backward, conv2d_backward_im2col])
def test_conv2d_backward_dy_shape_error(backward):
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 4, 3, 3\)"):
        backward(np.zeros((2, 4, 5, 5)), x, w)


def test_dtypes():
    rng = np.random.default_rng(8)
    x32 = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w32 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b32 = rng.standard_normal(4).astype(np.float32)

    y64 = conv2d(x32, w32, b32, padding=1)
    assert y64.dtype == np.float64  # the oracles always compute in float64
    y32 = conv2d_im2col(x32, w32, b32, padding=1)
    assert y32.dtype == np.float32 and y32.flags.c_contiguous
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)
    assert conv2d_im2col(x32.astype(np.float64), w32.astype(np.float64)).dtype == np.float64

    dy32 = rng.standard_normal(y32.shape).astype(np.float32)
    for got, want in zip(conv2d_backward_im2col(dy32, x32, w32, padding=1), conv2d_backward(dy32, x32, w32, padding=1)):
        assert got.dtype == np.float32 and want.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    p32, idx = max_pool2d_im2col(x32, 2, return_indices=True)
    assert p32.dtype == np.float32 and max_pool2d(x32, 2).dtype == np.float64
    assert max_pool2d_backward_im2col(p32, idx, x32.shape).dtype == np.float32
    assert max_pool2d_backward(p32, idx, x32.shape).dtype == np.float64
    assert relu(x32).dtype == np.float64 and relu_backward(x32, x32).dtype == np.float64


def test_empty_batch():
    x, w = np.zeros((0, 3, 5, 5)), np.zeros((2, 3, 3, 3))
    for conv, backward in [(conv2d, conv2d_backward), (conv2d_im2col, conv2d_backward_im2col)]:
        assert conv(x, w).shape == (0, 2, 3, 3)
        dx, dw, db = backward(np.zeros((0, 2, 3, 3)), x, w)
        assert dx.shape == x.shape and np.all(dw == 0) and np.all(db == 0)
    for pool, backward in [(max_pool2d, max_pool2d_backward), (max_pool2d_im2col, max_pool2d_backward_im2col)]:
        y, idx = pool(x, 2, return_indices=True)
        assert y.shape == idx.shape == (0, 3, 2, 2)
        assert backward(y, idx, x.shape).shape == x.shape


def test_reference_exports():
    for name in reference.__all__:
        assert callable(getattr(reference, name))


# ---------------------------------------------------------------------------
# PyTorch, when available
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(15))
def test_conv2d_matches_torch(seed):
    torch = pytest.importorskip("torch")
    x, w, b, stride, padding, dilation = random_conv_case(np.random.default_rng(seed))
    # Torch's 'same' refuses stride > 1 and its padding is symmetric, so
    # pad explicitly with the (top, bottom, left, right) the oracle used.
    pads = conv_params(x.shape[2:], w.shape[2:], stride, padding, dilation)[1]
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    xpad = torch.nn.functional.pad(xt, (pads[2], pads[3], pads[0], pads[1]))
    yt = torch.nn.functional.conv2d(xpad, wt, bt, stride=stride, dilation=dilation)

    y = conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)

    dy = np.random.default_rng(seed + 100).standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = conv2d_backward(dy, x, w, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_max_pool2d_matches_torch(seed):
    torch = pytest.importorskip("torch")
    x, kernel, stride, padding, ceil_mode = random_pool_case(np.random.default_rng(seed))
    # Torch lets the *last* NaN of a window win; the convforge rule is the
    # first, so compare only NaN-free inputs here.
    x = np.nan_to_num(x, nan=5.0, posinf=np.inf, neginf=-np.inf)
    yt, it = torch.nn.functional.max_pool2d(
        torch.tensor(x), kernel, stride=stride, padding=padding, ceil_mode=ceil_mode, return_indices=True
    )
    y, idx = max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
