"""Build info, ISA selection, threads: determinism, concurrency, fork safety."""

from __future__ import annotations

import ast
import concurrent.futures
import multiprocessing
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from shapes import TEST_CONV

import convforge
from convforge import _core
from convforge import functional as F

PACKAGE_DIR = pathlib.Path(convforge.__file__).parent


def test_build_info_fields():
    info = convforge.build_info()
    assert info["version"] == convforge.__version__
    assert isinstance(info["openmp"], bool) and isinstance(info["compiler"], str) and info["compiler"]
    assert info["num_threads"] == convforge.get_num_threads() >= 1
    assert info["isa_detected"] in info["isa_compiled"]
    assert info["isa"] in ("ref", "avx2", "avx512")
    ops = {"conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weights", "dense_fwd", "dense_bwd_data", "dense_bwd_weights",
           "maxpool2d_fwd", "maxpool2d_bwd", "relu_fwd", "relu_bwd", "softmax_fwd", "gelu_fwd", "gelu_bwd"}
    ops |= {"batchnorm_fwd_training", "batchnorm_fwd_inference", "batchnorm_bwd", "global_avg_pool2d_fwd",
            "global_avg_pool2d_bwd", "global_max_pool2d_fwd", "global_max_pool2d_bwd", "depthwise_conv2d_fwd",
            "depthwise_conv2d_bwd_data", "depthwise_conv2d_bwd_weights"}
    assert set(info["kernels"]) == ops
    for op, by_dtype in info["kernels"].items():
        assert by_dtype["float64"] == f"{op}__ref"  # float64 is for gradient checks: portable kernels only
        assert by_dtype["float32"].startswith(op + "__")


def test_version_matches_pyproject():
    pyproject = PACKAGE_DIR.parents[1] / "pyproject.toml"
    if not pyproject.exists():
        from importlib.metadata import version

        assert convforge.__version__ == version("convforge")
    else:
        import tomllib

        assert convforge.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]


def test_stub_lists_exactly_the_extension():
    tree = ast.parse((PACKAGE_DIR / "_core.pyi").read_text())
    stub = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    stub |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target] if isinstance(t, ast.Name)}
    stub -= {n for n in stub if n.startswith("_") and not n.startswith("__")} - {
        n for n in dir(_core) if n.startswith("_") and not n.startswith("__")
    }
    public = {n for n in dir(_core) if not (n.startswith("__") and n.endswith("__"))} | {"__version__"}
    assert stub == public


def test_isa_cap_selects_kernels(isa):
    assert convforge.build_info()["kernels"]["conv2d_fwd"]["float32"] == f"conv2d_fwd__{isa}"


