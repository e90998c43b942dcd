"""One sample through a dense layer: convforge's one-sample form against NumPy and PyTorch.

    python bench/dense_one_sample.py                 # LeNet-5's layers and wide ones, 1 and 2 threads

A one-image predict's dense layers are matrix-vector products: the time is reading w. Each
layer runs as a one-op inference plan (``InferencePlan.profile``: no Python between calls,
best of 5 means); NumPy's ``matmul`` of the same (1, I) row into a preallocated output is
timed in a Python loop (its ~1 us of call overhead included; its BLAS uses its own threads,
whatever ``--threads`` says), and PyTorch's ``torch.nn.functional.linear`` then ``relu_`` (w transposed to its
(units, in) layout beforehand; at each thread count; its call overhead and output allocation
included) where it is installed. Reported: microseconds and GB/s of w.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import convforge
from convforge import functional as F

SHAPES = [(400, 120), (120, 84), (84, 10), (1024, 1024), (4096, 1024), (1024, 4096)]


def best_loop(f, runs: int, rounds: int = 7) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(runs):
            f()
        best = min(best, (time.perf_counter() - start) / runs)
    return best


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma list of thread counts")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    print(f"convforge {convforge.__version__} ({convforge.build_info()['isa']}), one sample")
    torch = _torch()
    torch_heads = [f"PyTorch {t}T us" for t in threads] if torch is not None else []
    print("| in x units | " + " | ".join([f"convforge {t}T us (GB/s)" for t in threads] + ["NumPy us"] + torch_heads)
          + " |")
    print("|---|" + "---:|" * (len(threads) + 1 + len(torch_heads)))
    for features, units in SHAPES:
        w = rng.standard_normal((features, units)).astype(np.float32)
        b = rng.standard_normal(units).astype(np.float32)
        x = rng.standard_normal((1, features)).astype(np.float32)
        plan = F.inference_plan(np.float32)
        plan.finish([plan.dense(plan.input([features]), w, b, relu=True)])
        runs = max(20, int(2e8 / (features * units)))
        cells = []
        for t in threads:
            convforge.set_num_threads(t)
            seconds = min(F.profile_inference_plan(plan, [x], runs)[0] for _ in range(5))
            cells.append(f"{seconds * 1e6:.2f} ({w.nbytes / seconds / 1e9:.0f})")
        out = np.empty((1, units), np.float32)
        numpy_s = best_loop(lambda: np.matmul(x, w, out=out), runs)
        cells.append(f"{numpy_s * 1e6:.2f}")
        if torch is not None:
            tx, tw, tb = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w.T)), torch.from_numpy(b)
            for t in threads:
                torch.set_num_threads(t)
                with torch.no_grad():
                    seconds = best_loop(lambda: torch.nn.functional.linear(tx, tw, tb).relu_(), runs)
                cells.append(f"{seconds * 1e6:.2f}")
        print(f"| {features} x {units} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
