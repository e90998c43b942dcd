"""Kernels on a busy machine: OpenMP wait policies, with and without a competing process.

    python bench/busy_machine.py                      # 6 rounds, 2 threads, policies below
    python bench/busy_machine.py --rounds 10 --policies 300000,1000,0
    python bench/busy_machine.py --steps 200 --policies 300000,1000,300000+adaptive,1000+adaptive

When another process holds a core, a 2-thread kernel whose threads spin while they wait (GNU
OpenMP spins GOMP_SPINCOUNT=300000 times, ~10 ms, before it sleeps) looks like a CPU hog to the
Linux scheduler: the thread that shares a core with the other process gets the CPU back only
after a whole time slice. This script measures it. For each round and each policy, in
alternation (A B C A B C ...), a fresh child process (the spin count is read when libgomp
starts) times

* ``lenet5``: one LeNet-5 training step, batch 64 (``fit`` on ``--steps`` batches of random data, per step);
* ``predict``: LeNet-5 ``predict``, per batch of 64 (``--steps`` batches);
* ``conv``: a small conv2d forward (LeNet C3: 64x6x14x14 * 16x6x5x5, ~100 us);

once on the machine as it is ("quiet") and once while a competing process spins on one core
("busy": a bounded Python busy loop that stops by itself after ``--busy-seconds``). Each figure
is the median over the repetitions within the child; the table shows the median over rounds,
the spread (min-max over rounds) and the ratio to libgomp's default in the same round.

A policy is a GOMP_SPINCOUNT value (``300000``: libgomp's default; ``0``: sleep at once, as
OMP_WAIT_POLICY=passive), optionally followed by ``+adaptive``: ``fit`` then adapts its thread
count to the measured step times (convforge/threads.py; without it the children run with
CONVFORGE_ADAPTIVE_THREADS=0, at a fixed count). convforge leaves libgomp's wait policy alone
(until 2026-12-03 it started libgomp with GOMP_SPINCOUNT=1000); the children set both
explicitly. Since 2026-12-05 (twenty-second stop) the kernels' loops run on convforge's own
thread team, not in OpenMP regions: the spin count then reaches only a loop run while another
thread's call holds the team, and the policies' rows differ by noise. ``--steps`` sets the
length of each timed ``fit`` and ``predict`` (the adaptive count's probes and its reaction to
the competitor are inside the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BUSY_LOOP = "import time, sys\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def _child(threads: int, repeats: int, busy_seconds: float, steps: int) -> dict:
    import numpy as np

    import convforge
    from convforge import functional as F
    from convforge.train import lenet5

    convforge.set_num_threads(threads)
    rng = np.random.default_rng(0)
    convforge.seed(0)
    model = lenet5()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = rng.random((64 * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 64 * steps)
    cx = rng.random((64, 6, 14, 14), dtype=np.float32)
    cw = rng.random((16, 6, 5, 5), dtype=np.float32)

    def lenet_step() -> float:
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
        return (time.perf_counter() - t0) / steps

    def predict_batch() -> float:
        t0 = time.perf_counter()
        model.predict(x, batch_size=64, verbose=0)
        return (time.perf_counter() - t0) / steps

    def conv() -> float:
        t0 = time.perf_counter()
        for _ in range(50):
            F.conv2d(cx, cw)
        return (time.perf_counter() - t0) / 50

    lenet_step(), predict_batch(), conv()  # warm-up: workspaces, plans, thread pool
    result = {}
    for condition in ("quiet", "busy"):
        competitor = None
        if condition == "busy":
            competitor = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(busy_seconds)])
            time.sleep(0.05)
        try:
            result[f"lenet5 {condition}"] = statistics.median(lenet_step() for _ in range(repeats))
            result[f"predict {condition}"] = statistics.median(predict_batch() for _ in range(repeats))
            result[f"conv {condition}"] = statistics.median(conv() for _ in range(repeats))
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timings per figure within a child (median)")
    p.add_argument("--policies", default="300000,10000,1000,0", help="GOMP_SPINCOUNT values, the first is the baseline")
    p.add_argument("--busy-seconds", type=float, default=30.0)
    p.add_argument("--steps", type=int, default=20, help="batches per timed fit and predict")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.threads, args.repeats, args.busy_seconds, args.steps)))
        return 0

    policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    runs: dict[str, list[dict]] = {policy: [] for policy in policies}
    for round_ in range(args.rounds):
        for policy in policies:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            spin, _, mode = policy.partition("+")
            env["GOMP_SPINCOUNT"] = spin
            env["CONVFORGE_ADAPTIVE_THREADS"] = "1" if mode == "adaptive" else "0"
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--threads", str(args.threads), "--repeats", str(args.repeats),
                 "--busy-seconds", str(args.busy_seconds), "--steps", str(args.steps)],
                env=env, capture_output=True, text=True, check=True,
            )
            runs[policy].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    base = policies[0]
    keys = list(runs[base][0])
    print(f"{args.threads} threads, {args.rounds} rounds (policies alternated), "
          f"median [min-max] over rounds; ratio = time / time with GOMP_SPINCOUNT={base} in the same round\n")
    print("| GOMP_SPINCOUNT (+ adaptive threads) | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for policy in policies:
        cells = []
        for key in keys:
            values = [r[key] * 1e3 for r in runs[policy]]
            ratios = [r[key] / b[key] for r, b in zip(runs[policy], runs[base])]
            cell = f"{statistics.median(values):.2f} ms [{min(values):.2f}-{max(values):.2f}]"
            if policy != base:
                cell += f", x{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            cells.append(cell)
        print(f"| {policy} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
