"""im2col versions: the strong NumPy baseline the benchmarks compare against.

im2col ("image to columns") lays every receptive field out as one row of a
matrix, so that a whole convolution becomes a single matrix product::

    cols  : (N*OH*OW, C*R*S)   one row per output pixel
    w_mat : (K, C*R*S)         one row per filter
    y     = cols @ w_mat.T     (N*OH*OW, K)  -> reshaped to (N, K, OH, OW)

The receptive fields are taken as a strided *view* of the padded input
(``sliding_window_view``); the only copy is the reshape into ``cols``, which
is exactly the memory cost im2col is known for.

Unlike :mod:`.direct`, these functions keep the floating dtype they are given
(float32 in, float32 out), since they are timed against float32 kernels.
Integer inputs are computed in float64.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._params import conv_params, pool_params
from .direct import _check_4d, _check_conv_inputs, _check_dy, _check_pool_backward, _tap

__all__ = [
    "conv2d_im2col",
    "conv2d_backward_im2col",
    "max_pool2d_im2col",
    "max_pool2d_backward_im2col",
]


def _float_dtype(*arrays) -> np.dtype:
    """The common dtype of the arguments, or float64 if that is not floating."""
    dtype = np.result_type(*arrays)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _float_array(a, dtype=None) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(_float_dtype(a) if dtype is None else dtype, copy=False)


def _windows(xp: np.ndarray, kernel_hw, stride, dilation, out_hw) -> np.ndarray:
    """Receptive fields of a padded NCHW input as a view, (N, C, OH, OW, R, S).

    ``sliding_window_view`` has no stride or dilation: take every window of
    the dilated span, then keep every stride-th window and every
    dilation-th tap.
    """
    (r, s), (sh, sw), (dh, dw), (oh, ow) = kernel_hw, stride, dilation, out_hw
    span = (dh * (r - 1) + 1, dw * (s - 1) + 1)
    win = sliding_window_view(xp, span, axis=(2, 3))
    return win[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw, ::dh, ::dw]


def _cols(x, kernel_hw, stride, pads, dilation, out_hw, pad_value=0) -> np.ndarray:
    """The im2col matrix view, (N, OH, OW, C, R, S), over x padded with pad_value."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    return _windows(xp, kernel_hw, stride, dilation, out_hw).transpose(0, 2, 3, 1, 4, 5)


def conv2d_im2col(x, w, b=None, stride=1, padding=0, dilation=1) -> np.ndarray:
    """2-D cross-correlation as one matrix product; same API as ``reference.conv2d``.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
    w : array_like, shape (K, C, R, S)
    b : array_like, shape (K,), or None
    stride, padding, dilation
        As for ``reference.conv2d``.

    Returns
    -------
    y : ndarray, shape (N, K, OH, OW), C-contiguous, in the common floating dtype
        of x and w (float32 stays float32; integers give float64)
    """
    x, w = np.asarray(x), np.asarray(w)
    dtype = _float_dtype(x, w)
    x, w = _float_array(x, dtype), _float_array(w, dtype)
    _check_conv_inputs(x, w, b)
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    stride, pads, dilation, (oh, ow) = conv_params((h, wd), (r, s), stride, padding, dilation)

    cols = _cols(x, (r, s), stride, pads, dilation, (oh, ow)).reshape(n * oh * ow, c * r * s)
    y = cols @ w.reshape(k, c * r * s).T  # (N*OH*OW, K)
    if b is not None:
        y += _float_array(b, dtype)
    return np.ascontiguousarray(y.reshape(n, oh, ow, k).transpose(0, 3, 1, 2))


