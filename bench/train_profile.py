"""Where a training epoch of examples/train_resnet.py's network spends its time, per kernel call.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 \
        python bench/train_profile.py             # 2 threads, 6400 random images, batch 128
    python bench/train_profile.py --threads 1 --limit 1280 --top 15

Run it under issue 12's tuned malloc, as bench/train_resnet.py's epochs are compared: with glibc's
defaults the feature maps freed and made again each step can come back as fresh pages, whose
faults the first pass that writes them pays (815 page faults a step against 2, 2026-12-05). The
first line says which setting the process has and how many page faults a step took.

Every public function of ``convforge.functional`` (the layers call the kernels through it) is
wrapped with a clock for one epoch, after a warm-up epoch; the table sums the calls per
(function, first argument's shape, second argument's shape), in ms per training step. What is
not in the table (the epoch minus the sum) is Python: the layers, the graph walk, the optimizer.
The wrapping adds ~1 us per call (a function that calls another public one counts both):
compare rows of one run, not runs of different tools.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import time

import numpy as np

import convforge
from convforge import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from train_resnet import resnet  # noqa: E402

from compare import malloc_setting  # noqa: E402  (bench/ is this script's directory)

_NOT_KERNELS = {"force_conv2d_algorithm", "conv2d_algorithms", "inference_plan", "run_inference_plan"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=6400, help="images per epoch (random data)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--top", type=int, default=30, help="rows shown")
    args = p.parse_args()

    totals: dict = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()

    def clocked(name, fn):
        def call(*a, **k):
            start = time.perf_counter()
            result = fn(*a, **k)
            key = (name, *(tuple(getattr(v, "shape", ())) for v in a[:2]))
            totals[key] += time.perf_counter() - start
            counts[key] += 1
            return result
        return call

    for name in dir(F):
        fn = getattr(F, name)
        if callable(fn) and not name.startswith("_") and name not in _NOT_KERNELS and not isinstance(fn, type):
            setattr(F, name, clocked(name, fn))

    convforge.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.limit, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.limit)
    model = resnet()
    model.compile(optimizer=convforge.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.fit(x[: 4 * args.batch], y[: 4 * args.batch], batch_size=args.batch, epochs=1, verbose=0)  # warm-up
    totals.clear()
    counts.clear()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
    epoch = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    steps = -(-args.limit // args.batch)
    in_kernels = sum(totals.values())
    print(f"{args.threads} threads, {steps} steps of {args.batch}: {epoch / steps * 1e3:.2f} ms a step, "
          f"{in_kernels / steps * 1e3:.2f} of it in convforge.functional calls (malloc: {malloc_setting()}, "
          f"{faults / steps:.0f} page faults a step)")
    print("| ms/step | calls/step | function | arg 0 shape | arg 1 shape |\n|---:|---:|---|---|---|")
    for key, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {seconds / steps * 1e3:.3f} | {counts[key] / steps:g} | {key[0]} | {key[1] if len(key) > 1 else ''} "
              f"| {key[2] if len(key) > 2 else ''} |")


if __name__ == "__main__":
    main()