def _run(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_env_var_caps_isa():
    r = _run("import convforge; print(convforge.build_info()['isa'])", CONVFORGE_MAX_ISA="ref")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ref"
    r = _run("import convforge", CONVFORGE_MAX_ISA="sse9")
    assert r.returncode != 0 and "CONVFORGE_MAX_ISA must be one of ref, avx2, avx512; got 'sse9'" in r.stderr
    assert "pip install" not in r.stderr  # the extension is installed: no advice to install it


def test_env_var_sets_default_threads():
    r = _run("import convforge; print(convforge.get_num_threads())", CONVFORGE_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    expected = "3" if convforge.build_info()["openmp"] else "1"
    assert r.stdout.strip() == expected


def _all_ops(seed):
    rng = np.random.default_rng(seed)
    out = []
    for case in (TEST_CONV[0].batch(9), TEST_CONV[1].batch(17), TEST_CONV[-1]):
        x = rng.standard_normal((case.n, case.c, case.h, case.w)).astype(np.float32)
        w = rng.standard_normal((case.k, case.c, case.r, case.s)).astype(np.float32)
        y = F.conv2d(x, w, None, case.stride, case.padding, case.dilation)
        out.append(y)
        out.extend(r for r in F.conv2d_backward(np.cos(y), x, w, case.stride, case.padding, case.dilation))
    x = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    out += [y, i, F.max_pool2d_backward(y, i, x.shape), F.relu(x), F.relu_backward(x, np.sin(x))]
    return out


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_bit_identical_across_threads_and_runs(n_threads, threads, isa):
    convforge.set_num_threads(1)
    want = _all_ops(0)
    convforge.set_num_threads(n_threads)
    for _ in range(2):
        for got, ref in zip(_all_ops(0), want):
            assert got.tobytes() == ref.tobytes()


def test_concurrent_python_threads_match_serial():
    seeds = list(range(6))
    serial = [_all_ops(s) for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(_all_ops, seeds))
    for a, b in zip(serial, parallel):
        for got, ref in zip(a, b):
            assert got.tobytes() == ref.tobytes()


def _child(queue):
    try:
        info = convforge.build_info()
        y = _all_ops(1)
        queue.put((info["forked_child"], info["num_threads"], [a.tobytes() for a in y]))
    except Exception as err:  # pragma: no cover - reported to the parent
        queue.put(repr(err))


# Python >= 3.12 warns that forking a multi-threaded process is risky; that risk is the test.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_after_kernels_ran_does_not_hang(threads):
    convforge.set_num_threads(2)
    want = [a.tobytes() for a in _all_ops(1)]  # the parent's thread pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    try:
        # Drain before join: a child blocks on exit until its queued data has been read.
        result = queue.get(timeout=120)
    except Exception:
        proc.kill()
        pytest.fail("the forked child hung in a kernel (no result within 120 s)")
    proc.join(timeout=30)
    assert not isinstance(result, str), result
    forked, n_threads, got = result
    assert forked is True and n_threads == 1
    assert got == want


def test_an_item_that_throws_raises_on_the_caller():
    # An exception from one item of a parallel loop (a std::bad_alloc in a kernel's scratch) on any
    # of its threads, in an OpenMP region or in a plan's thread team, reaches the caller as an error;
    # escaping a region or a team's waiting thread, it ended the process (std::terminate). In a
    # child process, so that such a regression fails this test and not the whole run. Items 0-5
    # fall to the calling thread, 6-11 to the other (static schedule); without OpenMP all run here.
    code = """
import convforge
from convforge import _core
convforge.set_num_threads(2)
for in_team in (False, True):
    for failing in (0, 5, 6, 11):
        try:
            _core._parallel_for_failing(2, 12, failing, in_team)
            print(in_team, failing, "no error")
        except RuntimeError as e:
            print(in_team, failing, e)
    _core._parallel_for_failing(2, 12, -1, in_team)  # the next loop runs
print("done")
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    expected = [f"{t} {i} item {i} failed" for t in (False, True) for i in (0, 5, 6, 11)] + ["done"]
    assert r.stdout.split("\n")[:-1] == expected


def test_workspace_is_reused():
    x = np.ones((8, 6, 14, 14), np.float32)
    w = np.ones((16, 6, 5, 5), np.float32)
    F.conv2d_backward(F.conv2d(x, w), x, w)
    held = _core._workspace_bytes()
    for _ in range(5):
        F.conv2d_backward(F.conv2d(x, w), x, w)
    assert _core._workspace_bytes() == held > 0


# ---- first_non_finite: the trainer's one-call check of a step's gradients and weights -------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 1000])
def test_first_non_finite_finds_every_position(dtype, n):
    # Lengths around the 16 running sums of lane_sum, each bad value at each position (first,
    # last, in the tail) of the second array; huge and subnormal finite values are finite.
    big = np.finfo(dtype).max
    ok = [np.array([big, -big, np.finfo(dtype).smallest_subnormal, 0.0], dtype), np.ones(n, dtype)]
    assert _core.first_non_finite(ok) == -1
    for bad in (np.nan, np.inf, -np.inf):
        for pos in sorted({0, n // 2, n - 1}):
            arrays = [ok[0], np.ones(n, dtype), np.full(3, np.nan, dtype)]
            arrays[1][pos] = bad
            assert _core.first_non_finite(arrays) == 1, (bad, pos)


def test_first_non_finite_edge_cases():
    assert _core.first_non_finite([]) == -1
    assert _core.first_non_finite((np.empty(0, np.float32), np.zeros((2, 3), np.float64))) == -1
    assert _core.first_non_finite([np.zeros((4, 4), np.float32), np.full((2, 2), np.inf, np.float32)]) == 1


@pytest.mark.parametrize(
    "arrays, error, match",
    [
        ([np.zeros(3, np.float32), [1.0, 2.0]], TypeError, r"arrays\[1\] must be a NumPy array, got list"),
        ([np.zeros(3, np.int64)], TypeError, r"arrays\[0\] must be float32 or float64, got int64"),
        ([np.zeros((4, 4), np.float32)[:, ::2]], ValueError, r"arrays\[0\] must be C-contiguous"),
    ],
)
def test_first_non_finite_refuses_what_it_cannot_scan(arrays, error, match):
    with pytest.raises(error, match=match):
        _core.first_non_finite(arrays)
    with pytest.raises(TypeError):
        _core.first_non_finite(np.zeros(3, np.float32))  # an array is not a sequence of arrays


def test_functional_first_non_finite_checks_what_the_kernel_cannot_scan():
    # fit's road to the scan: C-contiguous float arrays in one kernel call, anything else (a
    # strided view, float16) with NumPy, same answer.
    strided = np.zeros((4, 4), np.float32)[:, ::2]
    half = np.zeros(5, np.float16)
    assert F.first_non_finite([strided, half]) == -1
    strided[2, 1] = np.nan
    assert F.first_non_finite([np.ones(3, np.float32), strided]) == 1
    half[4] = np.inf
    assert F.first_non_finite([np.ones(3, np.float32), half]) == 1
    assert F.first_non_finite([np.ones(3, np.float32), np.array([1.0, -np.inf])]) == 1


@pytest.mark.parametrize("bad", [complex(1, np.inf), complex(0, np.nan), complex(np.inf, 0)])
def test_functional_first_non_finite_sees_a_complex_array_s_imaginary_part(bad):
    # NumPy's min/max of a complex array, then math.isfinite, look at the real parts only: an
    # inf or NaN imaginary part was reported as finite (-1).
    z = np.ones(4, np.complex64)
    assert F.first_non_finite([np.ones(3, np.float32), z]) == -1
    z[2] = bad
    assert F.first_non_finite([np.ones(3, np.float32), z]) == 1
