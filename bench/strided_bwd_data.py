"""Strided backward-data: the stride-phase direct form against col2im and PyTorch.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        PYTHONPATH=python python bench/strided_bwd_data.py --threads 1,2 --reps 9

dx of a strided convolution (``functional.conv2d_backward_data``) with 'direct_phases' forced,
with 'col2im_gemm' forced (the default for every strided problem before direct_phases), and
PyTorch's ``torch.nn.grad.conv2d_input``, one call each, alternating in this one process (the
machine may be shared: ratios of neighbouring calls, not absolute times, are what this
reports). Prints each contender's median time, the effective GFLOP/s of direct_phases (the
convolution's 2*N*K*C*R*S*OH*OW) and the medians of the per-repetition ratios with their
min-max. Shapes: the example ResNet's two 3x3 stride-2 layers at batch 128, a ResNet-50
stage-2 entry (3x3 stride 2 on 56x56), a 5x5 stride-2 layer, and the 1x1 stride-2 shortcut,
where direct_phases applies but col2im stays the default (three of its four phases are zeros).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import convforge
from convforge import functional as F

# name: (N, C, H, W, K, R, S, stride, padding), C = dx's channels, K = dy's
SHAPES = {
    "resnet_s2_16": (128, 16, 28, 28, 32, 3, 3, 2, "same"),
    "resnet_s2_32": (128, 32, 14, 14, 64, 3, 3, 2, "same"),
    "r50_s2_64": (32, 64, 56, 56, 128, 3, 3, 2, 1),
    "s2_5x5": (32, 16, 27, 27, 32, 5, 5, 2, 2),
    "shortcut_1x1_s2": (128, 16, 28, 28, 32, 1, 1, 2, 0),
}


def once(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("| shape | threads | direct_phases ms | GFLOP/s | col2im_gemm ms | PyTorch ms | col2im / phases | PyTorch / phases |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for threads in (int(t) for t in args.threads.split(",")):
        convforge.set_num_threads(threads)
        torch.set_num_threads(threads)
        for name in args.shapes.split(","):
            n, c, h, w, k, r, s, stride, padding = SHAPES[name]
            x = rng.standard_normal((n, c, h, w)).astype(np.float32)
            wt = rng.standard_normal((k, c, r, s)).astype(np.float32)
            dy = rng.standard_normal(F.conv2d(x, wt, stride=stride, padding=padding).shape).astype(np.float32)
            flops = 2.0 * n * k * c * r * s * dy.shape[2] * dy.shape[3]
            out = np.empty_like(x)

            def ours(algorithm):
                def call():
                    with F.force_conv2d_algorithm(bwd_data=algorithm):
                        F.conv2d_backward_data(dy, wt, x.shape, stride=stride, padding=padding, out=out)
                return call

            # PyTorch pads symmetrically: 'same' at stride 2 on these even sides is padding
            # (0, 1), i.e. the unpadded problem on an input one row and column larger (the
            # same products; dx one row and column larger).
            pad = 0 if padding == "same" else padding
            grow = 1 if padding == "same" else 0
            tdy, tw = torch.from_numpy(dy), torch.from_numpy(wt)
            in_size = (n, c, h + grow, w + grow)

            def theirs():
                with torch.no_grad():
                    torch.nn.grad.conv2d_input(in_size, tw, tdy, stride=stride, padding=pad)

            calls = {"direct_phases": ours("direct_phases"), "col2im_gemm": ours("col2im_gemm"), "torch": theirs}
            for call in calls.values():
                call()
            times = {key: [] for key in calls}
            for _ in range(args.reps):
                for key, call in calls.items():
                    times[key].append(once(call))
            t = {key: np.array(v) for key, v in times.items()}
            med = {key: float(np.median(v)) for key, v in t.items()}
            r_col = t["col2im_gemm"] / t["direct_phases"]
            r_torch = t["torch"] / t["direct_phases"]
            print(f"| {name} | {threads} | {med['direct_phases'] * 1e3:.3f} | {flops / med['direct_phases'] / 1e9:.0f} | "
                  f"{med['col2im_gemm'] * 1e3:.3f} | {med['torch'] * 1e3:.3f} | "
                  f"{np.median(r_col):.2f} ({r_col.min():.2f}-{r_col.max():.2f}) | "
                  f"{np.median(r_torch):.2f} ({r_torch.min():.2f}-{r_torch.max():.2f}) |")


if __name__ == "__main__":
    main()
