"""convforge vs the NumPy im2col baseline vs PyTorch, side by side, in one command.

    PYTHONPATH=python python bench/compare.py                   # full run -> bench/RESULTS.md
    PYTHONPATH=python python bench/compare.py --quick           # smoke run, fewer repeats
    PYTHONPATH=python python bench/compare.py --only conv --threads 1 --out /tmp/conv.md
    PYTHONPATH=python python bench/compare.py --tuned-malloc    # all of it under issue 12's tuned glibc malloc
    PYTHONPATH=python python bench/compare.py --both-malloc     # glibc defaults, then tuned: both in RESULTS.md

For every (op, pass, shape, threads), once the process's other threads are idle, each
contender is called once, its result checked against the others, warmed up (>= 3 calls and
>= 20 ms), then timed: median of --repeats samples,
a sample looping the call until it lasts --min-sample-ms. Prints one markdown
table plus summary lines (speed ratios, 2-thread scaling, the issue's targets)
and writes them, with the machine's facts, to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cfbench  # noqa: E402

ORDER = ("numpy", "convforge", "torch")  # NumPy first: its warm-up result is the reference

# Issue 12's "tuned PyTorch": glibc malloc keeps blocks up to 32 MiB on its heap (no mmap, so no
# page faults on every large temporary) and never trims it. glibc reads these once, at process
# start, so --tuned-malloc runs this script again in a child with them set; they then apply to
# every contender of that process alike.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def malloc_setting(environ=os.environ) -> str:
    """'tuned' if this process started with issue 12's malloc variables, else 'default' or 'other: ...'."""
    have = {k: environ.get(k) for k in TUNED_MALLOC}
    if have == TUNED_MALLOC:
        return "tuned"
    if not any(have.values()):
        return "default"
    return "other: " + " ".join(f"{k}={v}" for k, v in have.items() if v is not None)


def malloc_description(setting: str) -> str:
    if setting == "tuned":
        return ("**tuned** (issue 12): " + " ".join(f"`{k}={v}`" for k, v in TUNED_MALLOC.items())
                + " set before the process started, so convforge, NumPy and PyTorch all ran under it")
    if setting == "default":
        return ("glibc defaults (no `MALLOC_*` variables): **not** issue 12's tuned PyTorch; "
                "the `tuned` target lines need `--tuned-malloc`")
    return f"{setting} (neither the glibc defaults nor issue 12's tuned setting)"


# --------------------------------------------------------------------------- measuring


def measure(args, threads: list[int]) -> dict:
    specs = cfbench.all_specs(args.only)
    tries = 1 if args.quick else 3
    peak = {t: cfbench.fma_peak(t, tries=tries) for t in threads}
    copy = {}
    if any(s.op != "conv" for s in specs):
        copy = {t: cfbench.copy_bandwidth(t, repeats=2 if args.quick else 5) for t in threads}
    kernels = {s.kernel_op: cfbench.kernel_name(s.kernel_op) for s in specs}
    algorithms = {s.id: cfbench.conv_algorithm(s) for s in specs if s.op == "conv"}  # this process's ISA
    rows = []
    for index, spec in enumerate(specs):
        prob = cfbench.problem(spec)
        fns, extract = prob.fns[spec.pas], prob.extract[spec.pas]
        ref = None
        for t in threads:
            cfbench.set_threads(t)
            row = {"index": index, "op": spec.op, "pass": spec.pas, "shape": spec.shape, "dims": spec.dims,
                   "threads": t, "work": spec.work, "unit": spec.unit, "lenet": spec.lenet,
                   "working_set": spec.working_set, "kernel": kernels[spec.kernel_op], "algorithm": algorithms.get(spec.id),
                   "ms": {}, "min_ms": {}}
            for who in ORDER:
                if who not in fns:
                    continue
                fn = fns[who]
                cfbench.settle()  # the previous contender's spinning pool threads go to sleep first
                t0 = time.perf_counter()
                result = fn()
                first = time.perf_counter() - t0
                got = tuple(extract[who](result))
                if ref is None:
                    ref = tuple(cfbench.np.array(a, copy=True) for a in got)
                    ref_who = who
                else:
                    cfbench.check(spec, got, ref, who, ref_who)
                del result, got
                first = min(first, cfbench.warm_up(fn))
                samples = cfbench.time_call(fn, args.repeats, args.min_sample_ms / 1e3, first)
                row["ms"][who] = 1e3 * statistics.median(samples)
                row["min_ms"][who] = 1e3 * min(samples)
            rows.append(row)
            print(f"  {spec.id:<34} t{t}  " + "  ".join(f"{w} {ms:9.3f} ms" for w, ms in row["ms"].items()),
                  file=sys.stderr, flush=True)
        del prob, fns, extract, ref
        cfbench.release()
    return {"rows": rows, "peak": peak, "copy": copy, "blas": cfbench.blas().how, "blas_config": cfbench.blas().config,
            "malloc": malloc_setting()}


