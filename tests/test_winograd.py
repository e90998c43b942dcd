"""Winograd F(4x4, 3x3) conv2d (the 'winograd_f4x3' algorithm of the forward, backward-data and,
on AVX-512, weight-gradient lists; csrc/kernels/conv2d/conv2d_winograd.h and
conv2d_winograd_weights.h) against the float64 oracle, on every ISA, with the transform's own
elementwise error bound (tests/winograd_bound.py)."""

from __future__ import annotations

import numpy as np
import pytest
from winograd_bound import (
    NAME,
    assert_within_winograd_bound,
    backward_data_magnitude,
    forward_magnitude,
    weight_grad_magnitude,
)

import convforge
from convforge import _core, _params
from convforge import functional as F
from convforge import reference as R

# (N, C, H, W, K, padding): channels at the SIMD edges (1, 15, 16, 17, 33), H and W not
# multiples of the 4x4 tile, paddings 0, 1, 2, batch 1 and 3, tile blocks across images,
# rows of more tiles than a vector holds, blocks that split a row of tiles.
CASES = [
    (1, 1, 5, 5, 1, 1),
    (3, 15, 9, 7, 17, 0),
    (1, 16, 11, 13, 16, 2),
    (3, 17, 6, 10, 33, 1),
    (1, 33, 13, 9, 15, 2),
    (3, 16, 3, 3, 2, 0),
    (3, 4, 30, 21, 16, 1),
    (2, 3, 7, 70, 5, 2),  # 18 tiles per row: padding rows and gathers wider than one vector of tiles
    (30, 2, 10, 10, 3, 1),  # 270 tiles, 3 per row: blocks of 256 split rows, runs of 1-3 tiles paired
    # AVX-512's channel-vector form (channels in whole vectors of 16):
    (2, 16, 28, 28, 32, 1),  # items of whole rows of tiles, 7 tiles a row
    (5, 32, 7, 9, 16, 0),  # 2 x 3 tiles per image, items across images, 5 x 7 outputs of 8 x 12
    (3, 48, 14, 13, 80, 2),  # 3 channel blocks, filters in calls of 4 + 1 vectors, last tile 1 column wide
    (9, 16, 30, 3, 16, 1),  # one tile a row, a 1-column frame row of image
    (1, 128, 6, 5, 128, 1),  # 128 channels both sides: the tile form on AVX-512 too
]


def case_id(case):
    n, c, h, w, k, p = case
    return f"mb{n}ic{c}ih{h}iw{w}oc{k}p{p}"


def draw(case, dtype, rng):
    n, c, h, w, k, p = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    return x, wt, b, p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_within_transform_bound(case, dtype, isa, rng):
    x, w, b, p = draw(case, dtype, rng)
    want = R.conv2d(x, w, b, padding=p)
    stride, pads, dilation, out_hw = _params.conv_params(x.shape[2:], (3, 3), 1, p, 1)
    magnitude = forward_magnitude(x, w, b, pads, out_hw)
    out = np.full((x.shape[0], w.shape[0], *out_hw), np.nan, dtype)
    got = _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out, algorithm=NAME)
    assert got is out
    assert_within_winograd_bound(got, want, magnitude, x.shape[1], dtype)
    relu = _core.conv2d_fwd(x, w, b, stride, pads, dilation, relu=True, algorithm=NAME)
    np.testing.assert_array_equal(relu, np.maximum(got, 0))


