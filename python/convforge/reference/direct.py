"""Direct float64 reference implementations: the oracles the kernels are tested against.

Conventions (PyTorch's): activations are NCHW, weights are OIHW, and
"convolution" is cross-correlation (the kernel is not flipped)::

    y[n, k, i, j] = b[k] + sum_{c, r, s} w[k, c, r, s]
                           * xpad[n, c, i * sh + r * dh, j * sw + s * dw]

Each function loops over the kernel offsets ``(r, s)`` only; the work for one
offset is a single NumPy expression over the whole batch, every channel and
every output pixel. That keeps the code a line-by-line transcription of the
formula above while still running in milliseconds on LeNet-sized tensors.

Everything is computed in float64 and returned as float64, whatever came in.
"""

from __future__ import annotations

import numpy as np

from .._params import conv_params, pool_params

__all__ = [
    "conv2d",
    "conv2d_backward",
    "dense",
    "dense_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
]


# ---------------------------------------------------------------------------
# Shape checks, shared with the im2col versions.
# ---------------------------------------------------------------------------


def _check_4d(a: np.ndarray, name: str, layout: str) -> None:
    if a.ndim != 4:
        raise ValueError(f"{name} must have 4 dimensions {layout}, got shape {a.shape}")


def _check_conv_inputs(x: np.ndarray, w: np.ndarray, b) -> None:
    _check_4d(x, "x", "(N, C, H, W)")
    _check_4d(w, "w", "(K, C, R, S)")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but w expects {w.shape[1]}")
    if w.shape[2] < 1 or w.shape[3] < 1:
        raise ValueError(f"w must have a kernel of at least 1x1, got shape {w.shape}")
    if b is not None and np.shape(b) != (w.shape[0],):
        raise ValueError(f"b must have shape (K,) = ({w.shape[0]},), got shape {np.shape(b)}")


def _check_dy(dy: np.ndarray, expected: tuple) -> None:
    if dy.shape != tuple(expected):
        raise ValueError(f"dy must have shape {tuple(expected)} (the shape of the forward output), got {dy.shape}")


def _check_input_shape(input_shape) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"input_shape must be 4 non-negative sizes (N, C, H, W), got {tuple(input_shape)}")
    return shape


