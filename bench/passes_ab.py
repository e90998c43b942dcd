"""Two builds of convforge, side by side, on memory-bound passes: BatchNormalization (hot and
cold caches) and the dense forward.

    python bench/passes_ab.py --before /tmp/before/python --op bn --threads 1,2 --rounds 3
    python bench/passes_ab.py --before /tmp/before/python --op dense --threads 1,2 --rounds 2

(``--before``: a directory holding the other build's ``convforge`` package, as for build_ab.py.)
Each round runs every case in a fresh process of each build, the builds alternating; a case's
figure is its best (minimum) over rounds and, within a process, over repeats. ``bn``: forward
(training statistics) and backward at examples/train_resnet.py's three stages and a ResNet-50
stage-1 tensor, "hot" (the arrays just used) and "cold" (after sweeping 384 MB through the
caches, as in a training step, where x was written long before it is read). ``dense``: the
forward with bias into a preallocated output, LeNet-5's layers to 1024x1024x1024. ms per call;
before / after > 1: the after build is faster.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

_CHILD = r"""
import json, sys, time
import numpy as np
import convforge
from convforge import functional as F
args = json.loads(sys.argv[1])
convforge.set_num_threads(args["threads"])
rng = np.random.default_rng(0)
out = {}

def best(call, repeats, sweep=None):
    call()
    b = float("inf")
    for _ in range(repeats):
        if sweep is not None:
            np.add(sweep, 1, out=sweep)
        t = time.perf_counter(); call(); b = min(b, time.perf_counter() - t)
    return b * 1e3

if args["op"] == "bn":
    big = np.ones(96 * 1024 * 1024, np.float32)
    for shape in ((128, 16, 28, 28), (128, 32, 14, 14), (128, 64, 7, 7), (32, 64, 56, 56)):
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal(shape, dtype=np.float32)
        c = shape[1]
        g, b = np.ones(c, np.float32), np.zeros(c, np.float32)
        y, dx = np.empty_like(x), np.empty_like(x)
        vec = [np.empty(c, np.float32) for _ in range(4)]
        _, mean, var = F.batch_norm(x, g, b, 1e-3)
        fwd = lambda: F.batch_norm(x, g, b, 1e-3, out=y, out_mean=vec[0], out_var=vec[1])
        bwd = lambda: F.batch_norm_backward(dy, x, mean, var, g, 1e-3, out=dx, out_gamma=vec[2], out_beta=vec[3])
        name = "x".join(map(str, shape))
        out[name + " fwd hot"], out[name + " fwd cold"] = best(fwd, 15), best(fwd, 15, big)
        out[name + " bwd hot"], out[name + " bwd cold"] = best(bwd, 15), best(bwd, 15, big)
else:
    for n, i, u in ((64, 400, 120), (64, 120, 84), (64, 84, 10), (1, 400, 120), (32, 784, 128), (3000, 784, 100),
                    (4096, 256, 256), (256, 1024, 1024), (1024, 1024, 1024)):
        x = rng.standard_normal((n, i), dtype=np.float32)
        w = rng.standard_normal((i, u), dtype=np.float32)
        b = rng.standard_normal(u, dtype=np.float32)
        y = np.empty((n, u), np.float32)
        out[f"{n}x{i}x{u}"] = best(lambda: F.dense(x, w, b, out=y), 30)
print(json.dumps(out))
"""


def run(package_dir: str, op: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(package_dir))
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps({"op": op, "threads": threads})], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="directory holding the 'before' build's convforge package")
    p.add_argument("--after", default=os.path.join(os.path.dirname(HERE), "python"))
    p.add_argument("--op", choices=("bn", "dense"), default="bn")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    best: dict = collections.defaultdict(lambda: float("inf"))
    threads = [int(t) for t in args.threads.split(",")]
    for _ in range(args.rounds):
        for t in threads:
            for who, where in (("before", args.before), ("after", args.after)):
                for case, ms in run(where, args.op, t).items():
                    best[(t, case, who)] = min(best[(t, case, who)], ms)
    print("| threads | case | ms before | ms after | before / after |\n|---:|---|---:|---:|---:|")
    for t, case in dict.fromkeys((k[0], k[1]) for k in best):
        b, a = best[(t, case, "before")], best[(t, case, "after")]
        print(f"| {t} | {case} | {b:.3f} | {a:.3f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
