"""Winograd F(4x4, 3x3) conv2d (csrc/kernels/conv2d/conv2d_winograd.h) against the float64 oracle.

The tolerance is the transform's own first-order error bound, elementwise: the Winograd
computation repeated on absolute values (|A^T|, |G|, |B^T|, |x|, |w|) times the number of
roundings along the longest path, not the direct form's bound and not a global tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import _core, _params
from convforge import functional as F
from convforge import reference as R

BT = np.array(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G = np.array(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64)

# (N, C, H, W, K, padding): channels at the SIMD edges (1, 15, 16, 17, 33), H and W not
# multiples of the 4x4 tile, paddings 0, 1, 2, batch 1 and 3, tile blocks across images.
CASES = [
    (1, 1, 5, 5, 1, 1),
    (3, 15, 9, 7, 17, 0),
    (1, 16, 11, 13, 16, 2),
    (3, 17, 6, 10, 33, 1),
    (1, 33, 13, 9, 15, 2),
    (3, 16, 3, 3, 2, 0),
    (3, 4, 30, 21, 16, 1),
]


def case_id(case):
    n, c, h, w, k, p = case
    return f"mb{n}ic{c}ih{h}iw{w}oc{k}p{p}"


@pytest.fixture
def winograd():
    """Set the private Winograd switch for one test, then restore it."""
    previous = _core._conv2d_winograd()
    yield _core._set_conv2d_winograd
    _core._set_conv2d_winograd(previous)


def winograd_magnitude(x, w, pad):
    """|A^T| [sum_c (|G||w||G^T|) (.) (|B^T||x||B|)] |A| per output: the Winograd forward on
    absolute values, in float64, for a 3x3 kernel, unit stride and symmetric padding `pad`."""
    n, c, h, wd = x.shape
    oh, ow = h + 2 * pad - 2, wd + 2 * pad - 2
    ty, tx = -(-oh // 4), -(-ow // 4)
    frame = np.zeros((n, c, 4 * ty + 2, 4 * tx + 2))
    rows, cols = min(h, frame.shape[2] - pad), min(wd, frame.shape[3] - pad)
    frame[:, :, pad:pad + rows, pad:pad + cols] = np.abs(x[:, :, :rows, :cols])
    patches = np.lib.stride_tricks.sliding_window_view(frame, (6, 6), axis=(2, 3))[:, :, ::4, ::4]
    v = np.einsum("au,bv,ncyxuv->ncyxab", np.abs(BT), np.abs(BT), patches)
    u = np.einsum("ar,bq,kcrq->kcab", np.abs(G), np.abs(G), np.abs(w))
    m = np.einsum("ncyxab,kcab->nkyxab", v, u)
    y = np.einsum("ia,jb,nkyxab->nkyixj", np.abs(AT), np.abs(AT), m).reshape(n, -1, 4 * ty, 4 * tx)
    return y[:, :, :oh, :ow]


def assert_within_winograd_bound(got, want, magnitude, channels, dtype):
    """|got - want| <= (channels + 25) * eps * magnitude: the channel sum and the transforms'
    roundings (3 per 1-D input or output pass, 3 or 4 per weight pass, the product, the bias),
    with a factor 2 to spare (eps is twice the unit roundoff)."""
    assert got.dtype == dtype and got.shape == want.shape
    assert np.all(np.isfinite(got))
    bound = (channels + 25) * np.finfo(dtype).eps * magnitude + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


def draw(case, dtype, rng):
    n, c, h, w, k, p = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    return x, wt, b, p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_within_transform_bound(case, dtype, isa, rng, winograd):
    x, w, b, p = draw(case, dtype, rng)
    want = R.conv2d(x, w, b, padding=p)
    magnitude = winograd_magnitude(x, w, p) + np.abs(b)[None, :, None, None]
    stride, pads, dilation, out_hw = _params.conv_params(x.shape[2:], (3, 3), 1, p, 1)
    winograd("on")
    out = np.full((x.shape[0], w.shape[0], *out_hw), np.nan, dtype)
    got = _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out)
    assert got is out
    assert_within_winograd_bound(got, want, magnitude, x.shape[1], dtype)
    relu = _core.conv2d_fwd(x, w, b, stride, pads, dilation, relu=True)
    np.testing.assert_array_equal(relu, np.maximum(got, 0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward_data_within_transform_bound(case, dtype, isa, rng, winograd):
    x, w, _, p = draw(case, dtype, rng)
    stride, pads, dilation, out_hw = _params.conv_params(x.shape[2:], (3, 3), 1, p, 1)
    dy = rng.standard_normal((x.shape[0], w.shape[0], *out_hw)).astype(dtype)
    want = R.conv2d_backward(dy, x, w, padding=p)[0]
    # dx is the forward Winograd over dy with the kernel flipped and transposed, padding 2 - p.
    magnitude = winograd_magnitude(dy, w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], 2 - p)
    winograd("on")
    got = _core.conv2d_bwd_data(dy, w, x.shape, stride, pads, dilation, out=np.full(x.shape, np.nan, dtype))
    assert_within_winograd_bound(got, want, magnitude, w.shape[0], dtype)


def test_forced_on_and_off_take_different_paths(rng, winograd):
    # The switch must reach the kernels: Winograd rounds differently from the direct form.
    x, w, b, p = draw((2, 32, 12, 12, 32, 1), np.float32, rng)
    winograd("on")
    on = F.conv2d(x, w, b, padding=p)
    winograd("off")
    off = F.conv2d(x, w, b, padding=p)
    assert not np.array_equal(on, off)
    np.testing.assert_allclose(on, off, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_same_bits_for_1_2_3_threads(mode, rng, threads, winograd):
    x, w, b, p = draw((3, 24, 23, 29, 40, 1), np.float32, rng)
    dy = rng.standard_normal((3, 40, 23, 29)).astype(np.float32)
    winograd(mode)
    results = []
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        results.append((F.conv2d(x, w, b, padding=p), F.conv2d_backward(dy, x, w, padding=p)[0]))
    for y, dx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_values_fall_back_to_the_direct_form(bad, rng, winograd):
    # A non-finite input would spread over its whole 4x4 tile through the transforms; the
    # result must be the direct form's, NaN for NaN and inf for inf, element for element.
    x, w, b, p = draw((2, 16, 10, 10, 16, 1), np.float32, rng)
    x[1, 3, 4, 5] = bad
    dy = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    dy[0, 2, 7, 1] = bad
    winograd("off")
    want = F.conv2d(x, w, b, padding=p), F.conv2d_backward(dy, x, w, padding=p)[0]
    winograd("on")
    got = F.conv2d(x, w, b, padding=p), F.conv2d_backward(dy, x, w, padding=p)[0]
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


def test_switch_rejects_unknown_modes(winograd):
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'on', 'off', got 'yes'"):
        _core._set_conv2d_winograd("yes")
