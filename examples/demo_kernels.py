"""A quick look at the kernels: agreement with NumPy and speed on LeNet-5's layers.

    python examples/demo_kernels.py

Timings are medians of a few runs in this process, convforge and NumPy side by side.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import convforge
from convforge import functional as F
from convforge import reference as R


def median_seconds(fn, repeat=7):
    fn()  # warm-up: workspace allocation, thread start
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    # no options, but --help describes the script instead of starting its timings
    argparse.ArgumentParser(prog="python examples/demo_kernels.py", description=__doc__.splitlines()[0],
                            epilog="Timings are medians of a few runs in this process.").parse_args(argv)
    info = convforge.build_info()
    print(f"convforge {info['version']}  isa={info['isa']}  threads={info['num_threads']}  openmp={info['openmp']}")
    rng = np.random.default_rng(0)
    layers = [("LeNet C1 (64,1,28,28) * 6@5x5 pad 2", (64, 1, 28, 28), (6, 1, 5, 5), 2),
              ("LeNet C3 (64,6,14,14) * 16@5x5", (64, 6, 14, 14), (16, 6, 5, 5), 0)]
    print(f"{'layer':40s} {'pass':9s} {'max |err|':>10s} {'convforge':>10s} {'NumPy':>10s} {'speed-up':>8s}")
    for name, xs, ws, pad in layers:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        y = F.conv2d(x, w, b, padding=pad)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        passes = [
            ("forward", lambda: F.conv2d(x, w, b, padding=pad), lambda: R.conv2d_im2col(x, w, b, padding=pad)),
            ("backward", lambda: F.conv2d_backward(dy, x, w, padding=pad),
             lambda: R.conv2d_backward_im2col(dy, x, w, padding=pad)),
        ]
        for pass_name, ours, numpy_version in passes:
            a, r = ours(), numpy_version()
            a, r = (a, r) if pass_name == "forward" else (a[1], r[1])  # compare dw for backward
            err = float(np.max(np.abs(a.astype(np.float64) - r)))
            t_ours, t_np = median_seconds(ours), median_seconds(numpy_version)
            print(f"{name:40s} {pass_name:9s} {err:10.2e} {t_ours * 1e3:8.2f}ms {t_np * 1e3:8.2f}ms {t_np / t_ours:7.1f}x")


if __name__ == "__main__":
    main()