def _check_pool_backward(dy: np.ndarray, indices: np.ndarray, input_shape) -> tuple[int, int, int, int]:
    shape = _check_input_shape(input_shape)
    _check_4d(dy, "dy", "(N, C, OH, OW)")
    if indices.shape != dy.shape:
        raise ValueError(f"indices must have the shape of dy {dy.shape}, got {indices.shape}")
    if dy.shape[:2] != shape[:2]:
        raise ValueError(f"dy has (N, C) = {dy.shape[:2]} but input_shape has (N, C) = {shape[:2]}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
    plane = shape[2] * shape[3]
    if indices.size and (indices.min() < 0 or indices.max() >= plane):
        raise ValueError(
            f"indices must lie in [0, H*W) = [0, {plane}) for input_shape {shape}, "
            f"got values in [{indices.min()}, {indices.max()}]"
        )
    return shape


def _tap(start: int, step: int, count: int) -> slice:
    """Rows (or columns) of the padded input that one kernel offset touches.

    Output position i reads padded row ``start + i * step`` for i in 0..count-1.
    """
    return slice(start, start + step * (count - 1) + 1, step)


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1) -> np.ndarray:
    """2-D cross-correlation, NCHW x OIHW -> NCHW, in float64.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
    w : array_like, shape (K, C, R, S)
    b : array_like, shape (K,), or None
    stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'
        Zero padding. 'same' follows TensorFlow: ``OH = ceil(H / stride)``,
        with the odd extra row/column at the bottom/right.

    Returns
    -------
    y : ndarray, float64, shape (N, K, OH, OW)
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check_conv_inputs(x, w, b)
    n, _, h, wd = x.shape
    k, _, r_size, s_size = w.shape
    (sh, sw), (top, bottom, left, right), (dh, dw), (oh, ow) = conv_params(
        (h, wd), (r_size, s_size), stride, padding, dilation
    )

    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    y = np.zeros((n, k, oh, ow))
    for r in range(r_size):
        for s in range(s_size):
            # The input pixel under weight w[:, :, r, s] for every output pixel.
            patch = xp[:, :, _tap(r * dh, sh, oh), _tap(s * dw, sw, ow)]  # (N, C, OH, OW)
            y += np.einsum("nchw,kc->nkhw", patch, w[:, :, r, s])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward(
    dy, x, w, stride=1, padding=0, dilation=1, need_input_grad=True, need_bias_grad=True
):
    """Gradients of :func:`conv2d` with respect to x, w and b, in float64.

    Parameters
    ----------
    dy : array_like, shape (N, K, OH, OW)
        Gradient of the loss with respect to the output y.
    x, w, stride, padding, dilation
        Exactly as given to :func:`conv2d`.
    need_input_grad, need_bias_grad : bool
        When False the corresponding gradient is not computed and None is
        returned in its place (the first layer of a network needs no dx).

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
    dw : ndarray, shape (K, C, R, S)
    db : ndarray, shape (K,), or None
    """
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check_conv_inputs(x, w, None)
    n, c, h, wd = x.shape
    k, _, r_size, s_size = w.shape
    (sh, sw), (top, bottom, left, right), (dh, dw_), (oh, ow) = conv_params(
        (h, wd), (r_size, s_size), stride, padding, dilation
    )
    _check_dy(dy, (n, k, oh, ow))

    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    dxp = np.zeros_like(xp) if need_input_grad else None
    dw = np.zeros_like(w)
    for r in range(r_size):
        for s in range(s_size):
            rows, cols = _tap(r * dh, sh, oh), _tap(s * dw_, sw, ow)
            # y[n,k,i,j] gets w[k,c,r,s] * xp[n,c,rows[i],cols[j]]: the forward
            # product, differentiated once with respect to each factor.
            dw[:, :, r, s] = np.einsum("nkhw,nchw->kc", dy, xp[:, :, rows, cols])
            if need_input_grad:
                # Different offsets hit the same padded pixel, hence +=.
                dxp[:, :, rows, cols] += np.einsum("nkhw,kc->nchw", dy, w[:, :, r, s])

    # Gradient that lands on padding belongs to no input element: drop it.
    dx = dxp[:, :, top : top + h, left : left + wd] if need_input_grad else None
    db = dy.sum(axis=(0, 2, 3)) if need_bias_grad else None
    return dx, dw, db


# ---------------------------------------------------------------------------
# Dense (fully connected)
# ---------------------------------------------------------------------------


def _check_dense(x: np.ndarray, w: np.ndarray) -> None:
    if x.ndim != 2 or w.ndim != 2:
        raise ValueError(f"x must be (batch, in_features) and w (in_features, units); got {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[0]}")


def dense(x, w, b=None) -> np.ndarray:
    """y[n, u] = b[u] + sum_i x[n, i] * w[i, u]; w is Keras's (in_features, units)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check_dense(x, w)
    y = np.einsum("ni,iu->nu", x, w)
    if b is not None:
        y += np.asarray(b, dtype=np.float64)
    return y