def test_padding_rows_are_zero_over_a_whole_run_of_tiles(isa, rng):
    # A padding row under a run of 18 tiles (more than one vector of tiles) is transformed as
    # zeros in every lane. The scratch holds the previous call's values: with asymmetric
    # paddings the same layout serves a call without a top padding row, then one with it.
    x = rng.standard_normal((1, 2, 9, 70)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    for pads in ((0, 0, 2, 2), (2, 0, 2, 2), (0, 0, 2, 2), (2, 0, 2, 2)):  # top, bottom, left, right
        x_pad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
        want = R.conv2d(x_pad, w.astype(np.float64))
        out_hw = want.shape[2:]
        magnitude = forward_magnitude(x, w, None, pads, out_hw)
        got = _core.conv2d_fwd(x, w, None, (1, 1), pads, (1, 1), algorithm=NAME)
        assert_within_winograd_bound(got, want, magnitude, x.shape[1], np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward_data_within_transform_bound(case, dtype, isa, rng):
    x, w, _, p = draw(case, dtype, rng)
    stride, pads, dilation, out_hw = _params.conv_params(x.shape[2:], (3, 3), 1, p, 1)
    dy = rng.standard_normal((x.shape[0], w.shape[0], *out_hw)).astype(dtype)
    want = R.conv2d_backward(dy, x, w, padding=p)[0]
    magnitude = backward_data_magnitude(dy, w, pads, x.shape[2:])
    out = np.full(x.shape, np.nan, dtype)
    got = _core.conv2d_bwd_data(dy, w, x.shape, stride, pads, dilation, out=out, algorithm=NAME)
    assert_within_winograd_bound(got, want, magnitude, w.shape[0], dtype)


# The weight gradient's cases (channels in whole vectors of 16): tiles across block and chunk
# boundaries (a block is at most 96 tiles of one image, chunks of whole images), outputs not
# multiples of 4, paddings 0-2, one tile a row, 3 channel vectors against 5 filter vectors.
WEIGHT_CASES = [
    (2, 16, 28, 28, 32, 1),
    (5, 32, 7, 9, 16, 0),
    (3, 48, 14, 13, 80, 2),
    (9, 16, 30, 3, 16, 1),
    (20, 16, 12, 12, 16, 1),  # 20 images: 16 chunks of 1-2 images
    (1, 16, 60, 60, 16, 1),  # 225 tiles of one image: three blocks
]


@pytest.mark.parametrize("case", WEIGHT_CASES, ids=case_id)
def test_weight_gradient_within_transform_bound(case, rng, threads):
    x, w, _, p = draw(case, np.float32, rng)
    stride, pads, dilation, out_hw = _params.conv_params(x.shape[2:], (3, 3), 1, p, 1)
    dy = rng.standard_normal((x.shape[0], w.shape[0], *out_hw)).astype(np.float32)
    out_w, out_b = np.full(w.shape, np.nan, np.float32), np.full(w.shape[0], np.nan, np.float32)
    args = (dy, x, w.shape, stride, pads, dilation, True)
    if convforge.build_info()["isa"] != "avx512":  # the channel-vector form only
        with pytest.raises(ValueError, match=f"no algorithm '{NAME}'"):
            _core.conv2d_bwd_weights(*args, out_w=out_w, out_b=out_b, algorithm=NAME)
        return
    _, want_w, want_b = R.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=p)
    tiles = x.shape[0] * -(-out_hw[0] // 4) * -(-out_hw[1] // 4)
    results = []
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        got_w, got_b = _core.conv2d_bwd_weights(*args, out_w=out_w, out_b=out_b, algorithm=NAME)
        results.append((got_w.copy(), got_b.copy()))
    for got_w, got_b in results:  # the same bits on 1, 2 and 3 threads
        np.testing.assert_array_equal(got_w, results[0][0])
        np.testing.assert_array_equal(got_b, results[0][1])
    assert_within_winograd_bound(results[0][0], want_w, weight_grad_magnitude(x, dy, pads), tiles, np.float32)
    bias_bound = dy.size * np.finfo(np.float32).eps * np.abs(dy).sum(axis=(0, 2, 3))
    assert np.all(np.abs(results[0][1] - want_b) <= bias_bound)


def test_default_choice_and_forcing_the_direct_forms(isa, rng):
    # The heuristic takes Winograd for float32 layers with enough tiles in the batch that are
    # mostly output; not for float64 (gradient checks), thin layers, small batches or strides;
    # forcing another still works. The tile-vectorised transforms (AVX2, portable; and
    # AVX-512 for channels that are not whole vectors, or 128 and more both sides) need 256
    # tiles, or 128 from 64 channels, and 90% output from 16 channels, 70% from 32; the
    # channel-vector form (AVX-512, channels in whole vectors of 16) 128 tiles and 70% output
    # from 16 channels.
    def first(x_shape, w_shape, **kw):
        return F.conv2d_algorithms(x_shape, w_shape, **kw)["fwd"][0] == NAME

    channel_form = isa == "avx512"
    algos = F.conv2d_algorithms((2, 32, 12, 12), (32, 32, 3, 3), padding=1)
    assert algos["fwd"][0] != NAME and algos["bwd_data"][0] != NAME  # 18 tiles
    algos = F.conv2d_algorithms((29, 32, 12, 12), (32, 32, 3, 3), padding=1)  # 261 tiles
    assert algos["fwd"][0] == NAME and algos["bwd_data"][0] == NAME
    assert first((28, 32, 12, 12), (32, 32, 3, 3), padding=1) == channel_form  # 252 tiles
    assert first((15, 32, 12, 12), (32, 32, 3, 3), padding=1) == channel_form  # 135 tiles
    assert not first((14, 32, 12, 12), (32, 32, 3, 3), padding=1)  # 126 tiles
    assert not first((29, 32, 12, 12), (32, 32, 3, 3), padding=1, dtype=np.float64)
    assert first((32, 16, 28, 28), (16, 16, 3, 3), padding=1)  # all output
    assert first((128, 16, 14, 14), (16, 16, 3, 3), padding=1) == channel_form  # 77%, 16 channels
    assert first((128, 32, 14, 14), (32, 32, 3, 3), padding=1)  # 77%, 32 channels
    assert not first((128, 32, 10, 10), (32, 32, 3, 3), padding=1)  # 10x10 of 12x12: 69%
    assert not first((32, 15, 28, 28), (15, 15, 3, 3), padding=1)  # 15 channels
    assert not first((128, 24, 14, 14), (24, 24, 3, 3), padding=1)  # 77%, 24 channels: the tiles form's rule
    assert first((32, 64, 7, 7), (64, 64, 3, 3), padding=1)  # 128 tiles
    assert not first((31, 64, 7, 7), (64, 64, 3, 3), padding=1)
    assert not first((1, 128, 7, 7), (128, 128, 3, 3), padding=1)  # batch 1
    assert first((8, 48, 14, 14), (48, 48, 3, 3), padding=1) == channel_form  # 128 tiles, 48 channels
    assert first((8, 128, 14, 14), (128, 128, 3, 3), padding=1)  # the tile form (128 both sides), 128 tiles
    assert not first((64, 32, 12, 12), (32, 32, 3, 3), stride=2, padding=1)
    x, w, b, p = draw((29, 32, 12, 12, 32, 1), np.float32, rng)
    default = F.conv2d(x, w, b, padding=p)
    with F.force_conv2d_algorithm(fwd="implicit_gemm"):
        direct = F.conv2d(x, w, b, padding=p)
    with F.force_conv2d_algorithm(fwd=NAME):
        np.testing.assert_array_equal(F.conv2d(x, w, b, padding=p), default)
    assert not np.array_equal(default, direct)  # different roundings: the forcing reached the kernels
    np.testing.assert_allclose(default, direct, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("filters", [40, 48], ids=["tiles_form", "channel_form"])
def test_same_bits_for_1_2_3_threads(filters, rng, threads):
    # 48 filters: AVX-512's channel-vector form, whose items follow the thread count.
    x, w, b, p = draw((6, 32, 23, 29, filters, 1), np.float32, rng)  # 288 tiles: Winograd's by default
    dy = rng.standard_normal((6, filters, 23, 29)).astype(np.float32)
    assert F.conv2d_algorithms(x.shape, w.shape, padding=p)["fwd"][0] == NAME
    results = []
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        results.append((F.conv2d(x, w, b, padding=p), F.conv2d_backward(dy, x, w, padding=p)[0]))
    for y, dx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", ["data", "weights"])
def test_non_finite_values_get_the_next_algorithms_result(bad, where, rng):
    # A non-finite value would spread over whole 4x4 tiles through the transforms; Winograd
    # hands such problems to the next algorithm of its list, element for element.
    x, w, b, p = draw((29, 32, 12, 12, 32, 1), np.float32, rng)  # 261 tiles: Winograd's by default
    dy = rng.standard_normal((29, 32, 12, 12)).astype(np.float32)
    if where == "data":
        x[1, 3, 4, 5] = bad
        dy[0, 2, 7, 1] = bad
    else:
        w[3, 2, 1, 0] = bad
    with F.force_conv2d_algorithm(fwd=NAME, bwd_data=NAME):
        got = F.conv2d(x, w, b, padding=p), F.conv2d_backward(dy, x, w, padding=p)[0]
    want = []
    for pass_, run in (("fwd", lambda: F.conv2d(x, w, b, padding=p)),
                       ("bwd_data", lambda: F.conv2d_backward(dy, x, w, padding=p)[0])):
        # The next algorithm of the list that applies to these values (forcing one that does
        # not raises ValueError; the last one applies to everything). Winograd pays here, so
        # it heads the list and the others follow in the list's order.
        algos = F.conv2d_algorithms(x.shape, w.shape, padding=p)[pass_]
        assert algos[0] == NAME
        for name in algos[1:]:
            try:
                with F.force_conv2d_algorithm(**{pass_: name}):
                    want.append(run())
                break
            except ValueError:
                continue
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("bad", [np.inf, np.nan, "overflow"])
@pytest.mark.parametrize("where", ["x", "dy"])
def test_weight_gradient_non_finite_gets_the_next_algorithms_result(bad, where, rng):
    # An inf or NaN in x or dy, or a finite value whose transforms overflow (5e37 in x times
    # B^T's 5 x 5, 1e37 in dy times A's 8 x 8) while the exact gradient stays finite, spread
    # through the transforms to terms the direct forms do not have: Winograd's weight gradient
    # hands the problem to the next algorithm of the list, whose bits come back.
    x, w, _, p = draw((16, 16, 12, 12, 32, 1), np.float32, rng)  # 144 tiles: Winograd's by default
    dy = rng.standard_normal((16, 32, 12, 12)).astype(np.float32)
    value = (5e37 if where == "x" else 1e37) if bad == "overflow" else bad
    (x if where == "x" else dy)[2, 5, 3, 4] = value
    algos = F.conv2d_algorithms(x.shape, w.shape, padding=p)["bwd_weights"]
    if convforge.build_info()["isa"] != "avx512":
        assert NAME not in algos
        return
    assert algos[0] == NAME
    with F.force_conv2d_algorithm(bwd_weights=NAME):
        got = F.conv2d_backward(dy, x, w, padding=p)[1:]
    with F.force_conv2d_algorithm(bwd_weights=algos[1]):
        want = F.conv2d_backward(dy, x, w, padding=p)[1:]
    # The case reaches the fallback: the exact gradient is non-finite, or finite where the
    # transforms overflowed.
    assert np.all(np.isfinite(want[0])) == (bad == "overflow")
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("pass_", ["fwd", "bwd_data"])
@pytest.mark.parametrize("axis", ["rows", "columns"])
def test_an_overflow_inside_the_output_transform_gets_the_next_algorithms_result(pass_, axis, isa):
    # Finite data whose exact output is finite (-3e38) but whose output transform overflows on
    # the way: a 6-vector of the transform domain m = (0, -2Y, -2Y, Y/2, Y/2, 0), Y = 1e38,
    # gives (m1 + m2) = -4Y = -inf in float32 where the exact sum m0 + ... + m4 is -3Y. With
    # the kernel tap and the input along a row the overflow falls in the second (row) pass of
    # the output transform, along a column in the first: each pass's own non-finite check must
    # send the problem on (dropping the AVX-512 row form's check returned -inf here).
    x_or_dy = np.zeros((1, 1, 6, 6), np.float32)
    w = np.zeros((1, 1, 3, 3), np.float32)
    x_or_dy[0, 0, 0, 2] = -3e19
    if pass_ == "fwd":
        w[0, 0, 0, 2] = 1e19
    else:  # dx of a padding-2 convolution is the forward over dy with the kernel flipped
        w[0, 0, 2, 0] = 1e19
    if axis == "columns":
        x_or_dy, w = x_or_dy.transpose(0, 1, 3, 2).copy(), w.transpose(0, 1, 3, 2).copy()

    def run(algorithm):
        with F.force_conv2d_algorithm(**{pass_: algorithm}):
            if pass_ == "fwd":
                return F.conv2d(x_or_dy, w)
            return F.conv2d_backward_data(x_or_dy, w, (1, 1, 4, 4), padding=2)

    want = run("im2col_gemm" if pass_ == "fwd" else "col2im_gemm")
    assert np.isfinite(want).all() and want.min() < -2.9e38
    np.testing.assert_array_equal(run(NAME), want)
