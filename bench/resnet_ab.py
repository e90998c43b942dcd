"""What this stop's ResNet changes are worth, measured in one process: A/B switches, not two builds.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        PYTHONPATH=python python bench/resnet_ab.py                 # both parts, 2 threads
    PYTHONPATH=python python bench/resnet_ab.py --part winograd --threads 1

Part ``winograd``: for 3x3 'same' C -> C layers at the example's channel counts and image sizes
(and a few batch sizes), the time of the direct form over that of Winograd F(4x4, 3x3), both
forced, forward and backward-data, and which one the default rule takes (conv2d_winograd.h's
``winograd_pays``). A ratio > 1: Winograd is faster.

Part ``fusion``: a training step (``train_on_batch``, batch 128, SGD + momentum) of
examples/train_resnet.py's network with the BatchNormalization -> ReLU fusion (layers/fusion.py)
on and off, alternating, ``--rounds`` times; median ms per step of each round's 10 steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import convforge
from convforge import functional as F
from convforge.layers import fusion

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from train_resnet import resnet  # noqa: E402

WINOGRAD = "winograd_f4x3"


def best_of(fn, samples: int = 5, seconds: float = 0.1) -> float:
    fn()
    best = float("inf")
    for _ in range(samples):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def winograd_part(batches) -> None:
    rng = np.random.default_rng(0)
    print("| batch | channels | image | direct / Winograd fwd | bwd_data | default takes |")
    print("|---:|---:|---|---:|---:|---|")
    for batch in batches:
        for channels, size in ((16, 28), (16, 14), (32, 14), (64, 7), (128, 7)):
            x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
            w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * np.float32(0.1)
            dy = rng.standard_normal(x.shape, dtype=np.float32)
            ratios = []
            for pass_, run in (("fwd", lambda: F.conv2d(x, w, padding="same")),
                               ("bwd_data", lambda: F.conv2d_backward_data(dy, w, x.shape, padding="same"))):
                times = {}
                for algo in ("direct", WINOGRAD):
                    with F.force_conv2d_algorithm(**{pass_: algo}):
                        times[algo] = best_of(run)
                ratios.append(times["direct"] / times[WINOGRAD])
            default = F.conv2d_algorithms(x.shape, w.shape, padding="same")["fwd"][0]
            print(f"| {batch} | {channels} | {size}x{size} | {ratios[0]:.2f} | {ratios[1]:.2f} | {default} |",
                  flush=True)


def fusion_part(rounds: int) -> None:
    real_fuse = fusion.bn_relu_fusable
    batch = 128
    rng = np.random.default_rng(0)
    x = rng.random((10 * batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 10 * batch)
    models = {}
    for fused in (True, False):
        fusion.bn_relu_fusable = real_fuse if fused else (lambda bn, relu: False)
        convforge.seed(0)
        model = resnet()
        model.compile(optimizer=convforge.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
        for _ in range(3):
            model.train_on_batch(x[:batch], y[:batch])  # built, planned (fused or not), warm
        models[fused] = model
    fusion.bn_relu_fusable = real_fuse
    steps = {True: [], False: []}
    for r in range(rounds):
        for fused in ((False, True) if r % 2 == 0 else (True, False)):  # neither always goes first
            model, times = models[fused], []
            for i in range(10):
                t0 = time.perf_counter()
                model.train_on_batch(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
                times.append(time.perf_counter() - t0)
            steps[fused].append(statistics.median(times) * 1e3)
    for fused in (False, True):
        s = steps[fused]
        print(f"fusion {'on ' if fused else 'off'}: step median {statistics.median(s):.1f} ms "
              f"(rounds {min(s):.1f}-{max(s):.1f})")
    ratios = [off / on for off, on in zip(steps[False], steps[True])]
    print(f"off / on per round: median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("winograd", "fusion", "both"), default="both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", default="1,8,32,128")
    args = p.parse_args(argv)
    convforge.set_adaptive_threads(False)  # the stated thread count, as every bench
    convforge.set_num_threads(args.threads)
    print(f"convforge {convforge.__version__} ({convforge.build_info()['isa']}), {args.threads} threads")
    if args.part in ("winograd", "both"):
        winograd_part([int(b) for b in args.batches.split(",")])
    if args.part in ("fusion", "both"):
        fusion_part(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