def measure_in_children(args, threads: list[int]) -> dict:
    """NumPy's BLAS threads are fixed at process start: one child per thread count, env set."""
    merged = {"rows": [], "peak": {}, "copy": {}}
    for t in threads:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        try:
            cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(t), "--_rows-json", path,
                   "--repeats", str(args.repeats), "--min-sample-ms", str(args.min_sample_ms), "--only", ",".join(args.only)]
            if args.quick:
                cmd.append("--quick")
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t))
            subprocess.run(cmd, env=env, check=True)
            with open(path) as f:
                part = json.load(f)
        finally:
            os.unlink(path)
        merged["rows"] += part["rows"]
        merged["peak"].update(part["peak"])
        merged["copy"].update(part["copy"])
        merged["blas"] = "$OPENBLAS_NUM_THREADS=T set at the start of one child process per thread count"
        merged["blas_config"] = part["blas_config"]
        merged["malloc"] = part["malloc"]
    merged["rows"].sort(key=lambda r: (r["index"], r["threads"]))
    return merged


def workspace_child(name: str, pas: str, threads: int) -> None:
    """Run one conv pass once in this (fresh) process; print the calling thread's workspace bytes."""
    case = next(c for c in cfbench.BENCH_CONV if c.name == name)
    x, w, dy, stride, pads, dil = cfbench.conv_arrays(case)
    cfbench.convforge.set_num_threads(threads)
    if pas == "fwd":
        cfbench.F.conv2d(x, w, None, case.stride, case.padding, case.dilation)
    elif pas == "bwd_data":
        cfbench.F.conv2d_backward_data(dy, w, x.shape, case.stride, case.padding, case.dilation)
    else:
        cfbench.F.conv2d_backward_weights(dy, x, w.shape, case.stride, case.padding, case.dilation,
                                          need_bias_grad=False)
    print(json.dumps({"bytes": cfbench.convforge._workspace_bytes()}))


