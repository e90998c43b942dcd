"""pytest-benchmark plumbing for bench/ (run explicitly: it is outside testpaths).

    python -m pytest bench/ --benchmark-only                 # time everything
    python -m pytest bench/ -q --benchmark-disable           # correctness smoke, one call each
    python -m pytest bench/ --benchmark-only -k conv-fwd-resnet-t1

Every test is one (op, pass, shape, threads, contender); tests of the same
(op, pass, shape, threads) share a pytest-benchmark group, so the contenders are
printed side by side. Before it is timed, each contender's result is checked
against another contender's (NumPy's; NumPy's own against convforge's).
``--bench-threads 1,2`` chooses the thread counts.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # cfbench

import cfbench  # noqa: E402


def pytest_addoption(parser, pluginmanager):
    parser.addoption("--bench-threads", default="1,2", help="comma-separated thread counts to time (default 1,2)")
    if not pluginmanager.hasplugin("benchmark"):
        # Without pytest-benchmark the suite still runs, as a correctness smoke (one call each,
        # untimed); accept the flag that CI scripts pass so the same command works.
        parser.addoption("--benchmark-disable", action="store_true",
                         help="(pytest-benchmark is not installed: bench tests always run untimed)")


def _threads(config) -> list[int]:
    text = config.getoption("--bench-threads")
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise pytest.UsageError(f"--bench-threads must be comma-separated ints, got {text!r}") from None
    if not threads or min(threads) < 1:
        raise pytest.UsageError(f"--bench-threads needs thread counts >= 1, got {text!r}")
    return threads


class BenchParam:
    def __init__(self, spec: cfbench.Spec, threads: int, who: str):
        self.spec, self.threads, self.who = spec, threads, who

    @property
    def id(self) -> str:
        return f"{self.spec.op}-{self.spec.pas}-{self.spec.shape}-t{self.threads}-{self.who}"

    @property
    def group(self) -> str:
        return f"{self.spec.op} {self.spec.pas} {self.spec.shape} t{self.threads}"


def pytest_generate_tests(metafunc):
    if "bench" not in metafunc.fixturenames:
        return
    specs = metafunc.module.SPECS
    # Shape outermost, so that one shape's data is built once and freed before the next.
    params = [BenchParam(s, t, who) for s in specs for t in _threads(metafunc.config) for who in cfbench.CONTENDERS]
    torch_reason = None if cfbench.torch_available() else "torch is not installed (or CONVFORGE_BENCH_NO_TORCH=1)"
    # Skips are decided here, at collection, not in the test: pytest-benchmark warns about a
    # benchmark fixture that a test did not use, and pyproject turns warnings into errors.
    items = []
    for p in params:
        reason = None
        if p.who == "torch":
            reason = torch_reason or (None if p.spec.torch_ok else "padding that torch cannot express")
        items.append(pytest.param(p, id=p.id, marks=pytest.mark.skip(reason=reason) if reason else ()))
    metafunc.parametrize("bench", items)


class Machine:
    """Measured once per session and thread count: FMA peak, copy bandwidth."""

    def __init__(self):
        self._peak: dict[int, float] = {}
        self._copy: dict[int, float] = {}
        self.llc = cfbench.last_level_cache_bytes()

    def peak(self, threads: int) -> float:
        if threads not in self._peak:
            self._peak[threads] = cfbench.fma_peak(threads)
        return self._peak[threads]

    def copy(self, threads: int) -> float:
        if threads not in self._copy:
            self._copy[threads] = cfbench.copy_bandwidth(threads)
        return self._copy[threads]


@pytest.fixture(scope="session")
def machine():
    import convforge

    before = convforge.get_num_threads()
    yield Machine()
    cfbench.release()
    convforge.set_num_threads(before)


class _Untimed:
    """Stands in for pytest-benchmark's fixture when the plugin is not installed or not loaded."""

    disabled = True
    stats = None

    def __init__(self):
        self.extra_info: dict = {}
        self.group = None

    def __call__(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class _UntimedPlugin:
    @pytest.fixture
    def benchmark(self):
        return _Untimed()


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(_UntimedPlugin(), "convforge-bench-untimed")


@pytest.fixture
def run_bench(machine):
    """Check, then time, one contender; fills benchmark.group and benchmark.extra_info."""

    def run(param: BenchParam, benchmark) -> None:
        spec, threads, who = param.spec, param.threads, param.who
        prob = cfbench.problem(spec)
        assert who in prob.fns[spec.pas], f"no {who} contender for {spec.id}"  # skipped at collection otherwise
        cfbench.set_threads(threads)
        fn = prob.fns[spec.pas][who]

        # Correctness first: NumPy is the reference; NumPy itself is held to convforge.
        ref_who = "convforge" if who == "numpy" else "numpy"
        got = tuple(prob.extract[spec.pas][who](fn()))
        cfbench.check(spec, got, prob.output(spec.pas, ref_who), who, ref_who)

        blas = cfbench.blas()
        benchmark.group = param.group
        info = benchmark.extra_info
        info.update({"op": spec.op, "pass": spec.pas})
        info.update(shape=spec.shape, dims=spec.dims, contender=who, threads=threads,
                    work=spec.work, unit=spec.unit, isa=cfbench.convforge.build_info()["isa"],
                    kernel=cfbench.kernel_name(spec.kernel_op) if who == "convforge" else
                    {"numpy": "numpy-im2col" if spec.op != "relu" else "numpy", "torch": "torch"}[who],
                    blas_threads_control=blas.how, blas_threads=blas.get())
        benchmark(fn)

        if who == "convforge" and spec.op == "conv":
            info["algorithm"] = cfbench.conv_algorithm(spec)  # what compare.py's algorithm column shows
            # Scratch held by the calling thread: a running max over the session so far.
            info["workspace_bytes_running_max"] = cfbench.convforge._workspace_bytes()
        stats = getattr(benchmark, "stats", None)
        if benchmark.disabled or stats is None:
            return
        median = stats.stats.median
        rate = spec.rate(median)
        if spec.op == "conv":
            peak = machine.peak(threads)
            info.update(gflops=rate, peak_gflops=peak, pct_peak=100 * rate / peak)
        else:
            copy = machine.copy(threads)
            info.update(gbps=rate, copy_gbps=copy, pct_copy_bw=100 * rate / copy,
                        larger_than_llc=spec.working_set > machine.llc)

    return run
