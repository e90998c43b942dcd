"""conv2d forward/backward kernels against the NumPy float64 oracle, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import numerical_grad
from shapes import TEST_CONV
from winograd_bound import (
    assert_within_winograd_bound,
    backward_data_magnitude,
    forward_magnitude,
    weight_grad_magnitude,
)

import convforge
from convforge import _core, _params
from convforge import functional as F
from convforge import reference as R

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def make_case(case, dtype, rng, integers=False):
    def draw(shape):
        if integers:
            return rng.integers(-4, 5, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    x = draw((case.n, case.c, case.h, case.w))
    w = draw((case.k, case.c, case.r, case.s))
    b = draw((case.k,))
    return x, w, b


def conv_args(case):
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation)


def core_args(case):
    """The normalised (stride, pads, dilation, out_hw) that the private _core API takes."""
    return _params.conv_params((case.h, case.w), (case.r, case.s), case.stride, case.padding, case.dilation)


def assert_within_bound(got, want, abs_terms, n_terms, dtype):
    """|got - want| <= n_terms * eps * sum|terms| elementwise: the classic bound on a float sum.

    ``abs_terms`` is the same computation applied to absolute values, i.e. the sum of the
    magnitudes of the terms that make up each output element.
    """
    assert got.dtype == dtype
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), "non-finite output (an element was skipped or overflowed)"
    bound = 2.0 * n_terms * EPS[dtype] * abs_terms + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.id)
def test_forward_matches_oracle(case, dtype, isa, rng):
    x, w, b = make_case(case, dtype, rng)
    # reference
    want = R.conv2d(x, w, b, **conv_args(case))
    magnitude = R.conv2d(np.abs(x), np.abs(w), np.abs(b), **conv_args(case))
    # kernel: into a NaN-filled output, so an element the kernel skips cannot pass
    stride, pads, dilation, out_hw = core_args(case)
    out = np.full((case.n, case.k, *out_hw), np.nan, dtype=dtype)
    got = _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out)
    # verify
    assert got is out
    assert_within_bound(got, want, magnitude, case.c * case.r * case.s + 1, dtype)
    np.testing.assert_array_equal(F.conv2d(x, w, b, **conv_args(case)), got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.id)
def test_backward_matches_oracle(case, dtype, isa, rng):
    x, w, _ = make_case(case, dtype, rng)
    stride, pads, dilation, out_hw = core_args(case)
    dy = rng.standard_normal((case.n, case.k, *out_hw)).astype(dtype)
    # reference
    dx_want, dw_want, db_want = R.conv2d_backward(dy, x, w, **conv_args(case))
    dx_mag, dw_mag, db_mag = R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **conv_args(case))
    # kernel, NaN-prefilled
    dx = _core.conv2d_bwd_data(dy, w, x.shape, stride, pads, dilation, out=np.full(x.shape, np.nan, dtype))
    dw, db = _core.conv2d_bwd_weights(
        dy, x, w.shape, stride, pads, dilation, True,
        out_w=np.full(w.shape, np.nan, dtype), out_b=np.full(case.k, np.nan, dtype),
    )
    # verify
    assert_within_bound(dx, dx_want, dx_mag, case.k * case.r * case.s, dtype)
    assert_within_bound(dw, dw_want, dw_mag, case.n * out_hw[0] * out_hw[1], dtype)
    assert_within_bound(db, db_want, db_mag, case.n * out_hw[0] * out_hw[1], dtype)
    fdx, fdw, fdb = F.conv2d_backward(dy, x, w, **conv_args(case))
    np.testing.assert_array_equal(fdx, dx)
    np.testing.assert_array_equal(fdw, dw)
    np.testing.assert_array_equal(fdb, db)


# ---- every algorithm of every pass, forced, on every ISA -----------------------------------------
# The default choice takes one algorithm per problem; forcing each one that applies holds all of
# them to the oracle, and the expectations below say which cases each must take or decline (so a
# predicate that quietly stops applying, or applies where it must not, fails here).

COMPILED = {p.removeprefix("conv2d_"): by_isa for p, by_isa in convforge.build_info()["conv2d_algorithms"].items()}
PASS_ALGOS = sorted({(p, name) for p, by_isa in COMPILED.items() for names in by_isa.values() for name in names})
CASES = {c.name: c for c in TEST_CONV}

# Cases each algorithm must decline (on every ISA that has it), and why. The last algorithm of
# each pass takes every problem.
MUST_DECLINE = {
    ("fwd", "direct"): ["w15", "stride3", "outer_kw6", "dilation_hw", "lenet_c1"],  # 17 filters, stride 3, 6-wide, dw 3, 6 filters
    ("fwd", "pixels"): ["stride2_same", "w7", "stride3", "stride_hw"],  # strided
    ("fwd", "implicit_gemm"): ["stride3", "w7", "stride_hw", "pointwise_s2"],  # strided
    ("bwd_data", "direct"): ["lenet_c3", "w7", "keras_c1"],  # 6 channels, stride 2, 1 channel
    ("bwd_data", "tapwise_gemm"): ["w3", "lenet_c1", "stride3", "direct_bwd_same"],  # padded or strided
    ("bwd_data", "implicit_gemm"): ["stride3", "w7", "k_blocked_s2"],  # strided
    # unit stride, 3 channels, 33 channels, dilated, padding >= kernel, stride 5
    ("bwd_data", "direct_phases"): ["direct_bwd_same", "stride3", "w33", "phases_dilated", "phases_big_pad", "phases_s5"],
    ("fwd", "winograd_f4x3"): ["w7", "w17", "stride3", "dilation2", "lenet_c1"],  # stride 2, 3x1, stride 3, dilated, 5x5
    ("bwd_data", "winograd_f4x3"): ["w7", "w17", "stride3", "dilation2", "lenet_c1"],
    ("bwd_weights", "winograd_f4x3"): ["w7", "w17", "stride3", "dilation2", "lenet_c1"],
    ("bwd_weights", "outer"): ["outer_kw8", "lenet_c1", "dilation_hw", "stride3"],  # 8-wide, 6 filters, dw 3, 5 filters
    ("bwd_weights", "implicit_dot"): ["stride3", "w33", "outer_stem"],  # strided
}
UNIVERSAL = {("fwd", "im2col_gemm"), ("bwd_data", "col2im_gemm"), ("bwd_weights", "im2col_dot")}


def applicable(case, pass_, dtype=np.float32):
    return F.conv2d_algorithms((case.n, case.c, case.h, case.w), (case.k, case.c, case.r, case.s),
                               dtype=dtype, **conv_args(case))[pass_]


_ORACLE = {}


def oracle(case):
    """Inputs and float64 oracle results of one case, computed once per test session."""
    if case.name not in _ORACLE:
        rng = np.random.default_rng(len(_ORACLE) + 1)
        x, w, b = make_case(case, np.float32, rng)
        dy = rng.standard_normal((case.n, case.k, *core_args(case)[3])).astype(np.float32)
        args = conv_args(case)
        _ORACLE[case.name] = dict(
            x=x, w=w, b=b, dy=dy,
            fwd=(R.conv2d(x, w, b, **args), R.conv2d(np.abs(x), np.abs(w), np.abs(b), **args)),
            bwd=(R.conv2d_backward(dy, x, w, **args), R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **args)),
        )
    return _ORACLE[case.name]


def run_pass(case, pass_, algorithm, data):
    """One pass of `case` through _core with `algorithm` forced, into NaN-filled outputs."""
    stride, pads, dilation, out_hw = core_args(case)
    x, w, b, dy = data["x"], data["w"], data["b"], data["dy"]
    if pass_ == "fwd":
        out = np.full((case.n, case.k, *out_hw), np.nan, np.float32)
        _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out, algorithm=algorithm)
        return (out,)
    if pass_ == "bwd_data":
        out = np.full(x.shape, np.nan, np.float32)
        _core.conv2d_bwd_data(dy, w, x.shape, stride, pads, dilation, out=out, algorithm=algorithm)
        return (out,)
    dw, db = np.full(w.shape, np.nan, np.float32), np.full(case.k, np.nan, np.float32)
    _core.conv2d_bwd_weights(dy, x, w.shape, stride, pads, dilation, True, out_w=dw, out_b=db, algorithm=algorithm)
    return dw, db


@pytest.mark.parametrize("pass_algo", PASS_ALGOS, ids="-".join)
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.name)
def test_forced_algorithm_matches_oracle_or_declines(case, pass_algo, isa):
    pass_, algorithm = pass_algo
    data = oracle(case)
    if algorithm not in COMPILED[pass_][isa]:
        with pytest.raises(ValueError, match=f"no algorithm '{algorithm}' on {isa}"):
            run_pass(case, pass_, algorithm, data)
        return
    if algorithm not in applicable(case, pass_):
        outputs = []
        with pytest.raises(ValueError, match=f"'{algorithm}' does not apply"):
            outputs = run_pass(case, pass_, algorithm, data)
        assert outputs == []
        return
    got = run_pass(case, pass_, algorithm, data)
    stride, pads, dilation, out_hw = core_args(case)
    if algorithm == "winograd_f4x3":  # the transform's own bound (tests/winograd_bound.py)
        if pass_ == "fwd":
            want, mag, channels = data["fwd"][0], forward_magnitude(data["x"], data["w"], data["b"], pads, out_hw), case.c
        elif pass_ == "bwd_data":
            want, mag, channels = data["bwd"][0][0], backward_data_magnitude(data["dy"], data["w"], pads, (case.h, case.w)), case.k
        else:  # the weights by the transform's bound over all the batch's tiles, the bias as a plain sum
            want, mag = data["bwd"][0][1], weight_grad_magnitude(data["x"], data["dy"], pads)
            channels = case.n * -(-out_hw[0] // 4) * -(-out_hw[1] // 4)
            assert_within_bound(got[1], data["bwd"][0][2], data["bwd"][1][2], case.n * out_hw[0] * out_hw[1], np.float32)
        assert_within_winograd_bound(got[0], want, mag, channels, np.float32)
        return
    if pass_ == "fwd":
        (want, mag), terms = data["fwd"], [case.c * case.r * case.s + 1]
    elif pass_ == "bwd_data":
        want, mag, terms = (data["bwd"][0][0],), (data["bwd"][1][0],), [case.k * case.r * case.s]
    else:
        want, mag = data["bwd"][0][1:], data["bwd"][1][1:]
        terms = [case.n * out_hw[0] * out_hw[1]] * 2
    want = want if isinstance(want, tuple) else (want,)
    mag = mag if isinstance(mag, tuple) else (mag,)
    for g, wnt, m, t in zip(got, want, mag, terms):
        assert_within_bound(g, wnt, m, t, np.float32)


def test_refused_forced_algorithm_writes_nothing():
    case = CASES["stride3"]
    data = oracle(case)
    stride, pads, dilation, out_hw = core_args(case)
    out = np.full((case.n, case.k, *out_hw), np.nan, np.float32)
    with pytest.raises(ValueError, match="'implicit_gemm' does not apply"):
        _core.conv2d_fwd(data["x"], data["w"], data["b"], stride, pads, dilation, out=out, algorithm="implicit_gemm")
    assert np.isnan(out).all()


@pytest.mark.parametrize("n", [0, 1])
def test_forced_algorithm_that_does_not_apply_is_refused_on_an_empty_batch_too(n):
    # An empty batch returned zeros without any kernel, so a forced algorithm that does not apply
    # (Winograd F(4,3) on a 5x5 kernel) passed at N = 0 and raised only at N = 1.
    x = np.ones((n, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 5, 5), np.float32)
    dy = np.ones((n, 4, 4, 4), np.float32)
    with F.force_conv2d_algorithm(fwd="winograd_f4x3"):
        with pytest.raises(ValueError, match="'winograd_f4x3' does not apply"):
            F.conv2d(x, w)
    with F.force_conv2d_algorithm(bwd_data="winograd_f4x3"):
        with pytest.raises(ValueError, match="'winograd_f4x3' does not apply"):
            F.conv2d_backward_data(dy, w, x.shape)
    with F.force_conv2d_algorithm(bwd_weights="winograd_f4x3"):
        with pytest.raises(ValueError, match="winograd_f4x3"):
            F.conv2d_backward_weights(dy, x, w.shape)
    with F.force_conv2d_algorithm(fwd="im2col_gemm", bwd_data="col2im_gemm", bwd_weights="im2col_dot"):
        assert F.conv2d(x, w).shape == (n, 4, 4, 4)  # applicable ones run (or return the empty batch)
        assert F.conv2d_backward_data(dy, w, x.shape).shape == x.shape
        assert F.conv2d_backward_weights(dy, x, w.shape)[0].shape == w.shape


@pytest.mark.parametrize("pass_algo", sorted(MUST_DECLINE) + sorted(UNIVERSAL), ids="-".join)
def test_algorithm_expectations(pass_algo, isa):
    pass_, algorithm = pass_algo
    if algorithm not in COMPILED[pass_][isa]:
        pytest.skip(f"{algorithm} is not compiled for {isa}")
    takes = {c.name for c in TEST_CONV if algorithm in applicable(c, pass_)}
    if pass_algo in UNIVERSAL:
        assert takes == set(CASES)
        assert COMPILED[pass_][isa][-1] == algorithm
        return
    declined = set(MUST_DECLINE[pass_algo]) & takes
    assert not declined, f"{algorithm} should decline {sorted(declined)}"
    # ...and take enough cases to be tested on them (forced, above).
    assert len(takes) >= 5, f"{algorithm} applies to only {sorted(takes)}"


@pytest.mark.parametrize("case", [c for c in TEST_CONV if c.runs], ids=lambda c: c.name)
def test_default_choice_is_the_intended_algorithm(case, isa):
    # tests/shapes.py names the algorithm each of these cases exists to exercise.
    for pass_, algorithm in case.runs:
        if algorithm in COMPILED[pass_][isa]:
            assert applicable(case, pass_)[0] == algorithm, (pass_, applicable(case, pass_))


def test_every_algorithm_is_some_cases_default(isa):
    # Each compiled algorithm is the default choice of at least one named case on this ISA, or
    # only ever taken when forced (none today).
    defaults = {(p, applicable(c, p)[0]) for c in TEST_CONV for p in COMPILED}
    for pass_, names in ((p, by_isa[isa]) for p, by_isa in COMPILED.items()):
        for name in names:
            assert (pass_, name) in defaults, f"{pass_} {name} is never chosen on {isa}"


def test_non_finite_data_declines_the_padding_forms(rng):
    # The forms that multiply zero padding by weights (bwd_data) or inputs (bwd_weights) step
    # aside for inf/NaN: forcing them raises, the default runs the exact form.
    case = CASES["lenet_c3"]
    data = oracle(case)
    stride, pads, dilation, out_hw = core_args(case)
    w = data["w"].copy()
    w[0, 0, 0, 0] = np.inf
    x = data["x"].copy()
    x[0, 0, 0, 0] = np.nan
    for name in ("implicit_gemm", "tapwise_gemm"):
        with pytest.raises(ValueError, match=f"'{name}' does not apply"):
            _core.conv2d_bwd_data(data["dy"], w, x.shape, stride, pads, dilation, algorithm=name)
    with pytest.raises(ValueError, match="'implicit_dot' does not apply"):
        _core.conv2d_bwd_weights(data["dy"], x, w.shape, stride, pads, dilation, False, algorithm="implicit_dot")
    exact = _core.conv2d_bwd_data(data["dy"], w, x.shape, stride, pads, dilation, algorithm="col2im_gemm")
    np.testing.assert_array_equal(_core.conv2d_bwd_data(data["dy"], w, x.shape, stride, pads, dilation), exact)


def test_direct_phases_non_finite(rng):
    # direct_phases multiplies the weights by dy's zero frame: an inf weight makes it decline
    # (the default then runs col2im_gemm, the exact form). inf/NaN in dy are true terms of the
    # gradient: they reach exactly the dx elements they reach in col2im_gemm.
    case = CASES["phases_p1_kv2"]
    data = oracle(case)
    stride, pads, dilation, _ = core_args(case)
    if "direct_phases" not in _core.conv2d_algorithms(data["x"].shape, data["w"].shape, stride, pads, dilation)["bwd_data"]:
        pytest.skip("direct_phases is not compiled for this ISA")
    w = data["w"].copy()
    w[3, 5, 1, 2] = np.inf
    with pytest.raises(ValueError, match="'direct_phases' does not apply"):
        _core.conv2d_bwd_data(data["dy"], w, data["x"].shape, stride, pads, dilation, algorithm="direct_phases")
    exact = _core.conv2d_bwd_data(data["dy"], w, data["x"].shape, stride, pads, dilation, algorithm="col2im_gemm")
    np.testing.assert_array_equal(_core.conv2d_bwd_data(data["dy"], w, data["x"].shape, stride, pads, dilation), exact)
    dy = data["dy"].copy()
    dy[0, 2, 1, 3], dy[0, 7, 4, 0] = np.nan, -np.inf
    got = _core.conv2d_bwd_data(dy, data["w"], data["x"].shape, stride, pads, dilation, algorithm="direct_phases")
    want = _core.conv2d_bwd_data(dy, data["w"], data["x"].shape, stride, pads, dilation, algorithm="col2im_gemm")
    assert np.isnan(got).any() and np.isinf(got).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4 * np.abs(want[finite]).max())


def test_force_conv2d_algorithm_context(rng):
    case = CASES["lenet_c3"]
    data = oracle(case)
    args = conv_args(case)
    with F.force_conv2d_algorithm(fwd="im2col_gemm", bwd_weights="im2col_dot"):
        with F.force_conv2d_algorithm(fwd="implicit_gemm"):  # inner wins, outer bwd_weights stays
            assert F._forced_conv_algo == {"fwd": "implicit_gemm", "bwd_weights": "im2col_dot"}
        y = F.conv2d(data["x"], data["w"], data["b"], **args)
        with F.force_conv2d_algorithm(bwd_data="nonexistent"):
            with pytest.raises(ValueError, match="no algorithm 'nonexistent'"):
                F.conv2d_backward(data["dy"], data["x"], data["w"], **args)
    assert F._forced_conv_algo == {}
    stride, pads, dilation, _ = core_args(case)
    want = _core.conv2d_fwd(data["x"], data["w"], data["b"], stride, pads, dilation, algorithm="im2col_gemm")
    np.testing.assert_array_equal(y, want)
    with pytest.raises(TypeError, match="fwd must be an algorithm name"):
        with F.force_conv2d_algorithm(fwd=3):
            pass


def test_conv_algo_environment_variable():
    import subprocess
    import sys

    code = ("from convforge import functional as F; print(sorted(F._forced_conv_algo.items()))")
    env = dict(__import__("os").environ, CONVFORGE_CONV_ALGO="fwd:im2col_gemm, bwd_data:col2im_gemm")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[('bwd_data', 'col2im_gemm'), ('fwd', 'im2col_gemm')]"
    env["CONVFORGE_CONV_ALGO"] = "forward=im2col_gemm"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "CONVFORGE_CONV_ALGO must be" in r.stderr
    env["CONVFORGE_CONV_ALGO"] = "fwd:im2col_gem"  # a misspelt name fails the import too
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "conv2d fwd has no algorithm 'im2col_gem'" in r.stderr


def test_conv2d_algorithms_reports_the_default(rng):
    assert F.conv2d_algorithms((2, 3, 17, 19), (5, 3, 3, 3), stride=3, padding=1) == {
        "fwd": ("im2col_gemm",), "bwd_data": ("col2im_gemm",), "bwd_weights": ("im2col_dot",)}
    # float64 runs the portable list whatever the ISA
    assert "direct" not in F.conv2d_algorithms((2, 3, 13, 30), (32, 3, 3, 3), padding="same", dtype=np.float64)["fwd"]
    with pytest.raises(TypeError, match="x_shape must be a tuple of 4 ints"):
        F.conv2d_algorithms((2, 3, 13), (32, 3, 3, 3))
    with pytest.raises(ValueError, match="channels"):
        F.conv2d_algorithms((2, 4, 13, 13), (32, 3, 3, 3))


@pytest.mark.parametrize("case", [c for c in TEST_CONV if c.name in ("lenet_c1", "w17", "stride3", "dilation_hw", "pointwise", "c25_rows")], ids=lambda c: c.id)
def test_small_integers_are_exact(case, isa, rng):
    # Sums of products of integers in [-4, 4] stay far below 2**24: float32 is exact, so any
    # difference from the oracle is a wrong index, not rounding.
    x, w, b = make_case(case, np.float32, rng, integers=True)
    np.testing.assert_array_equal(F.conv2d(x, w, b, **conv_args(case)), R.conv2d(x, w, b, **conv_args(case)))
    dy = np.rint(F.conv2d(x, w, None, **conv_args(case)) / 8).astype(np.float32)
    got = F.conv2d_backward(dy, x, w, **conv_args(case))
    want = R.conv2d_backward(dy, x, w, **conv_args(case))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


def test_need_flags_skip_work(rng):
    x, w, _ = make_case(TEST_CONV[0], np.float32, rng)
    dy = np.ones((3, 6, 28, 28), np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, padding=2, need_input_grad=False, need_bias_grad=False)
    assert dx is None and db is None and dw.shape == w.shape


@pytest.mark.parametrize("layout", ["fortran", "reversed", "strided", "broadcast"])
def test_non_contiguous_inputs_equal_contiguous(layout, rng):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    if layout == "fortran":
        xv, wv = np.asfortranarray(x), np.asfortranarray(w)
    elif layout == "reversed":
        xv, wv = x[:, :, ::-1, ::-1], w[::-1]
    elif layout == "strided":
        big = rng.standard_normal((2, 6, 18, 11)).astype(np.float32)
        xv, wv = big[:, ::2, ::2, :], w
    else:
        xv, wv = np.broadcast_to(x[:1], x.shape), w
    want = F.conv2d(np.ascontiguousarray(xv), np.ascontiguousarray(wv), padding=1)
    np.testing.assert_array_equal(F.conv2d(xv, wv, padding=1), want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    got = F.conv2d_backward(dy[..., ::1], xv, wv, padding=1)
    ref = F.conv2d_backward(dy, np.ascontiguousarray(xv), np.ascontiguousarray(wv), padding=1)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_inputs_are_not_modified(rng):
    x, w, b = make_case(TEST_CONV[1], np.float32, rng)
    copies = [a.copy() for a in (x, w, b)]
    y = F.conv2d(x, w, b)
    F.conv2d_backward(np.ones_like(y), x, w)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)




GRAD_CASES = [c for c in TEST_CONV if c.name in ("w3", "w7", "c25_rows", "stride2_same", "dilation_hw", "asym_pad", "big_pad")]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
def test_gradients_numerically(case, rng):
    x, w, b = make_case(case, np.float64, rng)
    args = conv_args(case)
    y = F.conv2d(x, w, b, **args)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(dy, x, w, **args)

    def forward():
        return F.conv2d(x, w, b, **args)

    for analytic, param in ((dx, x), (dw, w), (db, b)):
        numeric = numerical_grad(lambda: np.sum(forward() * dy), param)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


def test_gradient_check_detects_a_wrong_gradient(rng):
    # The check above must be able to fail: a gradient off by one tap, or by a small amount
    # in one element, is caught.
    case = GRAD_CASES[0]
    x, w, b = make_case(case, np.float64, rng)
    args = conv_args(case)
    dy = rng.standard_normal(F.conv2d(x, w, b, **args).shape)
    _, dw, _ = F.conv2d_backward(dy, x, w, **args)
    numeric = numerical_grad(lambda: np.sum(F.conv2d(x, w, b, **args) * dy), w)
    for broken in (np.flip(dw, axis=(2, 3)), dw + np.where(np.arange(dw.size).reshape(dw.shape) == 5, 1e-4, 0)):
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(broken, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.id)
def test_fused_relu_equals_relu_after_conv(case, dtype, isa, rng):
    # The forward's relu post-op (what Conv2D(activation='relu') uses in training) must give the
    # bits of conv2d then relu, on every path (direct store, scattered rows, im2col), NaN kept,
    # no -0.0 out, and write every element (the output starts as +inf).
    x, w, b = make_case(case, dtype, rng)
    x.flat[0] = np.nan  # reaches the outputs whose windows read it
    b[0] = -1e3  # filter 0: negative outputs for relu to clear
    stride, pads, dilation, out_hw = core_args(case)
    plain = _core.conv2d_fwd(x, w, b, stride, pads, dilation)
    assert (plain < 0).any()
    want = F.relu(plain)
    out = np.full((case.n, case.k, *out_hw), np.inf, dtype=dtype)
    got = _core.conv2d_fwd(x, w, b, stride, pads, dilation, out=out, relu=True)
    assert got is out
    np.testing.assert_array_equal(got, want)
    assert not np.signbit(got[np.isfinite(got)]).any()


# ---- one road: functional's per-pass forms with out= and a plan built once ------------------


@pytest.mark.parametrize("case", TEST_CONV, ids=lambda c: c.name)
def test_cpp_output_size_equals_the_python_plan(case):
    # Python computes the output size once (the plan); the bindings compute it again to check
    # every argument. They must agree, or a layer's buffers would be refused.
    plan = _params.conv_params((case.h, case.w), (case.r, case.s), case.stride, case.padding, case.dilation)
    x = np.zeros((1, case.c, case.h, case.w), np.float32)
    w = np.zeros((case.k, case.c, case.r, case.s), np.float32)
    y = _core.conv2d_fwd(x, w, None, plan.stride, plan.pads, plan.dilation)
    assert y.shape[2:] == plan.out_hw
    assert F.conv2d(x, w, None, **conv_args(case), _plan=plan).shape[2:] == plan.out_hw


def test_per_pass_forms_with_out_equal_conv2d_backward(rng):
    case = CASES["w3"]
    x, w, b = make_case(case, np.float32, rng)
    args = conv_args(case)
    plan = core_args(case)
    y = F.conv2d(x, w, b, **args)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = F.conv2d_backward(dy, x, w, **args)
    bufs = [np.full(a.shape, np.nan, np.float32) for a in (y, dx, dw, db)]
    assert F.conv2d(x, w, b, **args, out=bufs[0]) is bufs[0]
    assert F.conv2d_backward_data(dy, w, x.shape, **args, out=bufs[1]) is bufs[1]
    got_w, got_b = F.conv2d_backward_weights(dy, x, w.shape, **args, out_w=bufs[2], out_b=bufs[3], _plan=plan)
    assert got_w is bufs[2] and got_b is bufs[3]
    for got, want in zip(bufs, (y, dx, dw, db)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(F.conv2d(x, w, b, **args, relu=True), F.relu(y))
    assert F.conv2d_backward_weights(dy, x, w.shape, **args, need_bias_grad=False)[1] is None


@pytest.mark.parametrize("bad, exc, match", [
    (lambda y: y.astype(np.float64), ValueError, "out must be a float32 array of shape"),
    (lambda y: y[:, :, :-1], ValueError, "out must be a float32 array of shape"),
    (lambda y: np.asfortranarray(y), ValueError, "out must be C-contiguous"),
    (lambda y: y.tolist(), TypeError, "out must be a numpy.ndarray"),
])
def test_functional_out_is_checked(bad, exc, match, rng):
    x, w, b = make_case(CASES["w3"], np.float32, rng)
    y = F.conv2d(x, w, b, padding="same")
    with pytest.raises(exc, match=match):
        F.conv2d(x, w, b, padding="same", out=bad(y.copy()))
    ro = np.zeros_like(y)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        F.conv2d(x, w, b, padding="same", out=ro)
    with pytest.raises(ValueError, match="out must not share memory with x"):
        F.conv2d(x, np.zeros((x.shape[1], x.shape[1], 1, 1), np.float32), out=x)  # 1x1, C == K
    with pytest.raises(ValueError, match="out must not share memory with dy"):
        F.conv2d_backward_data(y, w, x.shape, padding="same", out=y)


def test_dense_pool_relu_per_pass_forms_with_out(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 3)).astype(np.float32)
    dx, dw, db = F.dense_backward(dy, x, w)
    o = [np.empty_like(a) for a in (dx, dw, db)]
    assert F.dense_backward_data(dy, w, out=o[0]) is o[0]
    assert F.dense_backward_weights(dy, x, out_w=o[1], out_b=o[2])[0] is o[1]
    for got, want in zip(o, (dx, dw, db)):
        np.testing.assert_array_equal(got, want)
    xp = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, idx = F.max_pool2d(xp, 2, return_indices=True)
    yo, io = np.empty_like(y), np.empty_like(idx)
    got_y, got_i = F.max_pool2d(xp, 2, return_indices=True, out=yo, out_indices=io)
    assert got_y is yo and got_i is io
    np.testing.assert_array_equal(yo, y)
    np.testing.assert_array_equal(io, idx)
    g = F.relu(xp)
    dxp = np.empty_like(xp)
    assert F.max_pool2d_backward(y, idx, xp.shape, out=dxp, gate=g) is dxp
    np.testing.assert_array_equal(dxp, F.relu_backward(F.max_pool2d_backward(y, idx, xp.shape), g))
    r = np.empty_like(xp)
    assert F.relu_backward(xp, g, out=r) is r
    with pytest.raises(ValueError, match="out_indices is given but return_indices is False"):
        F.max_pool2d(xp, 2, out_indices=io)


def test_need_weight_grad_false_computes_dx_alone(rng, monkeypatch):
    case = CASES["lenet_c3"]
    x, w, _ = make_case(case, np.float32, rng)
    dy = rng.standard_normal((case.n, case.k, *core_args(case)[3])).astype(np.float32)
    dx_all, _, _ = F.conv2d_backward(dy, x, w, **conv_args(case))
    monkeypatch.setattr(F, "conv2d_backward_weights", lambda *a, **k: pytest.fail("weight gradient computed"))
    dx, dw, db = F.conv2d_backward(dy, x, w, **conv_args(case), need_weight_grad=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, dx_all)
    with pytest.raises(TypeError, match="need_weight_grad must be True or False"):
        F.conv2d_backward(dy, x, w, **conv_args(case), need_weight_grad=1)


# One or two images give the direct form fewer bands than threads: it then splits the output
# channels into groups (of one or two vectors) and, if still short, thins the bands. Every item
# shape must give the same bits, equal to the oracle: 1-4 threads take different splits.
FEW_IMAGES = [
    ((1, 32, 14, 14), (32, 32, 3, 3), 1, 1),  # one band: groups of one vector
    ((1, 64, 7, 7), (64, 64, 3, 3), 1, 1),  # groups of two vectors
    ((1, 48, 9, 9), (48, 48, 3, 3), 1, 1),  # three vectors: a group of two and one of one
    ((2, 16, 28, 28), (16, 16, 3, 3), 1, 1),  # one vector: thinner bands
    ((1, 32, 28, 28), (64, 32, 3, 3), 2, 1),  # stride 2
    ((1, 16, 20, 20), (32, 16, 5, 5), 1, 0),  # 5x5, no padding
    # The filter pack (pack_filters_direct): 16 x 16 transposes of taps, the taps past the last
    # whole block (K = 3*3*3 = 27: 16 + 11) in a scalar loop; from 256k weights the pack's tap
    # blocks are shared by the threads (here 128 * 9 * 256 = 295k, with a tail of 0 taps: and
    # 131 channels, 1179 taps, a tail of 11).
    ((1, 3, 12, 12), (32, 3, 3, 3), 1, 1),
    ((1, 128, 5, 5), (256, 128, 3, 3), 1, 1),
    ((1, 131, 4, 4), (256, 131, 3, 3), 1, 1),
]


# The pixels form (few filters or few taps) has one work item per image; fewer images than
# threads split each image into bands of output rows, each band filling only its rows of the
# padded frame. Every split must give the same bits, equal to the oracle.
PIXELS_SPLITS = [
    ((1, 1, 112, 112), (16, 1, 3, 3), 1, 1),  # a one-channel stem: two groups of 8 filters
    ((1, 3, 40, 37), (20, 3, 3, 3), 1, 1),  # 27 taps, groups of 7 + 7 + 6, a ragged last row vector
    ((3, 1, 60, 61), (16, 1, 3, 3), 1, 0),  # three images on four threads: two bands each
    ((1, 1, 64, 64), (6, 1, 5, 5), 1, 2),  # LeNet's C1 filters, more rows
]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad,algorithm",
                         [(*c, "direct") for c in FEW_IMAGES] + [(*c, "pixels") for c in PIXELS_SPLITS])
def test_few_images_same_bits_on_any_thread_count(x_shape, w_shape, stride, pad, algorithm, isa, threads, rng):
    args = ((stride, stride), (pad,) * 4, (1, 1))
    if algorithm not in _core.conv2d_algorithms(x_shape, w_shape, *args)["fwd"]:
        pytest.skip(f"{algorithm} is not compiled for {isa}")
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    results = []
    # Most threads first: a run leaves its packed filters in the workspace the next one reuses,
    # so a threaded pack that skipped a tap would be hidden behind a correct one-thread run.
    for n in (4, 3, 2, 1):
        convforge.set_num_threads(n)
        results.append(_core.conv2d_fwd(x, w, b, *args, None, True, algorithm))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    want = np.maximum(R.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                stride=stride, padding=pad), 0)
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


# Strided backward data by stride phases splits dx into bands of phase rows per image, thinner
# where there are fewer images than threads: every split must give the same bits.
PHASES_SPLITS = [
    ((1, 16, 28, 28), (32, 16, 3, 3), 2, "same"),  # one image: bands thinned to the threads
    ((3, 32, 14, 14), (64, 32, 3, 3), 2, 1),
    ((2, 16, 40, 33), (8, 16, 5, 5), 2, 2),  # two bands per image (> 512 pixels)
]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", PHASES_SPLITS)
def test_direct_phases_same_bits_on_any_thread_count(x_shape, w_shape, stride, pad, isa, threads, rng):
    args = dict(stride=stride, padding=pad)
    if "direct_phases" not in F.conv2d_algorithms(x_shape, w_shape, **args)["bwd_data"]:
        pytest.skip(f"direct_phases is not compiled for {isa}")
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal(F.conv2d(x, w, **args).shape).astype(np.float32)
    results = []
    with F.force_conv2d_algorithm(bwd_data="direct_phases"):
        for n in (4, 3, 2, 1):
            convforge.set_num_threads(n)
            results.append(F.conv2d_backward_data(dy, w, x_shape, **args))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    want = R.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **args)[0]
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


# The direct form on paddings of every kind: on some sides only, wider than the kernel's reach
# (no output free of padding), dilated, strided; forward, and backward data as a forward pass
# over dy (whose paddings are negative, a crop, where the forward padding is wider than the
# kernel's reach). Same bits on any thread count.
DIRECT_REGIONS = [
    ((2, 16, 28, 28), (32, 16, 3, 3), 2, ((0, 1), (0, 1)), 1),  # Keras 'same', stride 2: right and bottom
    ((1, 16, 14, 14), (64, 16, 3, 3), 2, 1, 1),  # PyTorch's stride-2 padding: all four sides
    ((3, 8, 13, 17), (16, 8, 3, 3), 1, ((2, 0), (0, 3)), 1),  # top rows and a wide right strip
    ((2, 16, 9, 11), (16, 16, 3, 3), 1, ((0, 0), (3, 0)), (2, 1)),  # dilated rows, left strip only
    ((1, 4, 5, 6), (16, 4, 7, 7), 1, 3, 1),  # no interior at all: every output reads the padding
    ((2, 4, 4, 30), (32, 4, 5, 5), 1, 2, 1),  # no interior rows
    ((1, 4, 30, 3), (16, 4, 5, 5), 1, 2, 1),  # no interior column
    ((2, 16, 9, 9), (16, 16, 3, 3), 1, 3, 1),  # backward data: a crop of dy
    ((2, 3, 40, 37), (16, 3, 5, 5), 2, ((1, 2), (2, 1)), 1),  # 5 wide, stride 2, two bands
]


@pytest.mark.parametrize("x_shape,w_shape,stride,pad,dilation", DIRECT_REGIONS)
def test_direct_padding_regions(x_shape, w_shape, stride, pad, dilation, isa, rng):
    args = dict(stride=stride, padding=pad, dilation=dilation)
    algos = F.conv2d_algorithms(x_shape, w_shape, **args)
    if "direct" not in algos["fwd"]:
        pytest.skip(f"direct is not compiled for {isa}")
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = R.conv2d(x64, w64, b.astype(np.float64), **args)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    want_dx = R.conv2d_backward(dy.astype(np.float64), x64, w64, **args)[0]
    for n in (3, 2, 1):
        convforge.set_num_threads(n)
        with F.force_conv2d_algorithm(fwd="direct"):
            y = F.conv2d(x, w, b, **args)
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        if n == 3:
            first = y
        np.testing.assert_array_equal(y, first)
        if "direct" in algos["bwd_data"]:
            with F.force_conv2d_algorithm(bwd_data="direct"):
                dx = F.conv2d_backward_data(dy, w, x_shape, **args)
            np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-4 * np.abs(want_dx).max())
