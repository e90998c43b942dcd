"""Where a training epoch of examples/train_resnet.py's network spends its time, per kernel call.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 \
        python bench/train_profile.py             # 2 threads, 6400 random images, batch 128
    python bench/train_profile.py --threads 1 --limit 1280 --top 15
    python bench/train_profile.py --hot        # then one step's calls again: in order, and each warm
    python bench/train_profile.py --hot --calls  # and those calls one row each, in the step's order

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
    p.add_argument("--hot", action="store_true",
                   help="also replay one step's kernel calls: in order once, and each alone in a loop (warm caches)")
    p.add_argument("--calls", action="store_true", help="with --hot: a row per call, in the step's order")
    args = p.parse_args()

    recording = False
    totals: dict = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()

    recorded: list = []  # the top-level calls of one step, for --hot
    depth = [0]

    def clocked(name, fn):
        def call(*a, **k):
            if recording and depth[0] == 0:
                recorded.append((name, fn, a, k))
            depth[0] += 1
            start = time.perf_counter()
            try:
                result = fn(*a, **k)
            finally:
                depth[0] -= 1
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
    if args.hot:
        recording = True
        model.fit(x[: args.batch], y[: args.batch], batch_size=args.batch, epochs=1, verbose=0)
        recording = False
        _replay(recorded, epoch / steps, per_call=args.calls)


def _replay(calls, step_seconds: float, rounds: int = 7, per_call: bool = False) -> None:
    """Time one step's kernel calls without the Python between them.

    *In order*: the calls one after another as the step made them (the best of ``rounds``
    replays): what the step's kernels cost with its own cache traffic. *Alone*: each call
    repeated on its own until its operands are as warm as they get, best of ``rounds`` (a
    6.4 MB feature map stays in the 32 MiB L3): the kernels' arithmetic with no wait on memory.
    The gap between the two is what the step loses to memory; the gap between the epoch and
    *in order*, to Python (layers, graph walk, optimizer). Calls that write into their inputs
    (``out=`` aliases, the optimizer's updates) run again on what they wrote: only the time
    counts here, and the model is not used after this.
    """
    def run_all():
        times = []
        for _, fn, a, k in calls:
            start = time.perf_counter()
            fn(*a, **k)
            times.append(time.perf_counter() - start)
        return np.array(times)

    run_all()
    replays = [run_all() for _ in range(rounds)]
    in_order = min(replays, key=np.sum)
    alone = np.array([min(_seconds(lambda: fn(*a, **k)) for _ in range(rounds)) for _, fn, a, k in calls])
    print(f"\none step's {len(calls)} kernel calls replayed: in order {in_order.sum() * 1e3:.2f} ms, each alone "
          f"(warm) {alone.sum() * 1e3:.2f} ms; the epoch's step {step_seconds * 1e3:.2f} ms")
    print("| function | in order, ms/step | alone, ms/step |\n|---|---:|---:|")
    names = [name for name, *_ in calls]
    rows = {name: (sum(t for n, t in zip(names, in_order) if n == name), sum(t for n, t in zip(names, alone) if n == name))
            for name in dict.fromkeys(names)}
    for name, (ordered, warm) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        print(f"| {name} | {ordered * 1e3:.3f} | {warm * 1e3:.3f} |")
    if per_call:
        print("\n| # | function | arg 0 shape | arg 1 shape | in order, ms | alone, ms |\n|---:|---|---|---|---:|---:|")
        for i, ((name, _, a, _), ordered, warm) in enumerate(zip(calls, in_order, alone)):
            shape0, shape1 = (tuple(getattr(v, "shape", ())) for v in (list(a[:2]) + [None, None])[:2])
            print(f"| {i} | {name} | {shape0} | {shape1} | {ordered * 1e3:.3f} | {warm * 1e3:.3f} |")


def _seconds(fn) -> float:
    fn()  # the operands into the caches
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
