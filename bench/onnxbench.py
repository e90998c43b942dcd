"""convforge ``predict`` vs onnxruntime on the same model, exported by ``model.export``.

    python bench/onnxbench.py                          # LeNet-5, batch 1/64/10000, 1 and 2 threads
    python bench/onnxbench.py --rounds 9 --out -       # more rounds, no file written
    python bench/onnxbench.py --batches 64 --threads 2
    python bench/onnxbench.py --batches 1 --after-idle 0.02,0.2 --out -   # first call after idling

Both sides get the same channels-last float32 images in one call: ``model.predict(x,
batch_size=min(len(x), 256))`` (``--cf-batch-size``: predict walks 10,000 images in slices that
stay in cache) and ``session.run`` on the whole array (the exported graph includes the NHWC ->
NCHW transpose that ``predict`` also does). onnxruntime runs with its defaults (all
graph optimisations, spinning thread pool) and ``intra_op_num_threads`` = convforge's thread
count, ``inter_op_num_threads`` = 1. Outputs are checked against each other before timing.
The two contenders alternate within each round, so that a noisy neighbour slows both; each
sample repeats the call until it has run for ``--min-sample-ms``.

Each contender runs in a process of its own (``spawn``; the convforge model goes there as a
saved file), and the one not timing waits idle: as a deployment runs one of them. In one
process the two thread pools fight: onnxruntime's workers keep spinning after its calls and
took a core from convforge's (LeNet-5, 64 images, 2 threads: convforge 0.59 ms with
onnxruntime's spinning on, 0.45 ms with it off; onnxruntime 0.61 vs 0.83 ms: its spinning helps
its own next call). ``--same-process`` times both in this process as before. Prints, and writes to
``bench/ONNX_RESULTS.md``, a markdown table: median ms per call and the spread (min-max over
rounds) for each, and the speed-up ``onnxruntime / convforge`` (issue 17's target: >= 1.3 on
every row).

``--after-idle`` times what a loop of calls hides: a server answering one request at a time,
whose thread pools have gone to sleep between requests. Each contender sleeps the gap, then
one call is timed, ``--trials`` times; the table gives the median and the worst.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

import convforge
from convforge.train import lenet5

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = 1.3


def models() -> dict:
    """name -> (built convforge model, per-sample input shape): LeNet-5, and the ResNet of
    examples/train_resnet.py where this convforge has graph models and its layers."""
    convforge.seed(0)
    found = {"lenet5": (lenet5(), (28, 28, 1))}
    try:
        spec = importlib.util.spec_from_file_location("train_resnet", os.path.join(ROOT, "examples", "train_resnet.py"))
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        found["resnet"] = (example.resnet(), (28, 28, 1))
    except (ImportError, AttributeError, FileNotFoundError):
        pass
    return found


def images(n: int, shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def ort_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class Contenders:
    """The two calls to time for one (model, threads): convforge predict and onnxruntime run."""

    def __init__(self, model, threads: int, directory: str, batch_size: int = 256):
        self.model, self.threads, self.batch_size = model, threads, batch_size
        path = os.path.join(directory, f"{model.name}.onnx")
        if not os.path.exists(path):
            model.export(path)
        self.session = ort_session(path, threads)
        self.input = self.session.get_inputs()[0].name

    def convforge(self, x):
        # A row is measured at its thread count: predict's adaptive count would react to
        # onnxruntime's threads still spinning from the call before (busy_machine.py measures it).
        convforge.set_adaptive_threads(False)
        convforge.set_num_threads(self.threads)
        return self.model.predict(x, batch_size=min(len(x), self.batch_size), verbose=0)

    def onnxruntime(self, x):
        return self.session.run(None, {self.input: x})[0]

    def check(self, x) -> None:
        np.testing.assert_allclose(self.onnxruntime(x), self.convforge(x), rtol=1e-4, atol=1e-5)

    def prepare(self, x) -> None:
        """Check the outputs, warm both up (workspaces, thread pools) on this input."""
        self.check(x)
        self._x = x

    def sample(self, who: str, min_seconds: float) -> float:
        return sample(getattr(self, who), self._x, min_seconds)

    def close(self) -> None:
        pass


def _worker(conn, who: str, model_path: str, onnx_path: str, threads: int, batch_size: int) -> None:
    """One contender in a process of its own: answers ("x", array) with its output and
    ("sample", seconds) with seconds per call, until ("stop", None)."""
    if who == "convforge":
        model = convforge.load_model(model_path, compile=False)
        convforge.set_adaptive_threads(False)
        convforge.set_num_threads(threads)

        def run(x):
            return model.predict(x, batch_size=min(len(x), batch_size), verbose=0)
    else:
        session = ort_session(onnx_path, threads)
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x})[0]
    x = None
    while True:
        command, argument = conn.recv()
        if command == "x":
            x = argument
            conn.send(run(x))
        elif command == "sample":
            conn.send(sample(run, x, argument))
        elif command == "after_idle":
            conn.send(after_idle(run, x, *argument))
        else:
            conn.close()
            return


class IsolatedContenders:
    """Contenders as two processes, each timed while the other waits (see the module's docstring)."""

    PAUSE_S = 0.05  # after a switch: the idle side's spinning threads go to sleep

    def __init__(self, model, threads: int, directory: str, batch_size: int = 256):
        onnx_path = os.path.join(directory, f"{model.name}.onnx")
        if not os.path.exists(onnx_path):
            model.export(onnx_path)
        model_path = os.path.join(directory, f"{model.name}.npz")
        if not os.path.exists(model_path):
            model.save(model_path)
        context = multiprocessing.get_context("spawn")  # a forked child's OpenMP runs on one thread
        self.pipes, self.processes = {}, []
        for who in ("convforge", "onnxruntime"):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs, who, model_path, onnx_path, threads, batch_size),
                                      daemon=True)
            process.start()
            self.pipes[who] = ours
            self.processes.append(process)

    def _ask(self, who: str, command: str, argument):
        self.pipes[who].send((command, argument))
        return self.pipes[who].recv()

    def prepare(self, x) -> None:
        outputs = {who: self._ask(who, "x", x) for who in self.pipes}
        np.testing.assert_allclose(outputs["onnxruntime"], outputs["convforge"], rtol=1e-4, atol=1e-5)

    def sample(self, who: str, min_seconds: float) -> float:
        time.sleep(self.PAUSE_S)
        return self._ask(who, "sample", min_seconds)

    def after_idle(self, who: str, gap: float, trials: int) -> list[float]:
        return self._ask(who, "after_idle", (gap, trials))

    def close(self) -> None:
        for pipe in self.pipes.values():
            pipe.send(("stop", None))
        for process in self.processes:
            process.join(timeout=30)