def dense_backward(dy, x, w, need_input_grad=True, need_bias_grad=True):
    """(dx, dw, db) of :func:`dense`: dx = dy . w^T, dw = x^T . dy, db = sum of dy over the batch."""
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check_dense(x, w)
    if dy.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"dy must have shape {(x.shape[0], w.shape[1])}, got {dy.shape}")
    dx = np.einsum("nu,iu->ni", dy, w) if need_input_grad else None
    dw = np.einsum("ni,nu->iu", x, dy)
    db = dy.sum(axis=0) if need_bias_grad else None
    return dx, dw, db


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
    """2-D max pooling with PyTorch's semantics, in float64.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), default kernel_size
    padding : int or (int, int)
        Implicit -inf padding on every side; at most ``kernel_size // 2``.
    ceil_mode : bool
        Round the output size up, so that a last, partial window may hang
        over the bottom/right edge (PyTorch's rule).
    return_indices : bool
        Also return where each maximum came from.

    Returns
    -------
    y : ndarray, float64, shape (N, C, OH, OW)
    indices : ndarray, int64, shape (N, C, OH, OW)
        Only with ``return_indices``. ``h * W + w``, the flat position of the
        maximum in its input plane ``x[n, c]``. Windows are clipped to the
        input, so an index never points at padding. The first maximum in
        row-major window order wins ties; a NaN counts as the maximum, and
        the first NaN wins.
    """
    x = np.asarray(x, dtype=np.float64)
    _check_4d(x, "x", "(N, C, H, W)")
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = pool_params((h, wd), kernel_size, stride, padding, ceil_mode)

    best = np.full((n, c, oh, ow), -np.inf)
    best_index = np.full((n, c, oh, ow), -1, dtype=np.int64)
    for i in range(kh):
        # Input row read at window offset i by each output row; rows that fall
        # in the padding are clamped for the read and masked out below.
        rows = np.arange(oh) * sh - ph + i
        row_ok = (rows >= 0) & (rows < h)
        rows = rows.clip(0, h - 1)
        for j in range(kw):
            cols = np.arange(ow) * sw - pw + j
            col_ok = (cols >= 0) & (cols < wd)
            cols = cols.clip(0, wd - 1)

            candidate = x[:, :, rows[:, None], cols[None, :]]  # (N, C, OH, OW)
            inside = row_ok[:, None] & col_ok[None, :]  # (OH, OW)
            # Offsets are visited in row-major order, so taking a candidate
            # only when it is strictly better keeps the first maximum. The
            # first real element is always taken so that a window of -inf
            # still points at real input, and a NaN beats anything but an
            # earlier NaN.
            take = inside & (
                (best_index < 0) | (candidate > best) | (np.isnan(candidate) & ~np.isnan(best))
            )
            best = np.where(take, candidate, best)
            best_index = np.where(take, rows[:, None] * wd + cols[None, :], best_index)

    return (best, best_index) if return_indices else best


def max_pool2d_backward(dy, indices, input_shape) -> np.ndarray:
    """Gradient of :func:`max_pool2d` with respect to its input, in float64.

    Parameters
    ----------
    dy : array_like, shape (N, C, OH, OW)
    indices : array_like of int, shape (N, C, OH, OW)
        As returned by ``max_pool2d(..., return_indices=True)``.
    input_shape : (N, C, H, W)

    Returns
    -------
    dx : ndarray, float64, shape input_shape
        Each dy value added to the input element its window took the maximum
        from; overlapping windows that chose the same element accumulate.
    """
    dy = np.asarray(dy, dtype=np.float64)
    indices = np.asarray(indices)
    n, c, h, wd = _check_pool_backward(dy, indices, input_shape)

    planes, windows = n * c, dy.shape[2] * dy.shape[3]
    dx = np.zeros((planes, h * wd))
    plane_of = np.arange(planes)[:, None]
    # add.at, unlike dx[i] += v, accumulates repeated indices.
    np.add.at(dx, (plane_of, indices.reshape(planes, windows)), dy.reshape(planes, windows))
    return dx.reshape(n, c, h, wd)


# ---------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------


def relu(x, out=None) -> np.ndarray:
    """max(x, 0) elementwise, with NaN kept and -0.0 mapped to +0.0.

    Parameters
    ----------
    x : array_like, any shape
    out : ndarray, optional
        Same shape as x; the result is written into it and it is returned.
        May be x itself (in-place).

    Returns
    -------
    y : ndarray, float64 (or out), shape of x
    """
    x = np.asarray(x, dtype=np.float64)
    # np.maximum(-0.0, 0) may return either zero; this where always gives +0.0.
    y = np.where((x > 0) | np.isnan(x), x, 0.0)
    if out is None:
        return y
    if not isinstance(out, np.ndarray) or out.shape != x.shape:
        raise ValueError(f"out must be an ndarray of the shape of x {x.shape}, got {np.shape(out)}")
    out[...] = y
    return out


def relu_backward(dy, x) -> np.ndarray:
    """Gradient of :func:`relu`: dy where x > 0, else 0 (also at 0 and NaN).

    Parameters
    ----------
    dy : array_like, shape of x
    x : array_like
        The forward input (not the output).

    Returns
    -------
    dx : ndarray, float64, shape of x
    """
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {x.shape}, got {dy.shape}")
    return np.where(x > 0, dy, 0.0)
