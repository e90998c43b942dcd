"""Bad input gets a clear TypeError/ValueError naming the argument; never a crash or a wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import _core
from convforge import functional as F

X = np.ones((2, 3, 8, 8), np.float32)
W = np.ones((4, 3, 3, 3), np.float32)
B = np.ones(4, np.float32)
DY = np.ones((2, 4, 6, 6), np.float32)


def raises(exc, match):
    return pytest.raises(exc, match=match)


BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.float16, np.complex64, object, ">f4"]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=str)
@pytest.mark.parametrize("arg", ["x", "w"])
def test_conv_rejects_dtype(arg, dtype):
    bad = (X if arg == "x" else W).astype(dtype)
    args = {"x": X, "w": W, arg: bad}
    with raises(TypeError, f"{arg} must be float32 or float64"):
        F.conv2d(args["x"], args["w"])


def test_mixed_dtypes_are_refused():
    with raises(TypeError, "w is float64 but x is float32"):
        F.conv2d(X, W.astype(np.float64))
    with raises(TypeError, "b is float64 but x is float32"):
        F.conv2d(X, W, B.astype(np.float64))
    with raises(TypeError, "dy is float64"):
        F.conv2d_backward(DY.astype(np.float64), X, W)


@pytest.mark.parametrize("value", [None, [[1.0]], 3.0, "x"], ids=repr)
def test_non_arrays(value):
    with raises(TypeError, "x must be a numpy.ndarray"):
        F.conv2d(value, W)
    with raises(TypeError, "x must be a numpy.ndarray"):
        F.max_pool2d(value, 2)
    with raises(TypeError, "x must be a numpy.ndarray"):
        F.relu(value)


def test_wrong_ndim_and_shapes():
    with raises(ValueError, r"x must have 4 dimensions \(N, C, H, W\), got shape \(3, 8, 8\)"):
        F.conv2d(X[0], W)
    with raises(ValueError, r"w must have 4 dimensions"):
        F.conv2d(X, W[0])
    with raises(ValueError, "x has 3 channels but w expects 2"):
        F.conv2d(X, W[:, :2])
    with raises(ValueError, r"b must have shape \(4,\)"):
        F.conv2d(X, W, B[:3])
    with raises(ValueError, r"dy must have the shape of conv2d's output \(2, 4, 6, 6\)"):
        F.conv2d_backward(DY[:, :, :5], X, W)
    with raises(ValueError, "x is empty"):
        F.conv2d(X[:, :, :0], W)  # (an empty batch, X[:0], is fine: an empty result)
    with raises(ValueError, "x is empty"):
        F.max_pool2d(X[:, :, :0], 2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(stride=0), ValueError, "stride must be >= 1, got 0"),
        (dict(stride=-2), ValueError, "stride must be >= 1"),
        (dict(stride=1.5), TypeError, "stride must be an int, got float"),
        (dict(stride=True), TypeError, "stride must be an int, got bool"),
        (dict(stride=2**31), ValueError, "stride must be <= 2147483647"),
        (dict(stride=2**62), ValueError, "stride must be <= "),
        (dict(stride=(1, 2, 3)), ValueError, "stride must be an int or a pair"),
        (dict(dilation=0), ValueError, "dilation must be >= 1"),
        (dict(padding=-1), ValueError, "padding must be >= 0"),
        (dict(padding="full"), ValueError, "padding must be 'valid', 'same'"),
        (dict(padding=2**40), ValueError, "padding must be <= "),
        (dict(padding=((1, 2), (3,))), ValueError, "padding"),
        (dict(dilation=5), ValueError, "conv2d output would be"),
    ],
)
def test_conv_parameters(kwargs, exc, match):
    with raises(exc, match):
        F.conv2d(X, W, **kwargs)


def test_kernel_larger_than_input():
    with raises(ValueError, r"kernel 9x9 .* does not fit in the padded input 8x8"):
        F.conv2d(X, np.ones((1, 3, 9, 9), np.float32))


def test_backward_flags_must_be_bool():
    with raises(TypeError, "need_input_grad must be True or False"):
        F.conv2d_backward(DY, X, W, need_input_grad="yes")


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((0,), {}, ValueError, "kernel_size must be >= 1"),
        ((2.0,), {}, TypeError, "kernel_size must be an int"),
        ((2,), dict(stride=0), ValueError, "stride must be >= 1"),
        ((2,), dict(padding=2), ValueError, "padding must be at most half the kernel size"),
        ((9,), {}, ValueError, "max_pool2d output would be"),
        ((2,), dict(ceil_mode=1), TypeError, "ceil_mode must be a bool"),
        ((2,), dict(return_indices="no"), TypeError, "return_indices must be True or False"),
    ],
)
def test_pool_parameters(args, kwargs, exc, match):
    with raises(exc, match):
        F.max_pool2d(X, *args, **kwargs)


def test_pool_backward_bad_indices():
    y, idx = F.max_pool2d(X, 2, return_indices=True)
    with raises(TypeError, "indices must be int64"):
        F.max_pool2d_backward(y, idx.astype(np.int32), X.shape)
    with raises(ValueError, "indices must have the shape of dy"):
        F.max_pool2d_backward(y, idx[:, :, :1], X.shape)
    for bad in (-1, 64, 2**40):
        broken = idx.copy()
        broken[1, 2, 3, 0] = bad
        with raises(ValueError, f"= {bad} is outside the input plane of 8x8"):
            F.max_pool2d_backward(y, broken, X.shape)
    with raises(ValueError, "input_shape must be"):
        F.max_pool2d_backward(y, idx, (2, 3, 8))
    with raises(ValueError, "input_shape must be"):
        F.max_pool2d_backward(y, idx, (1, 3, 8, 8))


def test_relu_bad_out():
    x = np.ones((3, 4), np.float32)
    with raises(ValueError, "out is read-only"):
        ro = np.zeros((3, 4), np.float32)
        ro.flags.writeable = False
        F.relu(x, out=ro)
    with raises(ValueError, "out must be a float32 array of shape"):
        F.relu(x, out=np.zeros((4, 3), np.float32))
    with raises(ValueError, "dy must have the shape of x"):
        F.relu_backward(np.ones(3, np.float32), x)


def test_core_checks_its_own_arguments():
    # _core is private, but it must be safe on its own: no crash on inconsistent arguments.
    with raises(ValueError, "padding must be >= 0"):
        _core.conv2d_fwd(X, W, None, (1, 1), (-1, 0, 0, 0), (1, 1))
    with raises(ValueError, "stride must be >= 1"):
        _core.conv2d_fwd(X, W, None, (0, 1), (0, 0, 0, 0), (1, 1))
    with raises(ValueError, "x must be C-contiguous"):
        _core.conv2d_fwd(np.asfortranarray(X), W, None, (1, 1), (0, 0, 0, 0), (1, 1))
    with raises(ValueError, r"out must have shape \(2, 4, 6, 6\)"):
        _core.conv2d_fwd(X, W, None, (1, 1), (0, 0, 0, 0), (1, 1), out=np.zeros((2, 4, 6, 5), np.float32))
    ro = np.zeros((2, 4, 6, 6), np.float32)
    ro.flags.writeable = False
    with raises(ValueError, "out is read-only"):
        _core.conv2d_fwd(X, W, None, (1, 1), (0, 0, 0, 0), (1, 1), out=ro)
    with raises(ValueError, "last window would lie entirely in the padding"):
        _core.maxpool2d_fwd(X, (2, 2), (2, 2), (0, 0), (5, 4), False)
    with raises(ValueError, "too large"):
        _core.conv2d_fwd(X, W, None, (1, 1), (2**30, 2**30, 2**30, 2**30), (1, 1))


def test_threads_argument():
    with raises(ValueError, "n must be between 1 and 4096"):
        convforge.set_num_threads(0)
    with raises(TypeError, "n must be an int"):
        convforge.set_num_threads(2.0)


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: F.conv2d_backward_weights(np.zeros((0, 4, 3, 3), np.float32), np.zeros((0, 3, 5, 5), np.float32),
                                           (4, 3, 3, 3), out_w=_read_only((4, 3, 3, 3))), "out_w"),
        (lambda: F.conv2d_backward_weights(np.zeros((0, 4, 3, 3), np.float32), np.zeros((0, 3, 5, 5), np.float32),
                                           (4, 3, 3, 3), out_b=_read_only((4,))), "out_b"),
        (lambda: F.dense_backward_weights(np.zeros((0, 2), np.float32), np.zeros((0, 3), np.float32),
                                          out_w=_read_only((3, 2))), "out_w"),
        (lambda: F.batch_norm(np.zeros((0, 3), np.float32), out_var=_read_only((3,))), "out_var"),
        (lambda: F.batch_norm_backward(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32),
                                       np.zeros(3, np.float32), np.ones(3, np.float32), out_gamma=_read_only((3,))),
         "out_gamma"),
        (lambda: F.depthwise_conv2d_backward(np.zeros((0, 3, 3, 3), np.float32), np.zeros((0, 3, 5, 5), np.float32),
                                             np.zeros((3, 1, 3, 3), np.float32), out_w=_read_only((3, 1, 3, 3))),
         "out_w"),
    ],
)
def test_read_only_out_of_an_empty_batch_is_named(call, name):
    # An empty batch's results are zeros (or NaN statistics) written by NumPy: a read-only buffer
    # gave NumPy's "assignment destination is read-only", which names no argument.
    with pytest.raises(ValueError, match=f"^{name} is read-only$"):
        call()


@pytest.mark.parametrize("n", [0, 2])
def test_max_pool2d_backward_gate_of_another_shape_is_refused_on_any_batch(n):
    # An empty batch returned zeros before the bindings could compare gate with input_shape.
    dy = np.ones((n, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"gate must have the input's shape \(%d, 3, 5, 5\), got \(%d, 3, 4, 4\)" % (n, n)):
        F.max_pool2d_backward(dy, np.zeros(dy.shape, np.int64), (n, 3, 5, 5), gate=np.ones((n, 3, 4, 4), np.float32))
