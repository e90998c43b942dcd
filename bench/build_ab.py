"""Two builds of convforge, side by side: the same conv2d calls timed in each, alternating.

    # a build of the commit before the change, importable from /tmp/before/convforge:
    git worktree add /tmp/before-src <commit> && cmake -S /tmp/before-src -B /tmp/before-build -G Ninja \\
        -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/before-build
    mkdir -p /tmp/before && cp -r /tmp/before-src/python/convforge /tmp/before/ && \\
        cp /tmp/before-build/_core*.so /tmp/before/convforge/
    python bench/build_ab.py --before /tmp/before --after python --algorithm winograd_f4x3

A change to one kernel moves a layer by 5-15%, less than this shared host's drift between two
runs a minute apart; so each round times every shape in a fresh process of each build, the two
builds alternate round by round, and a shape's figure is its best (minimum) over the rounds,
the least disturbed sample. Reported: ms before and after, and before / after (> 1: the after
build is faster). Shapes default to the 3x3 'same' layers of examples/train_resnet.py (16, 32 and
64 channels at 28x28, 14x14 and 7x7) and one VGG-size layer; ``--algorithm`` forces the forward
(and, with ``--pass bwd_data``, the backward-data) algorithm in both builds. With ``--predict
lenet5,resnet`` the rounds time ``model.predict(x, batch_size=len(x))`` of LeNet-5 and of
examples/train_resnet.py's network instead (``--batch`` images, adaptive threads off, or on with
``--adaptive``, the default a user gets): the whole compiled inference pass, Python included,
where a batch-1 change shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# name: (input channels, output channels, image side); 3x3 kernels, stride 1, padding 1
SHAPES = {"c16_28": (16, 16, 28), "c32_14": (32, 32, 14), "c64_7": (64, 64, 7), "c128_28": (128, 128, 28)}

# Both children's timing: the best (minimum) per-call time of `samples` runs of `seconds` each
# (args["samples"], args["seconds"]: `args` is the child's global, read when best_of runs).
_BEST_OF = r"""
import time
def best_of(call):
    call()
    best = float("inf")
    for _ in range(args["samples"]):
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < args["seconds"]:
            call()
            k += 1
        best = min(best, (time.perf_counter() - start) / k)
    return best
"""

# Runs in a child process whose sys.path starts with one build's package directory.
_CHILD = r"""
import json, sys, time
import numpy as np
import convforge
from convforge import functional as F
args = json.loads(sys.argv[1])
convforge.set_num_threads(args["threads"])
rng = np.random.default_rng(0)
found = {"version": convforge.__file__}
for name, (ci, co, hw) in args["shapes"].items():
    x = rng.standard_normal((args["batch"], ci, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((co, ci, 3, 3)) * 0.1).astype(np.float32)
    b = np.zeros(co, np.float32)
    if args["pass"] == "fwd":
        out = np.empty((args["batch"], co, hw, hw), np.float32)
        call = lambda: F.conv2d(x, w, b, 1, 1, relu=True, out=out)
        forced = {"fwd": args["algorithm"]} if args["algorithm"] else {}
    else:
        dy = rng.standard_normal((args["batch"], co, hw, hw)).astype(np.float32)
        out = np.empty(x.shape, np.float32)
        call = lambda: F.conv2d_backward_data(dy, w, x.shape, 1, 1, out=out)
        forced = {"bwd_data": args["algorithm"]} if args["algorithm"] else {}
    with F.force_conv2d_algorithm(**forced):
        found[name] = best_of(call)
print(json.dumps(found))
"""

# The same for whole models' predict (--predict): examples/train_resnet.py is read from this
# checkout; its network and LeNet-5 are built from the same seeds in both builds.
_CHILD_PREDICT = r"""
import importlib.util, json, sys, time
import numpy as np
import convforge
import convforge.random
from convforge.train import lenet5
args = json.loads(sys.argv[1])
convforge.set_adaptive_threads(args["adaptive"])
convforge.set_num_threads(args["threads"])
spec = importlib.util.spec_from_file_location("train_resnet", args["resnet_example"])
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)
found = {"version": convforge.__file__}
for name in args["models"]:
    convforge.random.seed(0)
    model = lenet5() if name == "lenet5" else example.resnet()
    x = np.random.default_rng(0).random((args["batch"], 28, 28, 1), dtype=np.float32)
    call = lambda: model.predict(x, batch_size=len(x), verbose=0)
    found[name] = best_of(call)
print(json.dumps(found))
"""
MODELS = ("lenet5", "resnet")


def run_build(path: str, args: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path))
    child = _BEST_OF + (_CHILD_PREDICT if "models" in args else _CHILD)
    done = subprocess.run([sys.executable, "-c", child, json.dumps(args)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the build at {path} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="directory holding the 'before' build's convforge package")
    p.add_argument("--after", default=os.path.join(os.path.dirname(HERE), "python"),
                   help="directory holding the 'after' build's convforge package (default: this checkout's python/)")
    p.add_argument("--pass", dest="pass_", choices=("fwd", "bwd_data"), default="fwd")
    p.add_argument("--algorithm", default="", help="algorithm forced in both builds (default: each build's choice)")
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--predict", default="", help=f"comma list of {', '.join(MODELS)}: time whole models' predict instead")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--adaptive", action="store_true", help="--predict with the adaptive thread count on (default: off)")
    a = p.parse_args(argv)
    unknown = [s for s in a.shapes.split(",") if s not in SHAPES]
    if unknown:
        p.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    models = [m for m in a.predict.split(",") if m]
    if any(m not in MODELS for m in models):
        p.error(f"unknown models {[m for m in models if m not in MODELS]}; known: {', '.join(MODELS)}")
    args = {"shapes": {s: SHAPES[s] for s in a.shapes.split(",")}, "pass": a.pass_, "algorithm": a.algorithm,
            "batch": a.batch, "threads": a.threads, "samples": 3, "seconds": 0.1}
    if models:
        args = {"models": models, "resnet_example": os.path.join(os.path.dirname(HERE), "examples", "train_resnet.py"),
                "batch": a.batch, "threads": a.threads, "samples": 3, "seconds": 0.1, "adaptive": a.adaptive}
    best = {"before": {}, "after": {}}
    for _ in range(a.rounds):
        for side, path in (("before", a.before), ("after", a.after)):
            for name, t in run_build(path, args).items():
                if name != "version":
                    best[side][name] = min(best[side].get(name, float("inf")), t)
    if models:
        print(f"predict, batch {a.batch}, {a.threads} thread(s), adaptive threads {'on' if a.adaptive else 'off'}, "
              f"best of {a.rounds} alternating rounds")
        print("| model | ms before | ms after | before / after |")
        print("|---|---:|---:|---:|")
        for name in models:
            t0, t1 = best["before"][name] * 1e3, best["after"][name] * 1e3
            print(f"| {name} | {t0:.4f} | {t1:.4f} | {t0 / t1:.2f} |")
        return 0
    print(f"conv2d {a.pass_}, 3x3 'same', batch {a.batch}, {a.threads} thread(s), "
          f"algorithm {a.algorithm or 'default'}, best of {a.rounds} alternating rounds")
    print("| shape (C -> C, HxW) | ms before | ms after | before / after |")
    print("|---|---:|---:|---:|")
    for name in args["shapes"]:
        ci, co, hw = SHAPES[name]
        t0, t1 = best["before"][name] * 1e3, best["after"][name] * 1e3
        print(f"| {ci} -> {co}, {hw}x{hw} | {t0:.3f} | {t1:.3f} | {t0 / t1:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