def conv2d_backward_im2col(
    dy, x, w, stride=1, padding=0, dilation=1, need_input_grad=True, need_bias_grad=True
):
    """Gradients of conv2d via im2col; same API as ``reference.conv2d_backward``.

    ``dw = dy_mat.T @ cols`` and ``dcols = dy_mat @ w_mat``, one matrix
    product each; col2im then adds every column of ``dcols`` back onto the
    input pixel it was copied from (one strided add per kernel offset).

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
    dw : ndarray, shape (K, C, R, S)
    db : ndarray, shape (K,), or None
    """
    dy, x, w = np.asarray(dy), np.asarray(x), np.asarray(w)
    dtype = _float_dtype(dy, x, w)
    dy, x, w = _float_array(dy, dtype), _float_array(x, dtype), _float_array(w, dtype)
    _check_conv_inputs(x, w, None)
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    stride, pads, dilation, (oh, ow) = conv_params((h, wd), (r, s), stride, padding, dilation)
    _check_dy(dy, (n, k, oh, ow))
    top, bottom, left, right = pads

    dy_mat = dy.transpose(0, 2, 3, 1).reshape(n * oh * ow, k)
    cols = _cols(x, (r, s), stride, pads, dilation, (oh, ow)).reshape(n * oh * ow, c * r * s)
    dw = (dy_mat.T @ cols).reshape(k, c, r, s)
    db = dy.sum(axis=(0, 2, 3)) if need_bias_grad else None
    if not need_input_grad:
        return None, dw, db

    dcols = (dy_mat @ w.reshape(k, c * r * s)).reshape(n, oh, ow, c, r, s)
    dxp = np.zeros((n, c, h + top + bottom, wd + left + right), dtype)
    (sh, sw), (dh, dw_) = stride, dilation
    for i in range(r):
        for j in range(s):
            dxp[:, :, _tap(i * dh, sh, oh), _tap(j * dw_, sw, ow)] += dcols[..., i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, top : top + h, left : left + wd], dw, db


def max_pool2d_im2col(x, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
    """Max pooling as a max/argmax over the window axis; same API as ``reference.max_pool2d``.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW), dtype of x (float64 for integer x)
    indices : ndarray, int64, shape (N, C, OH, OW)
        Only with ``return_indices``; same semantics as ``reference.max_pool2d``.
    """
    x = _float_array(x)
    _check_4d(x, "x", "(N, C, H, W)")
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = pool_params((h, wd), kernel_size, stride, padding, ceil_mode)

    # In ceil mode the last window may hang past the bottom/right padding, so
    # pad far enough for every window to be a full kh x kw view.
    bottom = max((oh - 1) * sh + kh - h - ph, 0)
    right = max((ow - 1) * sw + kw - wd - pw, 0)
    win = _cols(x, (kh, kw), (sh, sw), (ph, bottom, pw, right), (1, 1), (oh, ow), pad_value=-np.inf)
    win = win.reshape(n, oh, ow, c, kh * kw)

    # argmax returns the first maximum, and the first NaN if there is one:
    # exactly the tie and NaN rules required.
    arg = win.argmax(axis=-1)  # (N, OH, OW, C), position in the window
    best = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    y = np.ascontiguousarray(best.transpose(0, 3, 1, 2))
    if not return_indices:
        return y

    row0 = (np.arange(oh) * sh - ph)[None, :, None, None]
    col0 = (np.arange(ow) * sw - pw)[None, None, :, None]
    idx = (row0 + arg // kw) * wd + (col0 + arg % kw)
    # A window whose real elements are all -inf ties with its padding, and
    # argmax may have picked the padding; the rule is the first *real*
    # element, i.e. the top-left corner of the window clipped to the input.
    first_real = np.maximum(row0, 0) * wd + np.maximum(col0, 0)
    idx = np.where(best == -np.inf, first_real, idx)
    return y, np.ascontiguousarray(idx.transpose(0, 3, 1, 2), dtype=np.int64)


def max_pool2d_backward_im2col(dy, indices, input_shape) -> np.ndarray:
    """Gradient of max pooling by one scatter-add; same API as ``reference.max_pool2d_backward``.

    Returns
    -------
    dx : ndarray, shape input_shape, dtype of dy (float64 for integer dy)
    """
    dy = _float_array(dy)
    indices = np.asarray(indices)
    n, c, h, wd = _check_pool_backward(dy, indices, input_shape)

    # Offsetting each plane's indices by plane * H*W turns the per-plane
    # scatter into one flat bincount, which sums repeated indices.
    planes = np.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (h * wd)
    flat = (indices.astype(np.int64, copy=False) + planes).ravel()
    dx = np.bincount(flat, weights=dy.ravel(), minlength=n * c * h * wd)
    return dx.astype(dy.dtype, copy=False).reshape(n, c, h, wd)
