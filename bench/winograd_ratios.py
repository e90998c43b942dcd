"""Winograd F(4x4, 3x3) against the direct form and PyTorch on the ResNet and VGG 3x3 layers.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        PYTHONPATH=python python bench/winograd_ratios.py --threads 2 --reps 9

Each repetition times convforge with 'winograd_f4x3' forced, convforge with the best other
algorithm forced, and PyTorch, one call each, alternating in this one process (the machine may
be shared: ratios of neighbouring calls, not absolute times, are what this reports). Prints
medians of the per-repetition ratios with their min-max. Backward-data is dx alone on both
sides (torch.nn.grad.conv2d_input).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import torch  # noqa: E402
from shapes import BENCH_CONV  # noqa: E402

import convforge  # noqa: E402
from convforge import _params  # noqa: E402
from convforge import functional as F  # noqa: E402

WINOGRAD = "winograd_f4x3"


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--shapes", default="resnet,vgg")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    convforge.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for case in [c for c in BENCH_CONV if c.name in args.shapes.split(",")]:
        x = rng.standard_normal((case.n, case.c, case.h, case.w), dtype=np.float32)
        w = rng.standard_normal((case.k, case.c, case.r, case.s), dtype=np.float32) / np.float32(3 * case.c**0.5)
        stride, pads, _, out_hw = _params.conv_params((case.h, case.w), (case.r, case.s), case.stride, case.padding,
                                                        case.dilation)
        dy = rng.standard_normal((case.n, case.k, *out_hw), dtype=np.float32)
        y, dx = np.empty((case.n, case.k, *out_hw), np.float32), np.empty_like(x)
        tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
        tpad = [pads[0], pads[2]]
        algos = F.conv2d_algorithms(x.shape, w.shape, stride=case.stride, padding=case.padding)
        for pass_ in ("fwd", "bwd_data"):
            other = [a for a in algos[pass_] if a != WINOGRAD][0]
            if pass_ == "fwd":
                def ours(a):
                    def run():
                        with F.force_conv2d_algorithm(fwd=a):
                            F.conv2d(x, w, None, case.stride, case.padding, case.dilation, out=y)
                    return run

                def theirs():
                    with torch.no_grad():
                        torch.nn.functional.conv2d(tx, tw, None, list(stride), tpad)
            else:
                def ours(a):
                    def run():
                        with F.force_conv2d_algorithm(bwd_data=a):
                            F.conv2d_backward_data(dy, w, x.shape, case.stride, case.padding, case.dilation, out=dx)
                    return run

                def theirs():
                    with torch.no_grad():
                        torch.nn.grad.conv2d_input(tx.shape, tw, tdy, stride=list(stride), padding=tpad)
            contenders = {"winograd": ours(WINOGRAD), other: ours(other), "torch": theirs}
            for f in contenders.values():  # warm up: workspaces, torch's allocator
                f()
            times = {k: [] for k in contenders}
            for _ in range(args.reps):
                for k, f in contenders.items():
                    times[k].append(timed(f))
            t = {k: np.array(v) for k, v in times.items()}

            def ratio(a, b):
                r = t[a] / t[b]
                return f"{np.median(r):.2f}x [{r.min():.2f}-{r.max():.2f}]"

            print(f"{case.name} {pass_} threads={args.threads}: winograd {np.median(t['winograd']) * 1e3:.1f} ms, "
                  f"{other} {np.median(t[other]) * 1e3:.1f} ms, torch {np.median(t['torch']) * 1e3:.1f} ms | "
                  f"torch/winograd {ratio('torch', 'winograd')}, torch/{other} {ratio('torch', other)}, "
                  f"{other}/winograd {ratio(other, 'winograd')}", flush=True)


if __name__ == "__main__":
    main()
