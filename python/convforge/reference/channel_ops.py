"""float64 oracles of the per-channel ops: batch normalisation, global pooling, depthwise conv2d.

Same names and signatures as :mod:`convforge.functional`; NumPy formulas with
no attention to speed. Batch statistics are the mean and the biased
(population) variance over every axis but the channel axis 1, as Keras
computes them for ``BatchNormalization``.
"""

from __future__ import annotations

import numpy as np

from .direct import _check_input_shape, conv2d, conv2d_backward

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_inference",
    "depthwise_conv2d",
    "depthwise_conv2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
]


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _per_channel(v, x):
    """A (C,) vector shaped to broadcast over x (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _reduce_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def batch_norm(x, gamma=None, beta=None, eps=1e-3):
    """Training-mode batch normalisation: ``(y, mean, var)`` with the batch statistics."""
    x = _f64(x)
    mean = x.mean(axis=_reduce_axes(x))
    var = ((x - _per_channel(mean, x)) ** 2).mean(axis=_reduce_axes(x))
    return batch_norm_inference(x, mean, var, gamma, beta, eps), mean, var


def batch_norm_inference(x, mean, var, gamma=None, beta=None, eps=1e-3):
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` per channel."""
    x, mean, var = _f64(x), _f64(mean), _f64(var)
    y = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    if gamma is not None:
        y = y * _per_channel(_f64(gamma), x)
    if beta is not None:
        y = y + _per_channel(_f64(beta), x)
    return y


def batch_norm_backward(dy, x, mean, var, gamma=None, eps=1e-3, need_input_grad=True):
    """``(dx or None, dgamma, dbeta)`` of :func:`batch_norm` (the batch statistics depend on x)."""
    dy, x, mean, var = _f64(dy), _f64(x), _f64(mean), _f64(var)
    axes = _reduce_axes(x)
    count = x.size // x.shape[1]
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x)) * _per_channel(inv, x)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dx = None
    if need_input_grad:
        g = np.ones_like(mean) if gamma is None else _f64(gamma)
        dxhat = dy * _per_channel(g, x)
        # The textbook three-term form: through xhat directly, through the mean, through the variance.
        dx = _per_channel(inv, x) / count * (
            count * dxhat - _per_channel(dxhat.sum(axis=axes), x) - xhat * _per_channel((dxhat * xhat).sum(axis=axes), x)
        )
    return dx, dgamma, dbeta


def global_avg_pool2d(x):
    """``(N, C)`` means of each ``(H, W)`` plane of x ``(N, C, H, W)``."""
    return _f64(x).mean(axis=(2, 3))


def global_avg_pool2d_backward(dy, input_shape):
    n, c, h, w = _check_input_shape(input_shape)
    dy = _f64(dy)
    return np.broadcast_to((dy / (h * w))[:, :, None, None], (n, c, h, w)).copy()


def global_max_pool2d(x, return_indices=False):
    """``(N, C)`` maxima of each plane; the first maximum, and a NaN if the plane holds one."""
    x = _f64(x)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    nan = np.isnan(flat)
    idx = np.where(nan.any(axis=2), nan.argmax(axis=2), np.nanargmax(np.where(nan, -np.inf, flat), axis=2))
    y = np.take_along_axis(flat, idx[:, :, None], axis=2)[:, :, 0]
    return (y, idx.astype(np.int64)) if return_indices else y


def global_max_pool2d_backward(dy, indices, input_shape):
    n, c, h, w = _check_input_shape(input_shape)
    dx = np.zeros((n, c, h * w))
    np.put_along_axis(dx, np.asarray(indices)[:, :, None], _f64(dy)[:, :, None], axis=2)
    return dx.reshape(n, c, h, w)


def depthwise_conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """Each channel c of x convolved with its own filters ``w[c*M:(c+1)*M]`` (w: ``(C*M, 1, KH, KW)``)."""
    x, w = _f64(x), _f64(w)
    m = w.shape[0] // x.shape[1]
    y = np.concatenate(
        [conv2d(x[:, c : c + 1], w[c * m : (c + 1) * m], None, stride, padding, dilation) for c in range(x.shape[1])],
        axis=1,
    )
    return y if b is None else y + _f64(b)[None, :, None, None]


def depthwise_conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, need_input_grad=True, need_bias_grad=True):
    """``(dx or None, dw, db or None)`` of :func:`depthwise_conv2d`, one conv2d_backward per channel."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    m = w.shape[0] // x.shape[1]
    dxs, dws = [], []
    for c in range(x.shape[1]):
        dx_c, dw_c, _ = conv2d_backward(
            dy[:, c * m : (c + 1) * m], x[:, c : c + 1], w[c * m : (c + 1) * m], stride, padding, dilation,
            need_input_grad, False,
        )
        dxs.append(dx_c)
        dws.append(dw_c)
    dx = np.concatenate(dxs, axis=1) if need_input_grad else None
    db = dy.sum(axis=(0, 2, 3)) if need_bias_grad else None
    return dx, np.concatenate(dws, axis=0), db
