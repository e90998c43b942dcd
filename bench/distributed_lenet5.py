"""Data-parallel LeNet-5 training: 2 ranks x 1 thread vs 1 process x 1 thread vs 1 process x 2 threads.

    python bench/distributed_lenet5.py                    # 3 rounds, one timed epoch each, global batch 64
    python bench/distributed_lenet5.py --rounds 5 --limit 19200
    python bench/distributed_lenet5.py --step-times       # also: 1-thread step time at batch 16/32/64/128

Every round starts each configuration as a fresh process (the 2-rank one with
``mpirun -n 2``; Open MPI binds each rank to one core and convforge.distributed gives it
one thread), one after the other, so the three are measured side by side under the same
machine load. Each trains LeNet-5 (61,706 parameters, SGD + momentum) on Fashion-MNIST at
the same global batch for two epochs and reports the second (warm) one. The 2-rank run also
times 300 isolated allreduces of its step buffer (the gradients + statistics, float32).
Prints a markdown table: minimum and median epoch time over rounds, and the ratios the
issue sets targets for (2x1 vs 1x1 >= 1.6, 2x1 vs 1x2 >= 0.9).
Needs ``pip install ".[mpi]"`` and Debian's ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(args) -> None:
    """One configuration: train, print one JSON line (on the primary)."""
    import convforge
    from convforge import callbacks, distributed
    from convforge.datasets import fashion_mnist
    from convforge.train import lenet5

    distributed.init()
    convforge.set_adaptive_threads(False)  # each configuration at its stated thread count
    if args.threads:
        convforge.set_num_threads(args.threads)
    (x, y), _ = fashion_mnist.load_data()
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    x = x[..., None].astype(np.float32) / np.float32(255)

    class EpochTimer(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            distributed.barrier()
            self._t0, self._cpu0 = time.perf_counter(), time.process_time()
            self._wait0, self._wait_cpu0 = waits.seconds, waits.cpu_seconds

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)
            self.cpu = time.process_time() - self._cpu0
            self.wait = waits.seconds - self._wait0
            self.compute_cpu = self.cpu - (waits.cpu_seconds - self._wait_cpu0)

    class TimedAllreduce:
        """The strategy's communicator, adding up the wall and CPU time spent in Allreduce (waiting included)."""

        def __init__(self, comm=None):
            self.comm, self.seconds, self.cpu_seconds = comm, 0.0, 0.0

        def Allreduce(self, *args, **kwargs):
            t0, c0 = time.perf_counter(), time.process_time()
            self.comm.Allreduce(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0

        def __getattr__(self, name):
            return getattr(self.comm, name)

    waits = TimedAllreduce()
    if distributed.size() > 1:
        strategy = distributed.strategy()
        waits.comm, strategy.comm = strategy.comm, waits

    result = {"ranks": distributed.size(), "threads": convforge.get_num_threads()}
    if args.step_times:
        result["step_ms"] = {}
        for bs in (16, 32, 64, 128):
            convforge.seed(0)
            model = lenet5()
            model.compile(optimizer=convforge.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
            n = min(len(x), bs * 150)
            timer = EpochTimer()
            model.fit(x[:n], y[:n], batch_size=bs, epochs=2, verbose=0, callbacks=[timer])
            result["step_ms"][bs] = 1e3 * timer.cpu / -(-n // bs)  # CPU time: what idle cores would take
    convforge.seed(0)
    model = lenet5()
    model.compile(
        optimizer=convforge.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=2, verbose=0, callbacks=[timer])
    result.update(epoch_s=timer.seconds[-1], steps=-(-len(x) // args.batch_size), accuracy=history.history["accuracy"][-1])
    # Per rank: CPU seconds of the timed epoch (what it would take on idle cores, spinning
    # included), and wall seconds inside the step allreduce (transfer + waiting for the other rank).
    per_rank = [(timer.cpu, timer.wait, timer.compute_cpu)]
    if distributed.size() > 1:
        per_rank = waits.comm.allgather(per_rank[0])
    result.update(
        cpu_s=max(r[0] for r in per_rank),
        allreduce_wait_s=max(r[1] for r in per_rank),
        compute_cpu_s=max(r[2] for r in per_rank),
    )
    if distributed.size() > 1:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        buf = np.zeros(model.count_params() + 5, dtype=np.float32)
        times = []
        for _ in range(300):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        result["allreduce_us"] = {"median": 1e6 * statistics.median(times), "min": 1e6 * min(times)}
    if distributed.is_primary():
        print("RESULT " + json.dumps(result), flush=True)


def _run(command, env) -> dict:
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64, help="the global batch (each of 2 ranks takes half)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--step-times", action="store_true", help="1-thread step times for the scaling model")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    env = {k: v for k, v in os.environ.items() if k not in ("CONVFORGE_NUM_THREADS", "OMP_NUM_THREADS")}
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--batch-size", str(args.batch_size)]
    if args.limit:
        me += ["--limit", str(args.limit)]
    configs = {
        "2 ranks x 1 thread": ["mpirun", "-n", "2", *me],
        "1 process x 1 thread": [*me, "--threads", "1"],
        "1 process x 2 threads": [*me, "--threads", "2"],
    }
    results = {name: [] for name in configs}
    step_times = None
    if args.step_times:
        step_times = _run([*me, "--threads", "1", "--step-times"], env)["step_ms"]
    for r in range(args.rounds):
        for name, command in configs.items():
            results[name].append(_run(command, env))
            print(f"round {r + 1}: {name}: {results[name][-1]['epoch_s']:.3f} s", file=sys.stderr, flush=True)

    def epoch(name, how):
        return how(res["epoch_s"] for res in results[name])

    print(f"\nLeNet-5, one epoch of {results['2 ranks x 1 thread'][0]['steps']} steps at global batch "
          f"{args.batch_size}, {args.rounds} rounds (fresh processes, side by side)\n")
    print("| configuration | threads/rank | epoch min (s) | epoch median (s) | all rounds (s) | CPU s/rank, min | "
          "CPU s/rank outside allreduce, min | in allreduce (s), median |")
    print("|---|---|---|---|---|---|---|---|")
    for name in configs:
        rounds = ", ".join(f"{res['epoch_s']:.3f}" for res in results[name])
        cpu = min(res["cpu_s"] for res in results[name])
        wait = statistics.median(res["allreduce_wait_s"] for res in results[name])
        compute = min(res["compute_cpu_s"] for res in results[name])
        print(f"| {name} | {results[name][0]['threads']} | {epoch(name, min):.3f} | "
              f"{epoch(name, statistics.median):.3f} | {rounds} | {cpu:.3f} | {compute:.3f} | {wait:.3f} |")
    two, one, one2 = "2 ranks x 1 thread", "1 process x 1 thread", "1 process x 2 threads"
    print()
    for how_name, how in (("min", min), ("median", statistics.median)):
        print(f"- speed-up of 2x1 over 1x1 ({how_name}s): **{epoch(one, how) / epoch(two, how):.2f}x** (target >= 1.6); "
              f"over 1x2: **{epoch(one2, how) / epoch(two, how):.2f}x** (target >= 0.9)")
    allreduce_s = min(res["allreduce_us"]["median"] for res in results[two]) * 1e-6
    steps = results[two][0]["steps"]
    idle_two = min(r["compute_cpu_s"] for r in results[two]) + steps * allreduce_s
    print(f"- idle-cores estimate (CPU time is what the work takes when nothing else runs): 1x1 "
          f"{min(r['cpu_s'] for r in results[one]):.3f} s vs 2x1 = busiest rank's CPU outside the allreduce + "
          f"{steps} x {allreduce_s * 1e6:.0f} us isolated allreduce = {idle_two:.3f} s: "
          f"**{min(r['cpu_s'] for r in results[one]) / idle_two:.2f}x**")
    paired = [a["epoch_s"] / b["epoch_s"] for a, b in zip(results[one], results[two])]
    print(f"- per-round 1x1/2x1 ratios: {', '.join(f'{v:.2f}' for v in paired)}")
    allreduce = [res["allreduce_us"] for res in results[two]]
    medians = ", ".join(f"{a['median']:.0f}" for a in allreduce)
    print(f"- allreduce of the {61_706 + 5}-float step buffer between 2 local ranks: median "
          f"{statistics.median(a['median'] for a in allreduce):.0f} us (per-round medians "
          f"{medians}; best {min(a['min'] for a in allreduce):.0f} us)")
    if step_times:
        print(f"- 1-thread step CPU time by batch (ms): {json.dumps({k: round(v, 3) for k, v in step_times.items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
