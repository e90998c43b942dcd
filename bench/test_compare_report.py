"""compare.py's report logic, without timing anything: the algorithm column, the malloc
setting it records, and issue 12's targets against tuned PyTorch (evaluated only in a
tuned run). Runs in the bench smoke (``pytest bench/ --benchmark-disable``)."""

from __future__ import annotations

import argparse
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cfbench  # noqa: E402
import compare  # noqa: E402

TUNED = dict(compare.TUNED_MALLOC)


def test_malloc_setting_reads_both_variables():
    assert compare.malloc_setting({}) == "default"
    assert compare.malloc_setting(TUNED) == "tuned"
    assert compare.malloc_setting({"MALLOC_MMAP_THRESHOLD_": TUNED["MALLOC_MMAP_THRESHOLD_"]}).startswith("other:")
    assert compare.malloc_setting(dict(TUNED, MALLOC_TRIM_THRESHOLD_="1")).startswith("other:")


def _spec(shape: str, pas: str):
    return next(s for s in cfbench.conv_specs() if s.shape == shape and s.pas == pas)


@pytest.mark.parametrize("pas", cfbench.CONV_PASSES)
def test_conv_algorithm_is_the_default_choice_or_the_forced_one(pas):
    spec = _spec("resnet", pas)
    case = spec.source
    names = cfbench.F.conv2d_algorithms((case.n, case.c, case.h, case.w), (case.k, case.c, case.r, case.s),
                                        stride=case.stride, padding=case.padding, dilation=case.dilation)[pas]
    assert cfbench.conv_algorithm(spec) == names[0]
    with cfbench.F.force_conv2d_algorithm(**{pas: names[-1]}):
        assert cfbench.conv_algorithm(spec) == f"{names[-1]} (forced)"
    assert cfbench.conv_algorithm(spec) == names[0]


def _row(index, pas, shape, threads, cf_ms, torch_ms, algorithm="direct"):
    return {"index": index, "op": "conv", "pass": pas, "shape": shape, "dims": shape, "threads": threads,
            "work": 1e9, "unit": "GFLOP/s", "lenet": False, "working_set": 1, "kernel": "k",
            "algorithm": algorithm, "ms": {"convforge": cf_ms, "torch": torch_ms}, "min_ms": {}}


def _report(malloc: str, rows: list[dict], threads=(1, 2)) -> str:
    args = argparse.Namespace(quick=True, repeats=3, min_sample_ms=5.0, command="python bench/compare.py --test")
    data = {"rows": rows, "peak": {t: 100.0 * t for t in threads}, "copy": {}, "blas": "test", "blas_config": "",
            "malloc": malloc}
    return compare.build_report(args, data, list(threads), {})[1]


def _rows():
    # resnet fwd at 2 threads: 1.2x (misses 1.3x); vgg fwd: 1.4x; a bwd_weights row at 0.8x (misses 0.9x).
    return [_row(0, "fwd", "resnet", 1, 10.0, 15.0, "winograd_f4x3"), _row(0, "fwd", "resnet", 2, 10.0, 12.0),
            _row(1, "fwd", "vgg", 1, 10.0, 14.0), _row(1, "fwd", "vgg", 2, 10.0, 14.0),
            _row(2, "bwd_weights", "vgg", 1, 10.0, 8.0, "outer"), _row(2, "bwd_weights", "vgg", 2, 10.0, 25.0)]


def test_tuned_report_has_algorithm_column_and_issue12_targets():
    md = _report("tuned", _rows())
    assert "| op | pass | shape | T | algorithm |" in md
    assert "| conv | fwd | resnet | 1 | winograd_f4x3 |" in md
    assert "| conv | bwd_weights | vgg | 1 | outer |" in md
    assert "**tuned** (issue 12)" in md
    assert "`1.3×tuned torch@2T` (issue 12: ResNet/VGG forward >= 1.3x tuned PyTorch at 2 threads): 1/2 PASS; " \
           "FAIL: conv fwd resnet T2" in md
    assert "`0.9×tuned torch` (issue 12: every conv pass row >= 0.9x tuned PyTorch): 5/6 PASS; " \
           "FAIL: conv bwd_weights vgg T1" in md
    # geomeans: T1 (1.5*1.4*0.8)^(1/3) = 1.19 (FAIL), T2 (1.2*1.4*2.5)^(1/3) = 1.61 (PASS)
    assert "1/2 PASS; FAIL: conv T1 geomean 1.19×" in md
    assert "| conv fwd resnet T2 | 1.3×tuned torch@2T | 1.20× tuned PyTorch: needs 1.08× faster" in md


def test_untuned_report_does_not_claim_issue12_targets():
    md = _report("default", _rows())
    assert "| algorithm |" in md
    assert "tuned torch" not in md
    assert "issue 12's targets against tuned PyTorch: not evaluated, this run's malloc: default" in md


def test_settle_waits_for_a_spinning_thread_and_warm_up_calls_enough():
    import threading
    import time

    if cfbench._other_threads_cpu_ns() is None:
        pytest.skip("no per-thread CPU times in /proc on this system (settle sleeps a fixed time there)")
    stop = time.perf_counter() + 0.2
    spinner = threading.Thread(target=lambda: [None for _ in iter(lambda: time.perf_counter() >= stop, True)])
    spinner.start()
    try:
        waited = cfbench.settle(max_s=1.0)
    finally:
        spinner.join()
    assert waited >= 0.1  # the spinner ran 0.2 s from before the call: settle saw it busy
    assert cfbench.settle(max_s=1.0) < 0.5  # nothing else running now: one or a few windows
    calls = []
    fastest = cfbench.warm_up(lambda: calls.append(1), min_calls=3, min_s=0.0)
    assert len(calls) == 3 and 0 <= fastest < 0.1
