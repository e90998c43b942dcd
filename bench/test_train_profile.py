"""bench/train_profile.py runs end to end, with --hot, on a few images (a smoke test, not a timing)."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_hot_replay_reports_both_sums_and_every_function():
    # The convforge this test imports (installed, or on the caller's PYTHONPATH) is the script's too.
    run = subprocess.run([sys.executable, os.path.join(HERE, "train_profile.py"), "--threads", "1", "--limit", "64",
                          "--batch", "32", "--top", "3", "--hot", "--calls"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    m = re.search(r"one step's (\d+) kernel calls replayed: in order ([\d.]+) ms, each alone \(warm\) ([\d.]+) ms", out)
    assert m, out
    calls, in_order, alone = int(m[1]), float(m[2]), float(m[3])
    assert calls > 40 and in_order > 0 and alone > 0
    table = out[m.end():]
    for name in ("conv2d", "conv2d_backward_data", "conv2d_backward_weights", "batch_norm", "batch_norm_backward"):
        assert re.search(rf"^\| {name} \| [\d.]+ \| [\d.]+ \|$", table, re.M), (name, table)
    # --calls: one row per call, numbered in the step's order, the stem's convolution first.
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (\([\d, ]*\)) \| (\([\d, ]*\)) \| [\d.]+ \| [\d.]+ \|$", table, re.M)
    assert [int(r[0]) for r in rows] == list(range(calls)), table
    assert rows[0][1:] == ("conv2d", "(32, 1, 28, 28)", "(16, 1, 3, 3)"), rows[0]
