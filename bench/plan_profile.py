"""Where a model's compiled inference pass spends its time, op by op.

    python bench/plan_profile.py                              # ResNet example and LeNet-5, 1 image
    python bench/plan_profile.py --models resnet --batch 64 --threads 2

``predict`` runs a model as one compiled plan (convforge/models/compiled.py, csrc/plan/): this
times each of its ops inside that call (``InferencePlan.profile``: a steady clock around every
op, ``--runs`` runs of one batch, mean per op), so a figure includes what a kernel pays there and
not in a standalone call: its input in another core's cache, the BatchNormalization folded into
the weights on every run, the residual Add fused into the conv. One line per op, as
``plan.describe()`` names it, with its share of the sum; on several threads, also the time each
thread spent in the op's parallel loops (thread 0 the calling one): an op whose threads each
take about its whole time gains nothing from them, whatever the reason (the items' split, the
data each thread reads from the other core's cache). The sum is the ops alone (not the
compare of the kept weights that precedes them on every run); ``predict``
adds the Python around it (shown for comparison, its best of 5 loops). A batch larger than the
plan's ``chunk_samples`` runs in chunks: profiled, one chunk after another with every op on all
threads (an op's figure is its sum over the chunks); in ``predict`` each thread runs whole
chunks where there are enough, so there the sum and ``predict`` part ways.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

import convforge
from convforge import functional as F
from convforge.train import lenet5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def models(names) -> dict:
    found = {}
    if "lenet5" in names:
        found["lenet5"] = lenet5()
    if "resnet" in names:
        spec = importlib.util.spec_from_file_location("train_resnet", os.path.join(ROOT, "examples", "train_resnet.py"))
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        found["resnet"] = example.resnet()
    return found


def predict_seconds(model, x, runs: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(runs):
            model.predict(x, batch_size=len(x), verbose=0)
        best = min(best, (time.perf_counter() - start) / runs)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet,lenet5", help="comma list of resnet, lenet5")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=0, help="runs per figure (default: about 0.5 s of plan time)")
    p.add_argument("--nchw", action="store_true",
                   help="keep every value NCHW (plan.blocked_layout = False: no channel blocks between convs)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - {"resnet", "lenet5"})
    if unknown:
        p.error(f"unknown models {unknown}; known: resnet, lenet5")
    if args.batch < 1 or args.threads < 1:
        p.error("--batch and --threads must be at least 1")
    convforge.set_num_threads(args.threads)
    convforge.set_adaptive_threads(False)  # the row is measured at its thread count
    convforge.seed(0)
    rng = np.random.default_rng(0)
    print(f"convforge {convforge.__version__} ({convforge.build_info()['isa']}), batch {args.batch}, "
          f"{args.threads} thread(s)" + (", NCHW throughout" if args.nchw else ""))
    for name, model in models(names).items():
        x = rng.standard_normal((args.batch, 28, 28, 1)).astype(np.float32)
        model.predict(x, batch_size=len(x), verbose=0)  # builds the model and its plan
        compiled = model._whole_plan()  # the plan predict runs, when it computes the whole model
        if compiled is None:
            print(f"\n{name}: no compiled plan of the whole model (CONVFORGE_COMPILED_INFERENCE=0?)")
            continue
        plan = compiled.plan
        plan.blocked_layout = not args.nchw
        xin = [np.ascontiguousarray(x.transpose(0, 3, 1, 2))]  # the plan's layout: NCHW
        F.profile_inference_plan(plan, xin, 3)  # warm: arenas, workspaces, caches
        runs = args.runs
        if runs <= 0:
            once = float(F.profile_inference_plan(plan, xin, 3).sum())
            runs = max(3, min(100000, int(0.5 / max(once, 1e-7))))
        table = F.profile_inference_plan(plan, xin, runs, per_thread=convforge.get_num_threads() > 1)
        seconds = table[:, 0] if table.ndim == 2 else table
        total = float(seconds.sum())
        whole = predict_seconds(model, x, max(1, runs // 5))
        print(f"\n{name}: plan {total * 1e3:.4f} ms (sum of its ops, mean of {runs} runs); "
              f"predict {whole * 1e3:.4f} ms\n")
        threads = table.shape[1] - 1 if table.ndim == 2 else 0
        print("| op | us | share |" + "".join(f" thread {t} us |" for t in range(threads)))
        print("|---|---:|---:|" + "---:|" * threads)
        for line, row in zip(plan.describe().splitlines(), table if threads else seconds[:, None]):
            parts = "".join(f" {b * 1e6:.2f} |" for b in row[1:])
            print(f"| {line} | {row[0] * 1e6:.2f} | {row[0] / total:.1%} |" + parts)
        if threads:
            busy = table[:, 1:].sum(axis=0)
            if not busy.any():
                print("\nno op ran on the thread team (a small batch of a small model stays on one thread)")
            else:
                print(f"\nthreads' time in the ops' parallel loops (us a run): "
                      + ", ".join(f"thread {t} {b * 1e6:.1f}" for t, b in enumerate(busy))
                      + f"; the ops' wall time {total * 1e6:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
