"""Memory stays flat: repeated kernel calls do not grow the process, workspaces are reused.

Bounds (docs/RELIABILITY.md):

* 100,000 kernel calls (10,000 of each: conv2d forward twice, both backward passes, max-pool
  forward twice and backward, ReLU forward, in place and backward, plus error paths that throw
  after allocating) on small shapes, after a warm-up, grow the resident set by less than
  RSS_BOUND (4 MiB). A kernel that leaks 420 bytes or more per call fails the test; every
  output is at least 1 KiB, so a leaked output buffer adds >= 10 MiB. Smaller C++ leaks are
  LeakSanitizer's job (scripts/sanitize.sh).
* The same calls leave at most BLOCKS_BOUND more live Python objects (sys.getallocatedblocks):
  one leaked object (an array, a reference to an input) per call of one kernel is 10,000.
* _core._workspace_bytes() is constant across repeated same-shape calls, and a finished Python
  thread gives its workspace back.

The memory a short training run holds is checked once the layer API lands.
"""

from __future__ import annotations

import gc
import os
import sys
import threading

import numpy as np
import pytest

import convforge
from convforge import _core
from convforge import functional as F

PAGE = os.sysconf("SC_PAGE_SIZE")
CALLS = 100_000
RSS_BOUND = 4 << 20
BLOCKS_BOUND = 1_000


def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def _under_asan() -> bool:
    with open("/proc/self/maps") as maps:
        return "libasan" in maps.read()


pytestmark = pytest.mark.skipif(_under_asan(), reason="ASan's quarantine holds freed memory on purpose")

_rng = np.random.default_rng(7)
X = _rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
W = _rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
B = _rng.standard_normal(8).astype(np.float32)


def one_round() -> int:
    """Ten kernel calls (plus two refused ones) on fresh inputs; returns the number of calls."""
    x, w = X.copy(), W.copy()  # fresh objects: a leaked input reference would keep each one
    y = F.conv2d(x, w, B, padding=1)  # (2, 8, 12, 12): 9 KiB
    dx, dw, db = F.conv2d_backward(y, x, w, padding=1)  # two kernels
    F.conv2d(x[:, :, ::2], w, None, stride=(1, 2))  # the strided (im2col) path
    p, i = F.max_pool2d(y, 2, return_indices=True)  # 2.3 KiB + 4.6 KiB
    F.max_pool2d_backward(p, i, y.shape)
    r = F.relu(y)
    F.relu(y, out=r)
    F.relu_backward(r, y)
    F.max_pool2d(y, 3, 2, 1, ceil_mode=True)
    # error paths that throw after an output was allocated
    for bad in (lambda: _core.maxpool2d_fwd(y, (2, 2), (2, 2), (0, 0), (6, 6), True, out_indices=np.empty(1)),
                lambda: F.max_pool2d_backward(p, i + 10**4, y.shape)):
        try:
            bad()
        except (TypeError, ValueError):
            pass
    return 10


def test_kernel_calls_do_not_leak():
    convforge.set_num_threads(convforge.build_info()["default_num_threads"])
    for _ in range(200):  # warm-up: thread pools, workspaces, allocator arenas, caches
        one_round()
    gc.collect()
    rss0, blocks0 = rss(), sys.getallocatedblocks()
    calls = 0
    while calls < CALLS:
        calls += one_round()
    gc.collect()
    grown, blocks = rss() - rss0, sys.getallocatedblocks() - blocks0
    assert grown < RSS_BOUND, f"resident memory grew by {grown / 2**20:.2f} MiB over {calls} calls"
    assert blocks < BLOCKS_BOUND, f"{blocks} more live Python objects after {calls} calls"


def test_workspace_is_constant_for_repeated_shapes(threads):
    for n_threads in (1, 2):
        convforge.set_num_threads(n_threads)
        for call in (
            lambda: F.conv2d(X, W, B, padding=1),
            lambda: F.conv2d(X, W, B, stride=2, padding="same"),
            lambda: F.conv2d_backward(np.ones((2, 8, 12, 12), np.float32), X, W, padding=1),
            lambda: F.conv2d_backward(np.ones((2, 8, 5, 5), np.float32), X, W, stride=2),
        ):
            call()
            held = _core._workspace_bytes()
            for _ in range(50):
                call()
            assert _core._workspace_bytes() == held


def test_workspace_grows_to_the_largest_shape_then_stays():
    small = (np.ones((1, 2, 6, 6), np.float32), np.ones((2, 2, 3, 3), np.float32))
    large = (np.ones((4, 6, 20, 20), np.float32), np.ones((16, 6, 5, 5), np.float32))
    for x, w in (small, large):
        F.conv2d_backward(F.conv2d(x, w), x, w)
    held = _core._workspace_bytes()
    for _ in range(20):
        for x, w in (small, large, small):
            F.conv2d_backward(F.conv2d(x, w), x, w)
        assert _core._workspace_bytes() == held


def test_finished_threads_release_their_workspace():
    # Each thread's workspace is thread_local: 40 short-lived threads, each holding >= 256 KiB of
    # scratch, must leave nothing behind.
    x = np.ones((8, 16, 32, 32), np.float32)
    w = np.ones((32, 16, 3, 3), np.float32)
    held = []

    def work():
        F.conv2d_backward(F.conv2d(x, w, padding=1), x, w, padding=1)
        held.append(_core._workspace_bytes())

    for _ in range(3):  # warm-up
        t = threading.Thread(target=work)
        t.start()
        t.join()
    gc.collect()
    rss0 = rss()
    for _ in range(40):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    gc.collect()
    assert min(held) >= 256 << 10, "the workload no longer needs a workspace worth measuring"
    grown = rss() - rss0
    assert grown < 2 * max(held) + RSS_BOUND, f"{grown / 2**20:.1f} MiB left by 40 finished threads"