def measure_workspace(threads: list[int]) -> dict:
    out = {}
    env = dict(os.environ, CONVFORGE_BENCH_NO_TORCH="1")
    for case in cfbench.BENCH_CONV:
        for pas in cfbench.CONV_PASSES:
            for t in threads:
                cmd = [sys.executable, os.path.abspath(__file__), "--_workspace", case.name, pas, str(t)]
                res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                out[(case.name, pas, t)] = json.loads(res.stdout.strip().splitlines()[-1])["bytes"]
    print(f"  workspace: {len(out)} fresh processes", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- targets


def _ratio(row, other):
    ms = row["ms"]
    return ms[other] / ms["convforge"] if other in ms and "convforge" in ms else None


def targets(row, scale, llc, tuned=False) -> list[tuple[str, bool]]:
    """The issues' targets that apply to this row, each (label, passed).

    ``tuned``: the run's process started under issue 12's tuned malloc, so PyTorch is
    "tuned PyTorch" and issue 12's per-row targets apply (its geomean target is in the summary).
    """
    out = []
    op, pas, t, pct = row["op"], row["pass"], row["threads"], row["pct"]
    vs_torch, vs_np = _ratio(row, "torch"), _ratio(row, "numpy")
    if op == "conv":
        if vs_torch is not None:
            out.append(("≥torch or 85%peak", vs_torch >= 1.0 or pct >= 85))
        if tuned and vs_torch is not None:
            out.append(("0.9×tuned torch", vs_torch >= 0.9))
            if pas == "fwd" and row["shape"] in ("resnet", "vgg") and t == 2:
                out.append(("1.3×tuned torch@2T", vs_torch >= 1.3))
        if pas == "fwd" and row["shape"] in ("resnet", "vgg") and t == 1:
            out.append(("80%peak@1T", pct >= 80))
    if op == "pool" and vs_torch is not None:
        out.append(("5×torch", vs_torch >= 5) if pas == "fwd" else ("≥torch", vs_torch >= 1))
    if op == "relu":
        if vs_torch is not None:
            out.append(("≥torch", vs_torch >= 1))
        if row["working_set"] > llc:
            out.append(("80%copy", pct >= 80))
    if op in ("conv", "pool") and vs_np is not None:
        need = 10 if row["lenet"] else 3
        out.append((f"{need}×numpy", vs_np >= need))
    if t == 2 and scale is not None and scale[1] > 1.0:  # scale = (ratio, 1-thread ms)
        out.append(("2T≥1.8×", scale[0] >= 1.8))
    return out


# --------------------------------------------------------------------------- misses


def how_far(row, label) -> str:
    """How far a row is from a target it misses, in numbers from the row itself."""
    vs_torch, vs_np, pct = _ratio(row, "torch"), _ratio(row, "numpy"), row["pct"]
    of = "of the FMA peak" if row["op"] in ("conv", "dense") else "of the copy bandwidth"
    if label.endswith("×numpy"):
        need = float(label.split("×")[0])
        return (f"{vs_np:.2f}× NumPy: needs {need / vs_np:.2f}× faster, i.e. {pct * need / vs_np:.0f}% {of} "
                f"(now {pct:.0f}%)")
    if label in ("0.9×tuned torch", "1.3×tuned torch@2T"):
        need = float(label.split("×")[0])
        return f"{vs_torch:.2f}× tuned PyTorch: needs {need / vs_torch:.2f}× faster ({pct:.0f}% {of} now)"
    if label in ("≥torch", "≥torch or 85%peak", "5×torch"):
        need = 5.0 if label == "5×torch" else 1.0
        text = f"{vs_torch:.2f}× PyTorch: needs {need / vs_torch:.2f}× faster"
        return text + (f"; {pct:.0f}% {of}" if label == "≥torch or 85%peak" else "")
    if label == "2T≥1.8×":
        return f"2 threads {row['scale'][0]:.2f}× one thread"
    return f"{pct:.0f}% {of}"


def why_missed(row, label, copy) -> str:
    """What this project's measurements and analysis say about a miss ('not analysed yet' if nothing)."""
    op, pas, shape = row["op"], row["pass"], row["shape"]
    lenet_c1, lenet_c3 = shape.startswith("lenet_c1"), shape.startswith("lenet_c3")
    if label == "2T≥1.8×":
        if op in ("relu", "pool") and copy.get(1) and copy.get(2) and copy[2] / copy[1] < 1.8:
            return (f"memory-bound: this machine's copy bandwidth grows {copy[2] / copy[1]:.2f}× from 1 to 2 threads "
                    f"({copy[1]:.1f} -> {copy[2]:.1f} GB/s), which bounds any kernel's 2-thread speed-up")
        if op in ("relu", "pool"):
            return ("memory-bound on a 25-256 MB tensor, whose bandwidth this VM shares with its neighbours: the same "
                    "build's 2-thread ratio moved between 1.2× and 2.9× across runs on 2026-11-22 (ReLU forward on "
                    "32x64x56x56 at 2 threads: 0.25 to 0.75 ms; PyTorch 0.24 to 0.53 ms)")
        return ("this VM's 2-thread speed varies from run to run (the two vCPUs' placement): the same build gave "
                "1.94×, 1.99× and 1.56× for dense bwd_data mlp in three consecutive runs (`python bench/compare.py "
                "--only dense`), 1.71×/1.98× for stem forward in two runs; a 2-thread row that fails in one run "
                "only is not a kernel property")
    if op == "conv" and lenet_c3 and pas == "fwd" and label.endswith("×numpy"):
        return ("the direct form (output channels along the lanes, each input value broadcast once per kernel row "
                "for the 5 taps that read it) runs C3 at 80-86% of the FMA peak; the rest is its pack, transposes "
                "and the call. NumPy's baseline is one OpenBLAS SGEMM over a 150-row im2col, so 10× of it needs "
                "about 90% of the peak")
    if op == "conv" and lenet_c1 and pas == "fwd" and label.endswith("×numpy"):
        return ("6 filters: the forward vectorises along the output pixels (rows of 28 fill 16 + 12 lanes; 25 taps "
                "per call amortise its loads and stores of 24 accumulators), 45-49% of the FMA peak; the full runs "
                "of 2026-11-22 before that kernel measured this row at 8.8-12.7× NumPy")
    if op == "conv" and lenet_c1 and pas == "bwd_data" and label.endswith("×numpy"):
        return ("one input channel: backward-data is one output row (M = 1) of 6 filters x 25 taps, 19-22% of the "
                "FMA peak; the other measurements of 2026-11-22 put this row at 19-50× NumPy and 9-12× PyTorch")
    if op == "conv" and lenet_c3 and pas == "bwd_data":
        return ("tap-wise form: 25 products of 6x16 by 16x136 added into shifted dx; 27% of the columns are the "
                "dropped ones, and each tap loads and stores its accumulators (a reduction of only 16 filters)")
    if op == "conv" and lenet_c1 and pas == "bwd_weights":
        return ("6 filters: the outer-product weight-gradient kernel vectorises over filters, so 6 of its 16 lanes "
                "work; a dot-product form along pixels (taps as rows) was built and was not faster")
    if op == "conv" and lenet_c3 and pas == "bwd_weights":
        return ("the sliding outer-product kernel (each input value broadcast once for the 5 taps that read it) runs "
                "at 80-88% of the FMA peak; NumPy's baseline is one OpenBLAS SGEMM on a 150-row im2col, so 10× of "
                "it needs about 90%")
    if op == "conv" and shape == "pointwise" and label.endswith("×numpy"):
        return ("a 1x1 convolution is a plain matrix product: NumPy's baseline is one OpenBLAS SGEMM with no im2col "
                "(only a transpose), so 3x of it would need more than the FMA peak")
    if op == "conv" and shape == "stem" and pas == "fwd":
        return ("the strided direct form: at column stride 2 each input value feeds only every other tap of a 7-wide "
                "kernel row (21 broadcasts and 14 weight vectors per 112 FMAs), 72-80% of the FMA peak; with 3 input "
                "channels there are 21 kernel rows per output pixel to amortise its per-call costs")
    if op == "conv" and shape == "pointwise" and pas == "bwd_weights":
        return ("the outer-product kernel with 1-wide taps: per pixel 4 dy vectors and 6 broadcasts for 24 FMAs, "
                "55-76% of the FMA peak across runs. A plain matrix-product form (dy packed into panels, x "
                "transposed to pixel-major rows, the forward's 12x32 micro-kernel, one 196-deep product per image) "
                "was built on 2026-11-22 and measured slower: 5.8 vs 4.8-5.2 ms on one thread")
    if op == "conv" and label in ("≥torch or 85%peak", "80%peak@1T"):
        return ("GEMM efficiency: the direct kernels (ResNet/VGG forward and backward-data) and the 12x32 "
                "register-blocked micro-kernel run these layers at 77-88% of the FMA peak, oneDNN's JIT kernels at "
                "80-90%; blocking the direct form's reduction so a channel group's weights stay in L1, and "
                "software prefetch of its input rows, were tried: no gain")
    if op == "pool" and pas == "bwd" and label == "≥torch":
        return ("dx is zeroed (memset, whose fast string stores write whole lines without reading them), then the "
                "scatter writes 1 in 4 of its elements again. A vectorised 2x2 backward that writes each window "
                "once (no memset) was built on 2026-11-22 and measured slower: 3.9 vs 2.2 ms on 32x64x56x56 (its "
                "ordinary stores read every dx line first) and 0.052 vs 0.023 ms on 64x16x10x10 (5 outputs per "
                "row fill 5 of 16 lanes); so was a scatter that stores instead of adding after checking that every "
                "index lies in its 2x2 window (0.12 vs 0.06 ms on 64x6x28x28)")
    if op == "pool" and pas == "bwd" and label.endswith("×numpy"):
        return ("NumPy's baseline (one bincount) is itself a single pass over the same arrays; 10x of it needs "
                "several times the copy bandwidth (see how far), out of reach for a pass that must write all of dx")
    if op == "relu" and label == "80%copy":
        return ("the copy bandwidth this row is compared with is measured once per run, and DRAM bandwidth on this "
                "shared VM moves within a run: the 64Mi rows at 2 threads measured between 79% and 131% of it "
                "across the runs of 2026-11-22, forward and backward alike")
    if op == "relu" and label == "≥torch":
        if row["working_set"] > 8 << 20:
            return ("one pass at DRAM/L3 bandwidth that this VM shares: on 32x64x56x56 (25.7 MB per array, L3 32 MB) "
                    "the medians of both convforge and PyTorch moved by up to 3× between runs of the same build on "
                    "2026-11-22. Since then its forward (51 MB moved) uses ordinary stores, which let the 32 MB L3 "
                    "keep part of the arrays between calls: 0.79-1.06 ms against 0.97-1.24 ms streaming")
        return ("one memory-bound pass of 5-30 us, where fixed costs show (functional.relu's argument checks: "
                "~1.2 us). Since 2026-11-22 the kernel takes 4.6-5.0 us on 64x16x10x10 for any alignment of x and "
                "out (PyTorch 6.2-7.3 us): the SIMD loops had been reloading their captured pointers after every "
                "store")
    return "not analysed yet"


# --------------------------------------------------------------------------- report


def _ms(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _x(v):
    return "—" if v is None else f"{v:.2f}×"


def _bytes(n):
    if n is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def build_report(args, data, threads, workspace) -> tuple[str, str]:
    """(table + summary for stdout, the whole RESULTS.md)."""
    rows = data["rows"]
    peak = {int(k): v for k, v in data["peak"].items()}
    copy = {int(k): v for k, v in data["copy"].items()}
    llc = cfbench.last_level_cache_bytes()
    malloc = data.get("malloc", "default")
    tuned = malloc == "tuned"
    one = {(r["index"], r["threads"]): r for r in rows}
    for r in rows:
        cf = r["ms"].get("convforge")
        r["rate"] = r["work"] / (cf / 1e3) / 1e9 if cf else None
        base = peak[r["threads"]] if r["op"] in ("conv", "dense") else copy.get(r["threads"])
        r["pct"] = 100 * r["rate"] / base if r["rate"] and base else float("nan")
        r1 = one.get((r["index"], 1))
        r["scale"] = None
        if r["threads"] > 1 and r1 and cf and r1["ms"].get("convforge"):
            r["scale"] = (r1["ms"]["convforge"] / cf, r1["ms"]["convforge"])
        r["targets"] = targets(r, r["scale"], llc, tuned)

    head = ("| op | pass | shape | T | algorithm | convforge ms | NumPy ms | PyTorch ms | vs NumPy | vs PyTorch | "
            "convforge rate | % peak | 2T/1T | targets |")
    lines = [head, "|" + "---|" * 5 + "---:|" * 8 + "---|"]
    for r in rows:
        ms = r["ms"]
        rate = f"{r['rate']:.1f} {r['unit']}" if r["rate"] else "—"
        pct = "—" if math.isnan(r["pct"]) else f"{r['pct']:.0f}%"
        tg = " ".join(f"{label}:{'PASS' if ok else '**FAIL**'}" for label, ok in r["targets"]) or "—"
        lines.append(
            f"| {r['op']} | {r['pass']} | {r['shape']} | {r['threads']} | {r.get('algorithm') or '—'} | "
            f"{_ms(ms.get('convforge'))} | "
            f"{_ms(ms.get('numpy'))} | {_ms(ms.get('torch'))} | {_x(_ratio(r, 'numpy'))} | {_x(_ratio(r, 'torch'))} | "
            f"{rate} | {pct} | {_x(r['scale'][0]) if r['scale'] else '—'} | {tg} |"
        )
    table = "\n".join(lines)

    # Summary lines.
    summary = []
    conv = [r for r in rows if r["op"] == "conv"]
    for t in threads:
        g_t = geomean([_ratio(r, "torch") for r in conv if r["threads"] == t])
        g_n = geomean([_ratio(r, "numpy") for r in conv if r["threads"] == t])
        if g_t or g_n:
            summary.append(
                f"- conv, all shapes and passes, {t} thread{'s' if t > 1 else ''}: geometric mean speed-up of convforge "
                f"vs PyTorch **{_x(g_t)}**, vs NumPy {_x(g_n)}" + (" (the headline number)" if t == 2 else "")
            )
    geomean_targets = []  # issue 12: conv geomean >= 1.5x tuned PyTorch, per thread count
    for t in threads:
        g_t = geomean([_ratio(r, "torch") for r in conv if r["threads"] == t])
        if tuned and g_t:
            geomean_targets.append((g_t >= 1.5, f"conv T{t} geomean {g_t:.2f}×"))
    if conv and not tuned:
        summary.append(f"- issue 12's targets against tuned PyTorch: not evaluated, this run's malloc: {malloc} "
                       "(they are evaluated in a `--tuned-malloc` run, or the tuned half of `--both-malloc`)")
    if tuned and 2 not in threads and any(r["shape"] in ("resnet", "vgg") for r in conv):
        summary.append("- issue 12's ResNet/VGG forward target (>= 1.3x tuned PyTorch) is at 2 threads: "
                       "not evaluated, this run has no 2-thread rows")
    dense = [r for r in rows if r["op"] == "dense"]
    for t in threads:
        g_t = geomean([_ratio(r, "torch") for r in dense if r["threads"] == t])
        g_n = geomean([_ratio(r, "numpy") for r in dense if r["threads"] == t])
        if g_t or g_n:
            summary.append(
                f"- dense (no target in the issue; for the record), {t} thread{'s' if t > 1 else ''}: geometric mean "
                f"speed-up of convforge vs PyTorch {_x(g_t)}, vs NumPy {_x(g_n)}"
            )
    scaled = [r["scale"][0] for r in rows if r["scale"] and r["threads"] == 2]
    if scaled:
        big = [r["scale"][0] for r in rows if r["scale"] and r["threads"] == 2 and r["scale"][1] > 1.0]
        summary.append(
            f"- 2-thread vs 1-thread scaling of convforge (column 2T/1T, per row): geometric mean {_x(geomean(scaled))} "
            f"over all rows, {_x(geomean(big))} over rows whose 1-thread call takes > 1 ms"
        )
    labels = {"1.5×tuned torch geomean": geomean_targets} if geomean_targets else {}
    for r in rows:
        for label, ok in r["targets"]:
            labels.setdefault(label, []).append((ok, f"{r['op']} {r['pass']} {r['shape']} T{r['threads']}"))
    meaning = {
        "≥torch or 85%peak": "conv: at least as fast as PyTorch, or >= 85% of the measured FMA peak",
        "80%peak@1T": "ResNet/VGG forward at 1 thread >= 80% of peak",
        "5×torch": "max-pool forward >= 5x PyTorch",
        "≥torch": "max-pool backward, ReLU: at least as fast as PyTorch",
        "80%copy": "ReLU >= 80% of copy bandwidth where the arrays do not fit in the last-level cache",
        "10×numpy": ">= 10x NumPy on LeNet shapes (conv, max-pool)",
        "3×numpy": ">= 3x NumPy on the other shapes (conv, max-pool)",
        "2T≥1.8×": "2 threads >= 1.8x one thread where the 1-thread call takes > 1 ms",
        "1.3×tuned torch@2T": "issue 12: ResNet/VGG forward >= 1.3x tuned PyTorch at 2 threads",
        "0.9×tuned torch": "issue 12: every conv pass row >= 0.9x tuned PyTorch",
        "1.5×tuned torch geomean": "issue 12: conv geometric mean (all shapes and passes, per thread count) "
                                   ">= 1.5x tuned PyTorch",
    }
    total = sum(len(v) for v in labels.values())
    passed = sum(ok for v in labels.values() for ok, _ in v)
    summary.append(f"- targets: **{passed}/{total} PASS**")
    for label, results in labels.items():
        fails = [where for ok, where in results if not ok]
        n_ok = len(results) - len(fails)
        line = f"  - `{label}` ({meaning.get(label, label)}): {n_ok}/{len(results)} PASS"
        if fails:
            line += "; FAIL: " + ", ".join(fails)
        summary.append(line)
    misses = ["| row | target | how far | why (from measurements and analysis, see bench/README.md) |",
              "|---|---|---|---|"]
    for r in rows:
        for label, ok in r["targets"]:
            if not ok:
                misses.append(f"| {r['op']} {r['pass']} {r['shape']} T{r['threads']} | {label} | {how_far(r, label)} | "
                              f"{why_missed(r, label, copy)} |")
    stdout = table + "\n\n" + "\n".join(summary)

    # RESULTS.md
    v = cfbench.versions()
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cmd = args.command or "python bench/compare.py " + " ".join(sys.argv[1:])
    md = [
        "# convforge vs NumPy vs PyTorch on CPU",
        "",
        f"Generated {now} by `{cmd.strip()}`" + (" — **QUICK smoke run: few repeats, not for comparison**" if args.quick else ""),
        "",
        "## Machine and versions",
        "",
        f"- CPU: {cfbench.cpu_model()}; {len(os.sched_getaffinity(0))} CPUs available to this process; caches (cpu0): {cfbench.cpu_caches()}",
        f"- convforge {v['convforge']} ({v['compiler']}, {v['build']}, ISA in use: {v['isa']}); "
        f"NumPy {v['numpy']}; PyTorch {v['torch']}; Python {v['python']}",
        f"- NumPy's BLAS: {data.get('blas_config') or 'unknown'}; its threads set with {data['blas']}",
        f"- glibc malloc: {malloc_description(malloc)}",
        "- Measured FMA peak (`convforge._fma_peak`, best of "
        + ("1 probe" if args.quick else "3 probes") + " of 0.2 s): "
        + ", ".join(f"{t} thread{'s' if t > 1 else ''}: **{peak[t]:.1f} GFLOP/s**" for t in threads),
    ]
    if copy:
        md.append(
            f"- Copy bandwidth (`np.copyto`, {cfbench.RELU_BIG * 4 // 2**20} MiB -> {cfbench.RELU_BIG * 4 // 2**20} MiB, "
            "read + write bytes, T Python threads each copying a slice): "
            + ", ".join(f"{t} thread{'s' if t > 1 else ''}: **{copy[t]:.1f} GB/s**" for t in threads)
        )
    md += [
        "- Timing: per contender, a wait until the process's other threads are idle, 1 call checked against the "
        f"others, a warm-up of >= 3 calls and >= 20 ms, then the median of {args.repeats} "
        f"samples; a sample repeats the call until it lasts >= {args.min_sample_ms:g} ms and is divided by the count",
        "",
        "## Results",
        "",
        "ms = median milliseconds per call; vs NumPy / vs PyTorch = their time / convforge's time (> 1: convforge faster); "
        "rate = convforge's GFLOP/s (conv: 2·N·K·C·R·S·OH·OW per pass; dense: 2·N·I·U) or GB/s (bytes of the arrays read and written); "
        "% peak = of the FMA peak above (conv, dense) or of the copy bandwidth above (max-pool, ReLU), at the row's thread count "
        "(conv rates count the direct convolution's FLOPs whatever the algorithm, so a Winograd row's effective rate "
        "can pass 100%: that is 'faster than direct convolution at the FMA peak'); "
        "2T/1T = convforge's 1-thread time / its time at T; "
        "algorithm = the conv2d algorithm convforge ran for the row (the first name `functional.conv2d_algorithms` "
        "gives for that pass and shape on float32, asked in the process that timed the row, on the ISA above; "
        "'(forced)' if `CONVFORGE_CONV_ALGO` forced one).",
        "",
        table,
        "",
        "## Summary",
        "",
        *summary,
        "",
        "## Targets missed: how far, and why",
        "",
        *(misses if len(misses) > 2 else ["None."]),
        "",
    ]
    if workspace:
        md += ["## Peak workspace per conv shape", "",
               "Scratch bytes held by convforge (`convforge._workspace_bytes()`, the calling thread's buffer, "
               "which also holds the per-thread slices) after ONE call of the pass in a FRESH process: the peak "
               "workspace of that (shape, pass, threads) alone.", ""]
        cols = [(p, t) for p in cfbench.CONV_PASSES for t in threads]
        md.append("| shape | " + " | ".join(f"{p} T{t}" for p, t in cols) + " |")
        md.append("|---|" + "---:|" * len(cols))
        for case in cfbench.BENCH_CONV:
            md.append(f"| {case.name} | " + " | ".join(_bytes(workspace.get((case.name, p, t))) for p, t in cols) + " |")
        md.append("")
    md += ["## Shapes", "", "| op | shape | dims |", "|---|---|---|"]
    seen = set()
    for r in rows:
        if (r["op"], r["shape"]) not in seen:
            seen.add((r["op"], r["shape"]))
            md.append(f"| {r['op']} | {r['shape']} | {r['dims']} |")
    md += ["", "## What each timed number includes", "", *WHAT_IS_TIMED, ""]
    return stdout, "\n".join(md)


WHAT_IS_TIMED = [
    "All data is float32, C-contiguous, made once per shape (seeded); every contender gets the same arrays "
    "(PyTorch through `torch.from_numpy`, no copy). Contenders run in the order NumPy, convforge, PyTorch; "
    "before each contender the script waits until the process's other threads are idle (`cfbench.settle`: OpenBLAS's and the OpenMP pools' workers spin up to ~0.1 s after a call and would steal a core). "
    "Thread count T is given to all three: `convforge.set_num_threads(T)`, `torch.set_num_threads(T)`, NumPy's BLAS (above).",
    "- **conv fwd**: convforge `functional.conv2d(x, w)` (argument checks + kernel + output allocation); "
    "NumPy `reference.conv2d_im2col` (padding copy, im2col copy, one matmul, NCHW transpose copy); "
    "PyTorch `F.conv2d` under `no_grad` (oneDNN/MKL as torch chooses). No bias.",
    "- **conv bwd_data**: convforge `functional.conv2d_backward_data(dy, w, x_shape, ...)` (dx only); "
    "PyTorch `torch.nn.grad.conv2d_input(x.shape, w, dy, ...)` under `no_grad` (dx only: "
    "`aten.convolution_backward` with output_mask `(True, False, False)` and a 1-element stand-in for x); "
    "NumPy `conv2d_backward_im2col(need_input_grad=True, need_bias_grad=False)`, whose API always computes dw too: "
    "**the NumPy bwd_data time includes a full weight-gradient pass** (im2col + dw matmul) on top of dcols matmul + col2im, "
    "so its 'vs NumPy' ratio flatters convforge by roughly the NumPy bwd_weights time.",
    "- **conv bwd_weights**: convforge `functional.conv2d_backward_weights(..., need_bias_grad=False)` (dw only); "
    "PyTorch `aten.convolution_backward(..., [False, True, False])`; "
    "NumPy `conv2d_backward_im2col(need_input_grad=False, need_bias_grad=False)` (im2col + one matmul).",
    "- **max-pool fwd** (2x2, stride 2, with int64 indices): convforge `functional.max_pool2d(..., return_indices=True)`; "
    "NumPy `reference.max_pool2d_im2col(..., return_indices=True)`; PyTorch `F.max_pool2d(..., return_indices=True)`. "
    "Bytes: x read, y and indices written. Outputs allocated by each call.",
    "- **max-pool bwd**: convforge `functional.max_pool2d_backward(dy, idx, x_shape)`; NumPy "
    "`reference.max_pool2d_backward_im2col` (a float64 bincount, cast back); PyTorch "
    "`aten.max_pool2d_with_indices_backward`. Bytes: dy and indices read, dx written. dx allocated by each call.",
    "- **ReLU fwd**: into a preallocated output (no allocation timed; a fresh 256 MB array per call would time page "
    "faults): convforge `functional.relu(x, out=y)`; NumPy `np.maximum(x, 0, out=y)`; PyTorch `torch.clamp_min(x, 0, out=y)` "
    "(ATen's `relu` is `clamp_min(x, 0)`; `aten.relu.out` is a wrapper that computes into a new tensor and copies). "
    "Bytes: x read + y written.",
    "- **ReLU bwd**: preallocated output: convforge `functional.relu_backward(dy, x, out=out)`; "
    "NumPy `np.multiply(dy, np.greater(x, 0, out=mask), out=dx)` (2 passes, preallocated bool mask); PyTorch "
    "`aten.threshold_backward.grad_input(dy, x, 0, grad_input=dx)`. Bytes: dy + x read, dx written.",
    "- **dense** (x (N, I), w (I, U) in Keras's layout, dy (N, U)): convforge `functional.dense(x, w)`, "
    "`functional.dense_backward_data(dy, w)` and `functional.dense_backward_weights(dy, x, need_bias_grad=False)`; NumPy `x @ w`, `dy @ w.T`, "
    "`x.T @ dy` (OpenBLAS at T threads); PyTorch `F.linear(x, wt)`, `mm(dy, wt)`, `mm(dy.t(), x)` with `wt` = w "
    "transposed once into torch's (U, I) layout, outside the timing. No bias; every call allocates its output.",
    "- Correctness before timing: conv and dense results agree to rtol 1e-3 / atol 1e-4·max|ref| with NumPy's; max-pool "
    "values and indices and ReLU results are bit-exact against NumPy's.",
    "- Workspace table: one subprocess per (shape, pass, threads), so each figure is that call's own peak, not a "
    "running maximum. (The pytest-benchmark suite records `workspace_bytes_running_max` instead: the running "
    "maximum over the session so far.)",
]


# --------------------------------------------------------------------------- main


def run_both_mallocs(args, argv: list[str]) -> int:
    """--both-malloc: the whole comparison under glibc's defaults, then under the tuned malloc.

    Each run is a child process started with its malloc environment (glibc reads it at
    start); the first also measures the workspace (convforge's own buffers, whatever
    malloc does). --out gets one file: a short header, then both reports in full.
    """
    command = "python bench/compare.py " + " ".join(argv)
    default_env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
    runs = [("glibc malloc defaults", default_env, []),
            ("tuned malloc (issue 12)", dict(os.environ, **TUNED_MALLOC), ["--no-workspace"])]
    parts = []
    for title, env, extra in runs:
        with tempfile.NamedTemporaryFile(suffix=".md", delete=False) as f:
            path = f.name
        try:
            print(f"--both-malloc: {title}", file=sys.stderr, flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), *argv, *extra, "--_one-malloc", "--_command", command,
                   "--out", path]
            rc = subprocess.run(cmd, env=env).returncode
            if rc:
                return rc
            with open(path) as f:
                body = f.read().split("\n", 1)[1]  # drop the report's own title
        finally:
            os.unlink(path)
        parts.append((title, body.replace("\n## ", "\n### ")))
    md = ["# convforge vs NumPy vs PyTorch on CPU: glibc malloc defaults and tuned", "",
          "Two runs of the same comparison, one after the other, each in its own process tree: first under glibc's "
          "default malloc, then under issue 12's tuned malloc (" + " ".join(f"`{k}={v}`" for k, v in
          TUNED_MALLOC.items()) + ", set before the process started, for every contender alike). A row's change "
          "between the two is malloc's effect plus this machine's run-to-run noise.", ""]
    for i, (title, body) in enumerate(parts, 1):
        md += [f"## Run {i} of {len(parts)}: {title}", body.rstrip("\n"), ""]
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write("\n".join(md))
        print(f"\nwrote {args.out} (both runs)", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 samples of >= 5 ms, one peak probe")
    p.add_argument("--only", default="conv,pool,relu,dense", help="conv, pool, relu, dense or a comma list (default all)")
    p.add_argument("--out", default=os.path.join(cfbench.HERE, "RESULTS.md"), help="markdown file to write "
                   "(default bench/RESULTS.md; '-' for none)")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per contender (default 5, quick 3)")
    p.add_argument("--min-sample-ms", type=float, default=None, help="minimum duration of one sample (default 20, quick 5)")
    p.add_argument("--no-workspace", action="store_true", help="skip the per-shape workspace subprocesses")
    p.add_argument("--tuned-malloc", action="store_true",
                   help="run everything in a child process started with " + " ".join(f"{k}={v}" for k, v in
                   TUNED_MALLOC.items()) + " (issue 12's tuned PyTorch; applies to all contenders alike)")
    p.add_argument("--both-malloc", action="store_true",
                   help="two full runs, glibc malloc defaults then --tuned-malloc, each in its own child process; "
                   "--out gets both reports, one after the other")
    p.add_argument("--_rows-json", dest="rows_json", help=argparse.SUPPRESS)
    p.add_argument("--_one-malloc", dest="one_malloc", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_command", dest="command", help=argparse.SUPPRESS)
    p.add_argument("--_workspace", nargs=3, metavar=("SHAPE", "PASS", "T"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._workspace:
        workspace_child(args._workspace[0], args._workspace[1], int(args._workspace[2]))
        return 0
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if not threads or min(threads) < 1:
        p.error("--threads needs thread counts >= 1")
    args.only = [o.strip() for o in args.only.split(",") if o.strip()]
    bad = [o for o in args.only if o not in cfbench.OPS]
    if bad:
        p.error(f"--only takes conv, pool, relu, dense; got {bad}")
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.min_sample_ms = args.min_sample_ms if args.min_sample_ms is not None else (5.0 if args.quick else 20.0)

    if args.rows_json:  # child of measure_in_children
        with open(args.rows_json, "w") as f:
            json.dump(measure(args, threads), f)
        return 0

    argv_now = sys.argv[1:] if argv is None else list(argv)
    if args.tuned_malloc and args.both_malloc:
        p.error("--tuned-malloc and --both-malloc exclude each other (--both-malloc includes a tuned run)")
    if args.both_malloc and not args.one_malloc:
        return run_both_mallocs(args, argv_now)
    if args.tuned_malloc and malloc_setting() != "tuned":
        # glibc reads the variables at process start only: setting them here would change nothing.
        env = dict(os.environ, **TUNED_MALLOC)
        print("--tuned-malloc: running again in a child process with "
              + " ".join(f"{k}={v}" for k, v in TUNED_MALLOC.items()), file=sys.stderr, flush=True)
        return subprocess.run([sys.executable, os.path.abspath(__file__), *argv_now], env=env).returncode

    started = time.perf_counter()
    blas = cfbench.blas()
    print(f"convforge {cfbench.convforge.__version__}, threads {threads}, NumPy BLAS threads via {blas.how}, "
          f"malloc: {malloc_setting()}", file=sys.stderr)
    if blas.dynamic or len(threads) == 1 and os.environ.get("OPENBLAS_NUM_THREADS") == str(threads[0]):
        data = measure(args, threads)
    else:
        data = measure_in_children(args, threads)
    workspace = {} if args.no_workspace or "conv" not in args.only else measure_workspace(threads)
    stdout, md = build_report(args, data, threads, workspace)
    print(stdout)
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write(md)
        print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
