"""Batch normalisation, global pooling and depthwise conv2d kernels against the float64 oracles
(convforge.reference.channel_ops) on every ISA path, SIMD-edge sizes, thread counts and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import functional as F
from convforge import reference as R

# Per-plane sizes around the vector widths (8 and 16 floats) and their multiples, and channel
# counts 1..33: every masked tail and unrolled body of the row primitives.
EDGE_SHAPES = [(2, 1, 1, 1), (3, 15, 1, 1), (2, 16, 4, 4), (2, 17, 1, 15), (1, 3, 1, 17), (2, 2, 3, 11),
               (4, 33, 2, 8), (2, 5, 1, 31), (1, 4, 8, 8), (3, 2, 7, 7), (2, 3, 4, 9)]
DENSE_SHAPES = [(4, 1), (7, 15), (3, 16), (5, 17), (2, 33)]


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def _close(got, want, dtype):
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tol(dtype))


# ------------------------------------------------------------------------------ batch norm


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", EDGE_SHAPES + DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_matches_oracle(shape, dtype, affine, isa, rng):
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
    if shape[0] * int(np.prod(shape[2:])) == 1:
        x[...] = 0.25  # a single value per channel: zero variance, y = beta exactly
    c = shape[1]
    gamma = rng.standard_normal(c).astype(dtype) if affine else None
    beta = rng.standard_normal(c).astype(dtype) if affine else None
    y, mean, var = F.batch_norm(x, gamma, beta, 1e-3)
    y_want, mean_want, var_want = R.batch_norm(x, gamma, beta, 1e-3)
    _close(mean, mean_want, dtype)
    _close(var, var_want, dtype)
    _close(y, y_want, dtype)

    y_inf = F.batch_norm_inference(x, mean, var, gamma, beta, 1e-3)
    _close(y_inf, R.batch_norm_inference(x, mean, var, gamma, beta, 1e-3), dtype)

    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = F.batch_norm_backward(dy, x, mean, var, gamma, 1e-3)
    dx_want, dgamma_want, dbeta_want = R.batch_norm_backward(dy, x, mean, var, gamma, 1e-3)
    _close(dbeta, dbeta_want, dtype)
    _close(dgamma, dgamma_want, dtype)
    # dx is a difference of terms of size |dy|; its error scales with them, not with dx.
    np.testing.assert_allclose(dx, dx_want, rtol=0, atol=(3e-5 if dtype == np.float32 else 1e-11) * np.abs(dy).max())
    none, dgamma2, _ = F.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, need_input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dgamma2, dgamma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", EDGE_SHAPES + DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_fused_relu_is_relu_bit_for_bit(shape, dtype, isa, rng):
    # relu=True / gate=: a ReLU after the layer in the same passes; the bits of the separate ops.
    x = (rng.standard_normal(shape) * 3 + 0.5).astype(dtype)
    c = shape[1]
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    y, mean, var = F.batch_norm(x, gamma, beta)
    y_relu, mean2, var2 = F.batch_norm(x, gamma, beta, relu=True)
    np.testing.assert_array_equal(y_relu, F.relu(y))
    assert not np.signbit(y_relu).any()  # -0 -> +0, as relu
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(var2, var)
    dy = rng.standard_normal(shape).astype(dtype)
    want = F.batch_norm_backward(F.relu_backward(dy, y_relu), x, mean, var, gamma)
    got = F.batch_norm_backward(dy, x, mean, var, gamma, beta=beta, relu=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # out=dy itself (a training step that owns dy): the same bits, dy overwritten by dx.
    for relu in (False, True):
        want = F.batch_norm_backward(dy, x, mean, var, gamma, beta=beta, relu=relu)
        in_place = dy.copy()
        got = F.batch_norm_backward(in_place, x, mean, var, gamma, beta=beta, relu=relu, out=in_place)
        assert got[0] is in_place
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


# On AVX-512 a row of fewer than 128 values goes with the other rows of its block of channels in
# the same image, as one run (batchnorm_impl.h, kBnRunRow): runs off the vector width, image
# counts past and off the chunk of 8 images summed together, one value a row, rows of 121 and
# 144 values (either side of the limit), and a run too long for the position arrays (rows again).
RUN_SHAPES = [(13, 40, 7, 7), (9, 5, 3, 5), (17, 64, 1, 1), (8, 3, 11, 11), (20, 2, 12, 12), (2, 400, 10, 10),
              (64, 3, 2, 3)]


def _channels_apart(shape, rng):
    """x, gamma, beta whose channels differ in offset and spread: a value summed into another
    channel's statistics or scaled by another channel's constants shows."""
    c = shape[1]
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 4, (1, c, 1, 1)) + rng.uniform(-5, 5, (1, c, 1, 1))).astype(np.float32)
    return x, rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("shape", RUN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_forward_of_short_rows_in_runs_matches_oracle(shape, relu, isa, rng):
    x, gamma, beta = _channels_apart(shape, rng)
    y, mean, var = F.batch_norm(x, gamma, beta, 1e-3, relu=relu)
    y_want, mean_want, var_want = R.batch_norm(x, gamma, beta, 1e-3)
    _close(mean, mean_want, np.float32)
    _close(var, var_want, np.float32)
    _close(y, np.maximum(y_want, 0) if relu else y_want, np.float32)


# The backward takes rows of fewer than 32 values in runs too (batchnorm_impl.h, kBnBwdRunRow):
# the shapes above, and chunks of images longer than the 8 summed together (300 images in 8
# chunks), a Dense layer's (N, F) features, and a sample too large for the position arrays.
BWD_RUN_SHAPES = RUN_SHAPES + [(300, 24, 2, 2), (37, 33, 1, 1), (2, 70000, 1, 1)]


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("shape", BWD_RUN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_backward_of_short_rows_in_runs_matches_oracle(shape, relu, isa, rng):
    x, gamma, beta = _channels_apart(shape, rng)
    y, mean, var = F.batch_norm(x, gamma, beta, 1e-3, relu=relu)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dgamma, dbeta = F.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, beta=beta, relu=relu)
    g = F.relu_backward(dy, y) if relu else dy  # the fused ReLU's gradient: dy where y > 0
    dx_want, dgamma_want, dbeta_want = R.batch_norm_backward(g, x, mean, var, gamma, 1e-3)
    scale = np.abs(g * (x - mean[None, :, None, None])).sum(axis=(0, 2, 3)).max() + np.abs(g).sum(axis=(0, 2, 3)).max()
    np.testing.assert_allclose(dbeta, dbeta_want, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(dgamma, dgamma_want, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(dx, dx_want, rtol=0, atol=3e-5 * np.abs(dy).max())
    # dx over dy, and no input gradient: the same bits.
    in_place = dy.copy()
    got = F.batch_norm_backward(in_place, x, mean, var, gamma, 1e-3, beta=beta, relu=relu, out=in_place)
    assert got[0] is in_place
    for a, b in zip(got, (dx, dgamma, dbeta)):
        np.testing.assert_array_equal(a, b)
    none, dgamma2, dbeta2 = F.batch_norm_backward(dy, x, mean, var, gamma, 1e-3, beta=beta, relu=relu,
                                                  need_input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dgamma2, dgamma)
    np.testing.assert_array_equal(dbeta2, dbeta)


def _assert_fused_relu_backward_in_place(dy, x, mean, var, gamma, beta, y_relu):
    """The backward with the ReLU fused and dx written over dy: the separate ops' bits."""
    want = F.batch_norm_backward(F.relu_backward(dy, y_relu), x, mean, var, gamma)
    in_place = dy.copy()
    got = F.batch_norm_backward(in_place, x, mean, var, gamma, beta=beta, relu=True, out=in_place)
    assert got[0] is in_place
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# Above 8 MiB of x and dy together the backward works on blocks of channels (batchnorm_impl.h),
# below it on chunks of images: the shapes above are all below. These are above, in each dtype:
# 5x10 planes (50 values: vector tails) in blocks of 2 channels, the last one short (37 = 18 x 2
# + 1), and 61x61 planes one channel to a block.
BIG_BN_SHAPES = {np.float32: [(600, 37, 5, 10), (60, 5, 61, 61)], np.float64: [(300, 37, 5, 10), (30, 5, 61, 61)]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", [0, 1], ids=["blocks_of_2", "blocks_of_1"])
def test_batch_norm_backward_in_channel_blocks_matches_oracle(which, dtype, isa, rng):
    shape = BIG_BN_SHAPES[dtype][which]
    assert 2 * np.dtype(dtype).itemsize * np.prod(shape) > 8 * 2**20
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    y, mean, var = F.batch_norm(x, gamma, beta)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = F.batch_norm_backward(dy, x, mean, var, gamma)
    dx_want, dgamma_want, dbeta_want = R.batch_norm_backward(dy, x, mean, var, gamma)
    # Sums of ~15k-220k terms of size ~3: relative to the sum of |terms|.
    scale = np.abs(dy * (x - mean[None, :, None, None])).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(dbeta, dbeta_want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * scale.max())
    np.testing.assert_allclose(dgamma, dgamma_want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * scale.max())
    np.testing.assert_allclose(dx, dx_want, rtol=0, atol=(3e-5 if dtype == np.float32 else 1e-11) * np.abs(dy).max())
    # The fused ReLU, and dx written over dy, keep the separate ops' bits here too.
    y_relu, _, _ = F.batch_norm(x, gamma, beta, relu=True)
    _assert_fused_relu_backward_in_place(dy, x, mean, var, gamma, beta, y_relu)
    assert F.batch_norm_backward(dy, x, mean, var, gamma, need_input_grad=False)[0] is None


@pytest.fixture
def l2_bytes():
    """Sets the L2 size the kernels take (convforge._core._set_l2_cache_bytes); the detected one after."""
    yield convforge._core._set_l2_cache_bytes
    convforge._core._set_l2_cache_bytes(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_backward_blocks_one_at_a_time_keep_the_bits(dtype, isa, l2_bytes, rng):
    """A block of one channel above the kernels' budget (802 KB of x and dy here) whose x, dy and
    dx fit in L2 while two blocks' would not runs its dx pass before the next block's sums instead
    of beside them (batchnorm_bwd_blocks): with a 2 MiB L2 one at a time, with a 1 MiB L2 or an
    unknown one overlapped. The order of the passes changes, not the bits; dx over dy too."""
    shape = (128, 11, 28, 28) if dtype == np.float32 else (64, 11, 28, 28)
    assert 2 * np.dtype(dtype).itemsize * np.prod(shape) > 8 * 2**20
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    _, mean, var = F.batch_norm(x, gamma, beta)
    y_relu, _, _ = F.batch_norm(x, gamma, beta, relu=True)
    dy = rng.standard_normal(shape).astype(dtype)
    results = {}
    for l2 in (2 << 20, 1 << 20, 0):
        l2_bytes(l2)
        plain = F.batch_norm_backward(dy, x, mean, var, gamma)
        in_place = dy.copy()
        fused = F.batch_norm_backward(in_place, x, mean, var, gamma, beta=beta, relu=True, out=in_place)
        assert fused[0] is in_place
        results[l2] = plain + fused
    for l2 in (1 << 20, 0):
        for got, want in zip(results[l2], results[2 << 20]):
            np.testing.assert_array_equal(got, want)
    dx_want, dgamma_want, dbeta_want = R.batch_norm_backward(dy, x, mean, var, gamma)
    scale = np.abs(dy * (x - mean[None, :, None, None])).sum(axis=(0, 2, 3)).max()
    dx, dgamma, dbeta = results[2 << 20][:3]
    np.testing.assert_allclose(dbeta, dbeta_want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * scale)
    np.testing.assert_allclose(dgamma, dgamma_want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * scale)
    np.testing.assert_allclose(dx, dx_want, rtol=0, atol=(3e-5 if dtype == np.float32 else 1e-11) * np.abs(dy).max())
    np.testing.assert_array_equal(results[2 << 20][3], F.batch_norm_backward(F.relu_backward(dy, y_relu), x, mean, var,
                                                                             gamma)[0])


def test_batch_norm_streams_outputs_of_16_mib_and_more(isa, rng):
    """Outputs of 16 MiB or more (y, dx) are written past the caches (batchnorm_impl.h,
    kBnStreamBytes): a masked head up to the first cache line, streamed whole vectors, a masked
    tail. 109x109 planes (11,881 values: every row starts at another offset within a line)."""
    shape = (8, 48, 109, 109)
    assert 4 * np.prod(shape) >= 16 * 2**20
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(np.float32)
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    y, mean, var = F.batch_norm(x, gamma, beta)
    y_want, mean_want, var_want = R.batch_norm(x, gamma, beta, 1e-3)
    _close(y, y_want, np.float32)
    _close(var, var_want, np.float32)
    # An output view one float past a line start: the head is 15 values, not 0 or 16.
    room = np.empty(x.size + 16, np.float32)
    start = (-room.ctypes.data // 4) % 16 + 1
    shifted = room[start:start + x.size].reshape(shape)
    np.testing.assert_array_equal(F.batch_norm(x, gamma, beta, out=shifted)[0], y)
    y_relu, _, _ = F.batch_norm(x, gamma, beta, relu=True)
    np.testing.assert_array_equal(y_relu, F.relu(y))
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dgamma, dbeta = F.batch_norm_backward(dy, x, mean, var, gamma)
    dx_want, _, _ = R.batch_norm_backward(dy, x, mean, var, gamma, 1e-3)
    np.testing.assert_allclose(dx, dx_want, rtol=0, atol=3e-5 * np.abs(dy).max())
    _assert_fused_relu_backward_in_place(dy, x, mean, var, gamma, beta, y_relu)


@pytest.mark.parametrize("spread", [1e3, 1e-2, "first"], ids=["rows_far_apart", "rows_near_1000", "first_row_apart"])
@pytest.mark.parametrize("shape", [(3, 2, 40, 41), (2, 2, 1, 2000), (16, 3, 16, 16), (64, 3, 7, 7), (9, 2, 15, 15)],
                         ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_statistics_combine_rows_of_different_means(shape, spread, isa, rng):
    """Rows of 256 values or more: the forward sums each image's row of a channel and its squared
    deviations from a shift, the row's mean rounded to float32 (in float lanes, folded into double
    every 512 values: 1640 and 2000 values are several chunks and a tail), then combines the rows
    exactly in double: sum((x - mu)^2) = q + 2 (shift - mu) (sum - n shift) + n (shift - mu)^2 per
    row. Rows far apart (means 1000s away, spread 0.01 within) need the last term; rows at
    1000 +- 0.01 with spread 0.01 need the middle one (the shift's rounding, 3e-5, against the
    spread: 0.3% of the variance). Shorter rows (7x7, 15x15: two float chunks of 128 a row) take
    the channel's lane sums, its mean, then the squared deviations from the mean rounded to
    float32 less n (mean - shift)^2 (the rounding's share, ~5e-6 of the variance of the rows near
    1000: within the tolerance; taking the deviations from 0 instead fails). The third case puts the first image 10,000 away from the others, spread 0.01 within."""
    n, c = shape[:2]
    if spread == "first":
        x = (rng.standard_normal(shape) * 1e-2).astype(np.float32)
        x[0] += np.float32(1e4)
    else:
        base = 0.0 if spread > 1 else 1000.0
        x = (base + rng.standard_normal((n, c, 1, 1)) * spread + rng.standard_normal(shape) * 1e-2).astype(np.float32)
    y, mean, var = F.batch_norm(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-5)


def test_batch_norm_float32_statistics_of_a_large_offset_batch(rng):
    """A ResNet-sized batch (32 x 32 x 56 x 56 is 100k values per channel) with a large mean: the
    double accumulation keeps mean and variance to float32 rounding (a float32 running sum would
    lose about 3 digits of the mean, and E[x^2] - E[x]^2 all digits of the variance)."""
    x = (rng.standard_normal((32, 4, 56, 56)) * 0.5 + 1000.0).astype(np.float32)
    y, mean, var = F.batch_norm(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3), dtype=np.float64), np.sqrt(var / (var + 1e-3)), rtol=1e-4)


def test_batch_norm_gradient_is_the_numerical_derivative(rng):
    """float64 central differences of sum(dy * batch_norm(x)) against the kernel's dx, dgamma, dbeta."""
    x = rng.standard_normal((3, 4, 3, 5))
    gamma, beta, dy = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(x.shape)
    _, mean, var = F.batch_norm(x, gamma, beta)
    dx, dgamma, dbeta = F.batch_norm_backward(dy, x, mean, var, gamma)

    def loss(x_, g_, b_):
        return float((F.batch_norm(x_, g_, b_)[0] * dy).sum())

    h = 1e-6
    for idx in [(0, 0, 0, 0), (1, 2, 1, 3), (2, 3, 2, 4), (0, 1, 2, 2)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        assert abs((loss(xp, gamma, beta) - loss(xm, gamma, beta)) / (2 * h) - dx[idx]) < 1e-7
    for c in range(4):
        e = np.zeros(4)
        e[c] = h
        assert abs((loss(x, gamma + e, beta) - loss(x, gamma - e, beta)) / (2 * h) - dgamma[c]) < 1e-7
        assert abs((loss(x, gamma, beta + e) - loss(x, gamma, beta - e)) / (2 * h) - dbeta[c]) < 1e-7


# ------------------------------------------------------------------------------ global pooling


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_global_pooling_matches_oracle(shape, dtype, isa, rng):
    x = rng.standard_normal(shape).astype(dtype)
    _close(F.global_avg_pool2d(x), R.global_avg_pool2d(x), dtype)
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    _close(F.global_avg_pool2d_backward(dy, shape), R.global_avg_pool2d_backward(dy, shape), dtype)

    x = rng.integers(0, 3, size=shape).astype(dtype)  # ties: the first maximum must win
    y, idx = F.global_max_pool2d(x, return_indices=True)
    y_want, idx_want = R.global_max_pool2d(x, return_indices=True)
    np.testing.assert_array_equal(y, y_want)
    np.testing.assert_array_equal(idx, idx_want)
    np.testing.assert_array_equal(F.global_max_pool2d(x), y)
    np.testing.assert_array_equal(F.global_max_pool2d_backward(dy, idx, shape),
                                  R.global_max_pool2d_backward(dy, idx, shape))


def _first_max(plane):
    """The global max pool's rules, as a scan: the first NaN, else the first of the largest."""
    best, arg = plane[0], 0
    if best == best:
        for i, v in enumerate(plane[1:], 1):
            if v != v:
                return v, i
            if v > best:
                best, arg = v, i
    return best, arg


@pytest.mark.parametrize("hw", [1, 7, 16, 17, 33, 49])
def test_global_max_pool_special_values_on_every_isa(hw, isa):
    # Planes of lengths around the vector widths, with NaNs (first, in a tail lane, two of them),
    # signed zeros in both orders, all -inf, +inf, and the maximum in the last lane.
    n = hw
    planes = [np.zeros(n), np.full(n, -np.inf), np.arange(n, dtype=float), -np.arange(n, dtype=float),
              -np.arange(n, 0, -1, dtype=float)]  # all negative, the largest last
    for at in sorted({0, n // 2, n - 1}):
        p = np.arange(n, dtype=float)
        p[at] = np.nan
        planes.append(p)
        q = np.full(n, -1.0)
        q[at] = np.inf
        planes.append(q)
    if n > 1:
        two = np.zeros(n)
        two[[n - 1, n // 3]] = np.nan
        planes.append(two)
        planes.append(np.where(np.arange(n) == 0, -0.0, 0.0))  # -0 first: kept
        planes.append(np.where(np.arange(n) == 0, 0.0, -0.0))  # +0 first: kept
    x = np.array(planes, np.float32).reshape(1, len(planes), 1, n)
    y, idx = F.global_max_pool2d(x, return_indices=True)
    for c, plane in enumerate(x[0, :, 0]):
        want, arg = _first_max(plane)
        assert idx[0, c] == arg, (c, plane, idx[0, c], arg)
        got = y[0, c]
        assert (np.isnan(got) and np.isnan(want)) or (got == want and np.signbit(got) == np.signbit(want)), (c, got, want)


def test_global_max_pool_nan_propagates():
    x = np.zeros((1, 3, 2, 2), np.float32)
    x[0, 0, 1, 0] = np.nan
    x[0, 1, 0, 0] = np.nan
    x[0, 2, 0, 1] = 5.0
    y, idx = F.global_max_pool2d(x, return_indices=True)
    assert np.isnan(y[0, 0]) and np.isnan(y[0, 1]) and y[0, 2] == 5.0
    assert idx.tolist() == [[2, 0, 1]]


# ------------------------------------------------------------------------------ depthwise conv2d

DEPTHWISE_CASES = [
    # (N, C, H, W, M, KH, KW, stride, padding, dilation)
    (2, 3, 8, 8, 1, 3, 3, 1, 1, 1),
    (1, 4, 15, 17, 2, 3, 3, 1, "same", 1),
    (2, 2, 16, 33, 1, 3, 3, 2, "same", 1),
    (1, 17, 5, 5, 1, 3, 3, 1, 0, 1),
    (2, 1, 9, 11, 3, 5, 3, (2, 1), (2, 1), 1),
    (1, 3, 12, 12, 1, 3, 3, 1, 2, 2),
    (1, 2, 7, 31, 2, 1, 1, 1, 0, 1),
    (1, 2, 6, 6, 1, 7, 7, 1, "same", 1),
    (2, 16, 7, 7, 1, 3, 3, 3, 1, (1, 2)),
    # rows in groups of 4 and products folded every 8 rows across images (10 output rows, 3
    # images), a multiplier with strided phases, outputs across a vector of 16 (19 columns)
    (3, 2, 19, 37, 2, 3, 3, 2, 1, 1),
    (2, 3, 30, 30, 1, 3, 3, 1, "same", 1),
    # stride 2 over rows of 27 and 13 values: the vector split into phases ends in a part vector
    (2, 3, 9, 27, 1, 3, 3, 2, 1, 1),
    (1, 2, 5, 13, 1, 3, 3, 2, "same", 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_depthwise_conv2d_matches_oracle(case, dtype, isa, rng):
    n, c, h, w_, m, kh, kw, stride, padding, dilation = case
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((c * m, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    y = F.depthwise_conv2d(x, w, b, stride, padding, dilation)
    _close(y, R.depthwise_conv2d(x, w, b, stride, padding, dilation), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = F.depthwise_conv2d_backward(dy, x, w, stride, padding, dilation)
    want = R.depthwise_conv2d_backward(dy, x, w, stride, padding, dilation)
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, rtol=1e-4 if dtype == np.float32 else 1e-11,
                                   atol=1e-4 if dtype == np.float32 else 1e-11)
    dx, dw, db = F.depthwise_conv2d_backward(dy, x, w, stride, padding, dilation, False, False)
    assert dx is None and db is None
    np.testing.assert_array_equal(dw, got[1])


def test_depthwise_matches_keras_channel_order(rng):
    """Output channel c * M + m reads input channel c: conv2d with w embedded block-diagonally."""
    x = rng.standard_normal((1, 3, 6, 6))
    w = rng.standard_normal((6, 1, 3, 3))
    full = np.zeros((6, 3, 3, 3))
    for o in range(6):
        full[o, o // 2] = w[o, 0]
    np.testing.assert_allclose(F.depthwise_conv2d(x, w, padding=1), R.conv2d(x, full, padding=1), atol=1e-12)


# ------------------------------------------------------------------------------ threads


def _all_ops(x, dy_bn, w, dy_dw, dy_gp):
    y, mean, var = F.batch_norm(x, np.full(x.shape[1], 1.5, x.dtype), np.full(x.shape[1], 0.5, x.dtype))
    out = [y, mean, var, *F.batch_norm_backward(dy_bn, x, mean, var, np.full(x.shape[1], 1.5, x.dtype))]
    out += [F.global_avg_pool2d(x), F.global_avg_pool2d_backward(dy_gp, x.shape), *F.global_max_pool2d(x, True)]
    out += [F.depthwise_conv2d(x, w, padding=1), *F.depthwise_conv2d_backward(dy_dw, x, w, padding=1)]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# > 256 KiB: the passes use threads. 13 images: batch norm's backward sums uneven chunks of
# images (8 of 1-2 images) over channel blocks, then the chunks in order. 130 x 37 x 15 x 15
# (8.7 MB of float32 x and dy): its backward in blocks of channels (test above).
@pytest.mark.parametrize("shape", [(8, 17, 33, 33), (13, 40, 7, 7), (130, 37, 15, 15)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bit_identical_for_any_thread_count(dtype, shape, threads, rng):
    n, c, h, w_ = shape
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((2 * c, 1, 3, 3)).astype(dtype)
    args = (x, rng.standard_normal(x.shape).astype(dtype), w, rng.standard_normal((n, 2 * c, h, w_)).astype(dtype),
            rng.standard_normal((n, c)).astype(dtype))
    results = []
    for n in (1, 2, 3):
        convforge.set_num_threads(n)
        results.append(_all_ops(*args))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ bad input

X = np.ones((2, 3, 4, 4), np.float32)
V = np.ones(3, np.float32)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: F.batch_norm(X[0, 0, 0]), ValueError, "x must have at least 2 dimensions"),
        (lambda: F.batch_norm(X, np.ones(4, np.float32)), ValueError, "gamma must have shape (3,)"),
        (lambda: F.batch_norm(X, V.astype(np.float64)), TypeError, "gamma is float64 but x is float32"),
        (lambda: F.batch_norm(X, None, [1, 2, 3]), TypeError, "beta must be a numpy.ndarray"),
        (lambda: F.batch_norm(X, eps=0), ValueError, "eps must be a finite number > 0"),
        (lambda: F.batch_norm(X, eps=float("nan")), ValueError, "eps"),
        (lambda: F.batch_norm(X, eps=10**400), ValueError, "eps must be a finite number > 0"),
        (lambda: F.batch_norm_inference(X, V, V, eps=10**400), ValueError, "eps must be a finite number > 0"),
        (lambda: F.batch_norm_backward(X, X, V, V, eps=-10**400), ValueError, "eps must be a finite number > 0"),
        (lambda: F.batch_norm(X.astype(np.int32)), TypeError, "x must be float32 or float64"),
        (lambda: F.batch_norm(np.ones((2, 0, 3), np.float32)), ValueError, "x is empty"),
        (lambda: F.batch_norm(X, out=np.ones((2, 3, 4, 5), np.float32)), ValueError, "out must have shape"),
        (lambda: F.batch_norm(X, out=X), ValueError, "out must not share memory with x"),
        (lambda: F.batch_norm_inference(X, None, V), TypeError, "mean and var are required"),
        (lambda: F.batch_norm_inference(X, V, np.ones(2, np.float32)), ValueError, "var must have shape (3,)"),
        (lambda: F.batch_norm_backward(X[:1], X, V, V), ValueError, "dy must have the shape of x"),
        (lambda: F.batch_norm_backward(X, X, V, V, need_input_grad=1), TypeError, "need_input_grad"),
        (lambda: F.batch_norm_backward(X, X, V, V, beta=np.ones(4, np.float32)), ValueError, "beta must have shape (3,)"),
        (lambda: F.batch_norm_backward(X, X, V, V, relu="yes"), TypeError, "relu"),
        (lambda: F.batch_norm(X, relu=1), TypeError, "relu"),
        (lambda: F.global_avg_pool2d(X[0]), ValueError, "x must have 4 dimensions"),
        (lambda: F.global_avg_pool2d_backward(np.ones((2, 3), np.float32), (2, 4, 4, 4)), ValueError,
         "input_shape must be (N, C, H, W) with N, C = (2, 3)"),
        (lambda: F.global_avg_pool2d_backward(np.ones((2, 3), np.float32), "2344"), TypeError, "input_shape"),
        (lambda: F.global_max_pool2d(X, return_indices="yes"), TypeError, "return_indices"),
        (lambda: F.global_max_pool2d(X, True, out_indices=np.zeros((2, 3), np.int32)), TypeError,
         "out_indices must be int64, got int32"),
        (lambda: F.global_max_pool2d(X, out_indices=np.zeros((2, 3), np.int64)), ValueError,
         "out_indices is given but return_indices is False"),
        (lambda: F.global_max_pool2d(X[:0], out_indices=np.zeros((0, 3), np.int64)), ValueError,
         "out_indices is given but return_indices is False"),
        (lambda: F.global_max_pool2d_backward(np.ones((2, 3), np.float32), np.zeros((2, 3), np.int32), X.shape),
         TypeError, "indices must be int64"),
        (lambda: F.global_max_pool2d_backward(np.ones((2, 3), np.float32), np.full((2, 3), 16, np.int64), X.shape),
         ValueError, "indices[0, 0] is outside the plane"),
        (lambda: F.global_max_pool2d_backward(np.ones((2, 3), np.float32), np.full((2, 3), -1, np.int64), X.shape),
         ValueError, "outside the plane"),
        (lambda: F.depthwise_conv2d(X, np.ones((4, 1, 3, 3), np.float32)), ValueError,
         "w must have shape (C * depth_multiplier, 1, KH, KW) with C = 3"),
        (lambda: F.depthwise_conv2d(X, np.ones((3, 3, 3, 3), np.float32)), ValueError, "depth_multiplier"),
        (lambda: F.depthwise_conv2d(X, np.ones((3, 1, 5, 5), np.float32)), ValueError, "kernel"),
        (lambda: F.depthwise_conv2d(X, np.ones((3, 1, 3, 3), np.float32), np.ones(2, np.float32)), ValueError,
         "b must have shape (3,)"),
        (lambda: F.depthwise_conv2d(X, np.ones((3, 1, 3, 3), np.float64)), TypeError, "w is float64 but x is float32"),
        (lambda: F.depthwise_conv2d(X, np.ones((3, 1, 3, 3), np.float32), stride=0), ValueError, "stride"),
        (lambda: F.depthwise_conv2d_backward(np.ones((2, 3, 3, 3), np.float32), X, np.ones((3, 1, 3, 3), np.float32)),
         ValueError, "dy must have the shape of depthwise_conv2d's output (2, 3, 2, 2)"),
    ],
)
def test_bad_input_names_the_argument(call, exc, words):
    with pytest.raises(exc) as err:
        call()
    assert words in str(err.value)


def test_strided_and_read_only_inputs_give_the_contiguous_answer(rng):
    x = rng.standard_normal((4, 6, 9, 10)).astype(np.float32)
    view = x[:, ::2, :, ::-1]
    view.flags.writeable = False
    want = F.batch_norm(np.ascontiguousarray(view))
    for a, b in zip(F.batch_norm(view), want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(F.global_avg_pool2d(view), F.global_avg_pool2d(np.ascontiguousarray(view)))
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(F.depthwise_conv2d(view, w), F.depthwise_conv2d(np.ascontiguousarray(view), w))


def test_inference_in_place_and_out_buffers(rng):
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    mean, var = np.zeros(3, np.float32), np.full(3, 4.0, np.float32)
    want = F.batch_norm_inference(x, mean, var)
    y = F.batch_norm_inference(x, mean, var, out=x)
    assert y is x
    np.testing.assert_array_equal(x, want)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        F.batch_norm(x, out=ro)


@pytest.mark.parametrize("which", ["x", "out_w", "out_b"])
def test_depthwise_backward_refuses_an_out_over_what_is_read_or_written_after_it(which, rng):
    # dx is written before dw/db are computed from x: an `out` over x, out_w or out_b gave a
    # silently wrong dw (or dx) instead of the "must not share memory" error of every other op.
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    want = F.depthwise_conv2d_backward(dy, x, w, padding=1)
    buf = np.zeros(150, np.float32)
    kwargs = {"x": dict(out=x), "out_w": dict(out=buf.reshape(x.shape), out_w=buf[:27].reshape(w.shape)),
              "out_b": dict(out=buf.reshape(x.shape), out_b=buf[:3])}[which]
    x_before = x.copy()
    with pytest.raises(ValueError, match=f"out must not share memory with {which}"):
        F.depthwise_conv2d_backward(dy, x, w, padding=1, **kwargs)
    np.testing.assert_array_equal(x, x_before)
    # Apart, the same buffers give the usual answer.
    got = F.depthwise_conv2d_backward(dy, x, w, padding=1, out=np.empty_like(x), out_w=np.empty_like(w),
                                      out_b=np.empty(3, np.float32))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(4, 2), (2, 2, 3, 3), (2, 2, 17, 17), (3, 2, 300)], ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_statistics_of_finite_values_near_float32_max(shape, isa):
    # Finite float32 values whose sums (or squared deviations) overflow float32 but whose mean and
    # variance do not: the fast forms add a few values in float32 before the doubles, and gave a
    # mean of inf (four values of 1e38) or a variance of inf (deviations of 1.5e19, variance
    # 2.25e38), while the docs promise double sums and the oracle gives finite statistics.
    x = np.full(shape, 1e38, np.float32)
    x[::2] = 9e37
    y, mean, var = F.batch_norm(x)
    want_y, want_mean, want_var = R.batch_norm(x.astype(np.float64))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    assert np.isinf(var).all()  # the true variance (about 2.5e73) exceeds float32: inf is its rounding
    sign = np.where(np.arange(shape[0]) % 2 == 0, -1.0, 1.0).reshape(-1, *([1] * (len(shape) - 1)))
    x = (np.ones(shape) * sign * 1.5e19).astype(np.float32)
    y, mean, var = F.batch_norm(x)
    want_y, want_mean, want_var = R.batch_norm(x.astype(np.float64))
    np.testing.assert_allclose(mean, want_mean, atol=1e13)
    np.testing.assert_allclose(var, want_var, rtol=1e-6)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_keeps_the_products_of_padding_with_inf_and_nan(dtype, isa):
    # 0 * inf is NaN: conv2d and the oracle (one conv2d per channel) multiply the zero padding by
    # the weights (forward) and by dy (weights' gradient); the depthwise kernels skipped the padded
    # taps and gave finite values there (a weight of inf at a corner: 4.0 where conv2d says NaN).
    x = np.ones((2, 2, 4, 5), dtype)
    w = np.ones((4, 1, 3, 3), dtype)
    w[1, 0, 0, 0], w[2, 0, 2, 1] = np.inf, np.nan
    dy = np.ones((2, 4, 4, 5), dtype)
    dy[1, 3, 0, 4] = -np.inf
    for padding, stride, dilation in [(1, 1, 1), ("same", 2, 1), (((0, 2), (1, 0)), 1, 2)]:
        with np.errstate(invalid="ignore"):
            want = R.depthwise_conv2d(x, w, None, stride, padding, dilation)
            dy_ = dy[:, :, : want.shape[2], : want.shape[3]]
        got = F.depthwise_conv2d(x, w, None, stride, padding, dilation)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got).any()
        np.testing.assert_allclose(got, want, rtol=1e-6)
        for g, r in zip(F.depthwise_conv2d_backward(np.ascontiguousarray(dy_), x, np.ones_like(w), stride, padding,
                                                    dilation),
                        R.depthwise_conv2d_backward(dy_, x, np.ones_like(w), stride, padding, dilation)):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
            np.testing.assert_allclose(g, r, rtol=1e-6)
        # Without the bias gradient (whose sums tell a finite dy cheaply) the weights' gradient is the same.
        _, dw, db = F.depthwise_conv2d_backward(np.ascontiguousarray(dy_), x, np.ones_like(w), stride, padding,
                                                dilation, need_bias_grad=False)
        want_dw = R.depthwise_conv2d_backward(dy_, x, np.ones_like(w), stride, padding, dilation)[1]
        assert db is None
        np.testing.assert_array_equal(np.isnan(dw), np.isnan(want_dw))
        # conv2d on one channel says the same.
        np.testing.assert_array_equal(np.isnan(F.conv2d(x[:, :1], w[:1], None, stride, padding, dilation)),
                                      np.isnan(got[:, :1]))


@pytest.mark.parametrize("shape", [(4, 1, 2, 2), (16, 2, 3, 3), (16, 3, 14, 14), (4, 2, 40, 40)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_batch_norm_backward_of_finite_gradients_near_float32_max(shape, relu, isa):
    # dy of +3e38 in the first half of the images and -3e38 in the second, plus a small part of
    # its own (1e34, some hundred float32 steps there), and the second half's x that of the first:
    # the large parts cancel in sum(dy) and sum(dy * xc) whatever the fused ReLU's mask (it is the
    # same for both halves), and what is left is finite and not 0, and depends on the mask. The
    # kernels add a few values in float32 first and overflowed there (dgamma inf, dbeta NaN on the
    # SIMD paths): a channel whose sums come out non-finite is summed again in double. The shapes
    # take each form: runs of short rows, rows by images, blocks.
    rng = np.random.default_rng(0)
    n = shape[0]
    x = (3 * rng.standard_normal(shape)).astype(np.float32)  # a spread of 3: dx = dy / 3 + ... stays finite
    x[n // 2:] = x[: n // 2]
    dy = np.full(shape, 3e38, np.float32)
    dy[n // 2:] *= -1
    dy += rng.uniform(-1e34, 1e34, shape).astype(np.float32)
    _, mean, var = F.batch_norm(x)
    if relu:
        got = F.batch_norm_backward(dy, x, mean, var, relu=True)
        mask = (x - mean[None, :, None, None]) / np.sqrt(var + 1e-3)[None, :, None, None] > 0
        want = R.batch_norm_backward((dy * mask).astype(np.float64), x.astype(np.float64), mean, var)
    else:
        got = F.batch_norm_backward(dy, x, mean, var)
        want = R.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), mean, var)
    # What is left is ~1e34; float32 rounding of terms of 3e38 (the fast forms' products, where
    # they do not overflow) leaves ~1e31-1e32 of it: atol 5e32, and sums well above that.
    for w in (want[1], want[2]):
        assert np.all(np.abs(w) > 1e33) and np.all(np.abs(w) < 3e38), w
    np.testing.assert_allclose(got[2], want[2], rtol=1e-4, atol=5e32)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=5e32)
    finite = np.abs(want[0]) < 3e38  # dx where the oracle's is a float32 value
    assert finite.mean() > 0.5
    np.testing.assert_allclose(got[0][finite], want[0][finite], rtol=1e-3, atol=1e32)
