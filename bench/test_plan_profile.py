"""bench/plan_profile.py runs end to end, its per-thread columns on two threads (a smoke test, not a timing)."""

import os
import re
import subprocess
import sys

import convforge

HERE = os.path.dirname(os.path.abspath(__file__))


def test_two_threads_report_each_threads_part_of_each_op():
    run = subprocess.run([sys.executable, os.path.join(HERE, "plan_profile.py"), "--models", "resnet,lenet5",
                          "--threads", "2", "--runs", "20"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    resnet, lenet5 = out[out.index("\nresnet:"):], out[out.index("\nlenet5:"):out.index("\nresnet:")]
    if not convforge.build_info()["openmp"]:  # one thread: the table without per-thread columns
        assert "| op | us | share |\n" in out and "thread 0" not in out, out
        assert len(re.findall(r"^\| conv2d\(.*? \| [\d.]+ \| [\d.]+% \|$", out, re.M)) == 9 + 2, out
        return
    assert "| op | us | share | thread 0 us | thread 1 us |" in out, out
    row = r"^\| conv2d\(.*? \| ([\d.]+) \| [\d.]+% \| ([\d.]+) \| ([\d.]+) \|$"
    resnet_rows, lenet5_rows = re.findall(row, resnet, re.M), re.findall(row, lenet5, re.M)
    assert len(resnet_rows) == 9 and len(lenet5_rows) == 2, out
    # The ResNet's one image runs on the team: the calling thread's part of its 28x28 convs (the
    # worker's too where it got a CPU: tests/test_compiled_inference.py checks that), each
    # thread's part inside the op's time.
    assert any(float(a) > 0 for _, a, _ in resnet_rows), resnet
    assert all(float(a) <= float(us) + 1 and float(b) <= float(us) + 1 for us, a, b in resnet_rows), resnet
    summary = r"threads' time in the ops' parallel loops \(us a run\): thread 0 [\d.]+, thread 1 [\d.]+"
    assert re.search(summary, resnet), resnet
    assert "no op ran on the thread team" in lenet5, lenet5  # one image: every op on one thread