def sample(fn, x, min_seconds: float) -> float:
    """Seconds per call: repeat until min_seconds have passed."""
    calls, start = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def after_idle(fn, x, gap: float, trials: int) -> list[float]:
    """Seconds of the first call after ``gap`` seconds without one, ``trials`` times: a server
    answering one request at a time. Thread pools have gone to sleep by then (and on a busy host
    the idle CPU may have been taken away), which a loop of calls never shows."""
    fn(x)
    times = []
    for _ in range(trials):
        time.sleep(gap)
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times


def measure_after_idle(contenders, x, gap: float, trials: int) -> dict:
    contenders.prepare(x)
    return {who: contenders.after_idle(who, gap, trials) for who in ("convforge", "onnxruntime")}


def idle_table(rows) -> str:
    lines = [
        "| model | batch | threads | idle before, s | convforge ms (median, max) | onnxruntime ms (median, max) | "
        "speed-up (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, batch, threads, gap, times in rows:
        cf, rt = times["convforge"], times["onnxruntime"]

        def cell(t):
            return f"{statistics.median(t) * 1e3:.3f} ({max(t) * 1e3:.3f})"

        ratio = statistics.median(rt) / statistics.median(cf)
        lines.append(f"| {name} | {batch} | {threads} | {gap:g} | {cell(cf)} | {cell(rt)} | {ratio:.2f}x |")
    return "\n".join(lines)


def measure(contenders, x, rounds: int, min_seconds: float) -> dict:
    times = {"convforge": [], "onnxruntime": []}
    contenders.prepare(x)  # outputs checked; both warmed up
    for r in range(rounds):
        order = ("convforge", "onnxruntime") if r % 2 == 0 else ("onnxruntime", "convforge")
        for who in order:
            times[who].append(contenders.sample(who, min_seconds))
    return times


def table(rows) -> str:
    lines = [
        "| model | batch | threads | convforge ms (min-max) | onnxruntime ms (min-max) | speed-up (median) | "
        f"target >= {TARGET} |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, batch, threads, times in rows:
        cf, rt = times["convforge"], times["onnxruntime"]
        ratio = statistics.median(rt) / statistics.median(cf)

        def cell(t):
            return f"{statistics.median(t) * 1e3:.3f} ({min(t) * 1e3:.3f}-{max(t) * 1e3:.3f})"

        verdict = "PASS" if ratio >= TARGET else "FAIL"
        lines.append(f"| {name} | {batch} | {threads} | {cell(cf)} | {cell(rt)} | {ratio:.2f}x | {verdict} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,64,10000")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-sample-ms", type=float, default=200.0)
    p.add_argument("--cf-batch-size", type=int, default=256, help="predict's batch_size (at most the row's batch)")
    p.add_argument("--out", default=os.path.join(HERE, "ONNX_RESULTS.md"), help="markdown file, '-' for none")
    p.add_argument("--same-process", action="store_true",
                   help="time both contenders in this process (their thread pools then interfere)")
    p.add_argument("--after-idle", default="",
                   help="comma list of idle gaps in seconds: instead of loops of calls, time the first call "
                        "after each gap (--trials times; isolated processes only)")
    p.add_argument("--trials", type=int, default=20, help="calls per --after-idle gap")
    args = p.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed (pip install onnxruntime): nothing to compare with", file=sys.stderr)
        return 1
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    gaps = [float(g) for g in args.after_idle.split(",") if g.strip()]
    if gaps and args.same_process:
        p.error("--after-idle times each contender in its own process: drop --same-process")
    if any(g < 0 for g in gaps) or args.trials < 1:
        p.error("--after-idle gaps must be >= 0 and --trials >= 1")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, (model, shape) in models().items():
            for t in threads:
                kind = Contenders if args.same_process else IsolatedContenders
                contenders = kind(model, t, directory, args.cf_batch_size)
                try:
                    for batch in batches:
                        x = images(batch, shape)
                        if gaps:
                            for gap in gaps:
                                rows.append((name, batch, t, gap, measure_after_idle(contenders, x, gap, args.trials)))
                                print(idle_table(rows[-1:]).splitlines()[-1], flush=True)
                            continue
                        rows.append((name, batch, t, measure(contenders, x, args.rounds, args.min_sample_ms / 1e3)))
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                finally:
                    contenders.close()
    report = (
        f"# convforge predict vs onnxruntime\n\n`python bench/onnxbench.py {' '.join(argv or sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; convforge {convforge.__version__} "
        f"({convforge.build_info()['isa']}), onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; "
        + (f"the first call after each idle gap, {args.trials} times per contender, each in its own process "
           "(the other one idle meanwhile).\n\n" + idle_table(rows) if gaps else
           f"{args.rounds} rounds of >= {args.min_sample_ms:g} ms per contender, "
           f"{'both in one process' if args.same_process else 'each in its own process'}.\n\n" + table(rows))
        + "\n"
    )
    print()
    print(report)
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
