"""The first-order rounding-error bound of Winograd F(4x4, 3x3) (csrc/kernels/conv2d/conv2d_winograd.h).

Shared by tests/test_winograd.py and the forced-algorithm tests of tests/test_conv2d.py: the
Winograd computation repeated on absolute values (|A^T|, |G|, |B^T|, |x|, |w|) bounds each
output's rounding error once multiplied by the roundings along the longest path. It replaces
the direct form's bound (sum of |terms|) for this algorithm only; it is not a global tolerance.
"""

from __future__ import annotations

import numpy as np

NAME = "winograd_f4x3"

BT = np.array(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G = np.array(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64)


def transformed_patches(x, pads, ty, tx):
    """|B^T| |d| |B| for every 6x6 patch d of |x| under a ty x tx grid of 4x4 output tiles, in
    float64: (n, c, ty, tx, 6, 6); x padded by pads (top, bottom, left, right; negative: a crop)
    and with zeros past its edge."""
    n, c, h, wd = x.shape
    frame = np.zeros((n, c, 4 * ty + 2, 4 * tx + 2))
    top, left = pads[0], pads[2]
    # frame[a, b] = |x[a - top, b - left]| where that lies inside x
    a0, a1 = max(top, 0), min(frame.shape[2], h + top)
    b0, b1 = max(left, 0), min(frame.shape[3], wd + left)
    if a1 > a0 and b1 > b0:
        frame[:, :, a0:a1, b0:b1] = np.abs(x[:, :, a0 - top:a1 - top, b0 - left:b1 - left])
    patches = np.lib.stride_tricks.sliding_window_view(frame, (6, 6), axis=(2, 3))[:, :, ::4, ::4]
    return np.einsum("au,bv,ncyxuv->ncyxab", np.abs(BT), np.abs(BT), patches)


def winograd_magnitude(x, w, pads, out_hw):
    """|A^T| [sum_c (|G||w||G^T|) (.) (|B^T||x||B|)] |A| per output: the Winograd forward on
    absolute values, in float64, for a 3x3 kernel at unit stride with paddings
    (top, bottom, left, right) (negative: a crop) and output size out_hw."""
    n = x.shape[0]
    oh, ow = out_hw
    ty, tx = -(-oh // 4), -(-ow // 4)
    v = transformed_patches(x, pads, ty, tx)
    u = np.einsum("ar,bq,kcrq->kcab", np.abs(G), np.abs(G), np.abs(w))
    m = np.einsum("ncyxab,kcab->nkyxab", v, u)
    y = np.einsum("ia,jb,nkyxab->nkyixj", np.abs(AT), np.abs(AT), m).reshape(n, -1, 4 * ty, 4 * tx)
    return y[:, :, :oh, :ow]


def forward_magnitude(x, w, b, pads, out_hw):
    mag = winograd_magnitude(x, w, pads, out_hw)
    return mag if b is None else mag + np.abs(b)[None, :, None, None]


def backward_data_magnitude(dy, w, pads, x_hw):
    """dx is the forward Winograd over dy with the kernel flipped and transposed, paddings 2 - p."""
    return winograd_magnitude(dy, w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], [2 - p for p in pads], x_hw)


def weight_grad_magnitude(x, dy, pads):
    """|G^T| [sum over images and tiles (|A||dY_t||A^T|) (.) (|B^T||d_t||B|)] |G| per weight: the
    Winograd weight gradient (csrc/kernels/conv2d/conv2d_winograd_weights.h) on absolute values,
    in float64, for a 3x3 kernel at unit stride with paddings (top, bottom, left, right)."""
    n = x.shape[0]
    k, oh, ow = dy.shape[1:]
    ty, tx = -(-oh // 4), -(-ow // 4)
    v = transformed_patches(x, pads, ty, tx)
    grad = np.zeros((n, k, 4 * ty, 4 * tx))
    grad[:, :, :oh, :ow] = np.abs(dy)
    blocks = grad.reshape(n, k, ty, 4, tx, 4).transpose(0, 1, 2, 4, 3, 5)
    q = np.einsum("ia,jb,nkyxij->nkyxab", np.abs(AT), np.abs(AT), blocks)
    m = np.einsum("nkyxab,ncyxab->kcab", q, v)
    return np.einsum("ar,bq,kcab->kcrq", np.abs(G), np.abs(G), m)


def assert_within_winograd_bound(got, want, magnitude, channels, dtype):
    """|got - want| <= (channels + 25) * eps * magnitude: the channel sum and the transforms'
    roundings (at most 3 per 1-D input or output pass, 3 per weight pass, the product, the
    bias), with a factor 2 to spare (eps is twice the unit roundoff). For the weight gradient
    `channels` is the number of tiles summed (all the batch's), and its transforms' roundings
    (2 x 3 input, 2 x 3 output-gradient, the product, 2 x 6 for G^T M G, 16 chunk sums) fit
    within the same spare."""
    assert got.dtype == dtype and got.shape == want.shape
    assert np.all(np.isfinite(got)), "non-finite output (an element was skipped or overflowed)"
    bound = (channels + 25) * np.finfo(dtype).eps * magnitude + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"
