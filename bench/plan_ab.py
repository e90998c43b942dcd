"""What the compiled inference plan (convforge/models/compiled.py) is worth: predict with the plan
and with the layers one by one, alternating in one process, same model, same weights.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        PYTHONPATH=python python bench/plan_ab.py                  # LeNet-5 and the example ResNet
    PYTHONPATH=python python bench/plan_ab.py --models lenet5 --batches 1 --threads 1 --rounds 9

Each round times ``model.predict(x, batch_size=len(x), verbose=0)`` with the plan, then with the
layers (the model's plan set aside: ``Functional._compiled = False``), each sample repeating the
call for ``--min-sample-ms``; the table gives the median per call of each and the ratio
layers / plan (> 1: the plan is faster). Outputs are checked equal first (the plan gives the
layers' bits). Adaptive threads are off so that both run at the thread count asked.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("CONVFORGE_ADAPTIVE_THREADS", "0")

import numpy as np  # noqa: E402

import convforge  # noqa: E402
from convforge.train import lenet5  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from train_resnet import resnet  # noqa: E402


def graph_of(model):
    return getattr(model, "_graph", model)


def sample(fn, min_seconds: float) -> float:
    t0, n = time.perf_counter(), 0
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / n


def measure(model, batch: int, rounds: int, min_seconds: float) -> tuple[float, float]:
    graph = graph_of(model)
    x = np.random.default_rng(batch).random((batch, 28, 28, 1), dtype=np.float32)
    predict = lambda: model.predict(x, batch_size=batch, verbose=0)  # noqa: E731
    with_plan = predict()
    plan = graph._compiled
    if not plan:
        raise SystemExit(f"{model.name} did not compile: nothing to compare")
    graph._compiled = False
    np.testing.assert_array_equal(predict(), with_plan)
    on, off = [], []
    for _ in range(rounds):
        graph._compiled = plan
        on.append(sample(predict, min_seconds))
        graph._compiled = False
        off.append(sample(predict, min_seconds))
    graph._compiled = plan
    return statistics.median(on), statistics.median(off)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet5,resnet")
    p.add_argument("--batches", default="1,64,1024")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-sample-ms", type=float, default=150.0)
    args = p.parse_args(argv)
    convforge.seed(0)
    builders = {"lenet5": lenet5, "resnet": resnet}
    print(f"`python bench/plan_ab.py --models {args.models} --batches {args.batches} --threads {args.threads} "
          f"--rounds {args.rounds} --min-sample-ms {args.min_sample_ms:g}` on "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {convforge.build_info()['isa']}\n")
    print("| model | batch | threads | plan ms | layers ms | layers / plan |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model = builders[name]()
        for threads in (int(t) for t in args.threads.split(",")):
            convforge.set_num_threads(threads)
            for batch in (int(b) for b in args.batches.split(",")):
                on, off = measure(model, batch, args.rounds, args.min_sample_ms / 1000)
                print(f"| {name} | {batch} | {threads} | {on * 1e3:.3f} | {off * 1e3:.3f} | {off / on:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
