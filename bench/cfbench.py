"""What bench/ times and how: the problems, the contenders, thread control, machine facts.

Shared by the pytest-benchmark suites (``bench/test_bench_*.py``) and by the
one-command comparison (``bench/compare.py``), so that both time exactly the
same calls on exactly the same data.

Contenders, for every (op, pass, shape):

* ``convforge`` -- the C++ kernels through the public API (``convforge.functional``),
  one pass at a time: ``conv2d_backward_data`` / ``conv2d_backward_weights`` (dx alone,
  dw alone), ``dense_backward_data`` / ``dense_backward_weights``, and ReLU backward
  with a preallocated ``out=``.
* ``numpy`` -- the im2col baseline of ``convforge.reference`` (``np.maximum`` and a
  masked multiply for ReLU, ``np.matmul`` -- NumPy's OpenBLAS -- for dense).
* ``torch`` -- PyTorch's CPU ops, when torch is installed (a benchmark peer only).
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import math
import os
import platform
import statistics
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_TESTS = os.path.join(ROOT, "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)  # the named shapes live in tests/shapes.py, defined once

import numpy as np  # noqa: E402

import convforge  # noqa: E402
from convforge import functional as F  # noqa: E402
from convforge import reference as R  # noqa: E402
from convforge._params import conv_params, flops_conv2d, pool_params  # noqa: E402
from shapes import BENCH_CONV, BENCH_POOL, ConvCase  # noqa: E402

CONTENDERS = ("convforge", "numpy", "torch")
OPS = ("conv", "pool", "relu", "dense")

# Max-pool / ReLU tensors get the names of the layers they come from.
POOL_NAMES = {(64, 6, 28, 28): "lenet_s2", (64, 16, 10, 10): "lenet_s4", (32, 64, 56, 56): "resnet_pool"}
# Dense layers (batch, in_features, units): LeNet-5's F5 and F6 at batch 64, and a wider MLP layer.
BENCH_DENSE = {"lenet_f5": (64, 400, 120), "lenet_f6": (64, 120, 84), "mlp": (256, 1024, 1024)}
RELU_BIG = 64 * 2**20  # elements: 256 MB of float32, far beyond any cache
POOL_K = 2  # 2x2 windows, stride 2


# --------------------------------------------------------------------------- torch (optional)

_TORCH: Any = None
_TORCH_TRIED = False


def torch_available() -> bool:
    """Whether the torch contender can run, without importing torch."""
    return os.environ.get("CONVFORGE_BENCH_NO_TORCH") != "1" and importlib.util.find_spec("torch") is not None


def torch_module():
    """``torch`` if it is installed (imported on first use), else None."""
    global _TORCH, _TORCH_TRIED
    if not _TORCH_TRIED:
        _TORCH_TRIED = True
        if torch_available():
            import torch

            _TORCH = torch
    return _TORCH


# --------------------------------------------------------------------------- NumPy's BLAS threads


class BlasThreads:
    """Sets the thread count of the BLAS under NumPy's matmul.

    In order of preference: threadpoolctl (if installed); the OpenBLAS that NumPy
    loaded, called through ctypes exactly as threadpoolctl would
    (``openblas_set_num_threads``; NumPy's wheels ship it as
    ``scipy_openblas_set_num_threads64_``); else nothing can be changed at run time
    and the count is whatever $OPENBLAS_NUM_THREADS said at process start
    (``compare.py`` then runs one child process per thread count with it set).
    ``CONVFORGE_BENCH_BLAS=env`` forces the last mode (to test it).
    """

    _SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
    _GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")

    def __init__(self) -> None:
        self.mode = "env"
        self.how = ""
        self.config = ""  # the BLAS library's own description, where it can be had
        self._limiter = None
        self._set = self._get = None
        forced = os.environ.get("CONVFORGE_BENCH_BLAS", "")
        if forced not in ("", "env", "ctypes", "threadpoolctl"):
            raise ValueError(f"CONVFORGE_BENCH_BLAS must be env, ctypes or threadpoolctl, got {forced!r}")
        if forced in ("", "threadpoolctl") and importlib.util.find_spec("threadpoolctl") is not None:
            import threadpoolctl

            self.mode = "threadpoolctl"
            self.how = f"threadpoolctl {threadpoolctl.__version__} (threadpool_limits(t, user_api='blas'))"
            self._tpc = threadpoolctl
            blas_libs = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
            if blas_libs:
                self.config = f"{blas_libs[0].get('internal_api')} {blas_libs[0].get('version')}"
            return
        if forced in ("", "ctypes") and self._find_openblas():
            self.mode = "ctypes"
            return
        value = os.environ.get("OPENBLAS_NUM_THREADS")
        self.how = f"$OPENBLAS_NUM_THREADS={value if value is not None else 'unset'} at process start"
        try:
            dep = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            self.config = f"{dep.get('name')} {dep.get('version')}"
        except Exception:  # older NumPy: no mode="dicts"
            pass

    @property
    def dynamic(self) -> bool:
        return self.mode != "env"

    def _find_openblas(self) -> bool:
        np.dot(np.ones((2, 2)), np.ones((2, 2)))  # make sure the BLAS is loaded
        try:
            with open("/proc/self/maps") as maps:
                libs = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
        except OSError:
            return False
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for set_name, get_name in zip(self._SET, self._GET):
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    self._set, self._get = getattr(lib, set_name), getattr(lib, get_name)
                    self._set.argtypes, self._set.restype = [ctypes.c_int], None
                    self._get.argtypes, self._get.restype = [], ctypes.c_int
                    self.how = f"ctypes: {set_name}() in {os.path.basename(path)} (NumPy's OpenBLAS)"
                    conf = getattr(lib, set_name.replace("set_num_threads", "get_config"), None)
                    if conf is not None:
                        conf.argtypes, conf.restype = [], ctypes.c_char_p
                        self.config = conf().decode(errors="replace").strip()
                    return True
        return False

    def set(self, threads: int) -> None:
        if self.mode == "threadpoolctl":
            self._limiter = self._tpc.threadpool_limits(limits=threads, user_api="blas")
        elif self.mode == "ctypes":
            self._set(threads)

    def get(self) -> int | None:
        if self.mode == "threadpoolctl":
            infos = [i for i in self._tpc.threadpool_info() if i.get("user_api") == "blas"]
            return infos[0]["num_threads"] if infos else None
        if self.mode == "ctypes":
            return int(self._get())
        value = os.environ.get("OPENBLAS_NUM_THREADS")
        return int(value) if value and value.isdigit() else None


_BLAS: BlasThreads | None = None


def blas() -> BlasThreads:
    global _BLAS
    if _BLAS is None:
        _BLAS = BlasThreads()
    return _BLAS


def set_threads(threads: int) -> None:
    """Give every contender ``threads`` threads: convforge, PyTorch, NumPy's BLAS. A row is measured
    at its thread count, so convforge's adaptive count (fit/evaluate/predict) is off here."""
    convforge.set_adaptive_threads(False)
    convforge.set_num_threads(threads)
    torch = torch_module()
    if torch is not None:
        torch.set_num_threads(threads)
    blas().set(threads)


# --------------------------------------------------------------------------- machine facts


def fma_peak(threads: int, tries: int = 3, seconds: float = 0.2) -> float:
    """This machine's FMA throughput in GFLOP/s on ``threads`` threads (best of ``tries`` probes)."""
    return max(convforge._fma_peak(threads, seconds)["gflops"] for _ in range(tries))


def copy_bandwidth(threads: int, elements: int = RELU_BIG, repeats: int = 5) -> float:
    """GB/s of ``np.copyto`` between two float32 buffers of ``elements`` (read + write bytes).

    With ``threads`` > 1 each Python thread copies its own contiguous slice at the
    same time (NumPy releases the GIL for the copy), so the number is comparable
    with multi-threaded kernels. No C++ involved.
    """
    src = np.ones(elements, np.float32)
    dst = np.zeros_like(src)
    bounds = [elements * i // threads for i in range(threads + 1)]
    slices = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def one_pass() -> float:
        barrier = threading.Barrier(threads + 1)

        def work(d, s):
            barrier.wait()
            np.copyto(d, s)

        workers = [threading.Thread(target=work, args=sl) for sl in slices]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        return time.perf_counter() - t0

    one_pass()  # warm-up: pages touched, threads created once
    best = statistics.median(one_pass() for _ in range(repeats))
    return 2 * src.nbytes / best / 1e9


def last_level_cache_bytes() -> int:
    """Size of the largest cache of cpu0 (sysfs), 32 MiB if unknown."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size")) as f:
                    text = f.read().strip()
            except OSError:
                continue
            mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
            best = max(best, int(text.rstrip("KMGkmg")) * mult)
    except (OSError, ValueError):
        pass
    return best or 32 * 2**20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_caches() -> str:
    base = "/sys/devices/system/cpu/cpu0/cache"
    parts = []
    try:
        for entry in sorted(os.listdir(base)):
            d = os.path.join(base, entry)
            try:
                with open(os.path.join(d, "level")) as f:
                    level = f.read().strip()
                with open(os.path.join(d, "type")) as f:
                    kind = f.read().strip()
                with open(os.path.join(d, "size")) as f:
                    size = f.read().strip()
            except OSError:
                continue
            tag = {"Data": "d", "Instruction": "i"}.get(kind, "")
            parts.append(f"L{level}{tag} {size}")
    except OSError:
        pass
    return ", ".join(parts) or "unknown"


def versions() -> dict[str, str]:
    info = convforge.build_info()
    out = {
        "convforge": convforge.__version__,
        "compiler": info["compiler"],
        "build": f"{info['build_type']}, OpenMP {'on' if info['openmp'] else 'off'}",
        "isa": info["isa"],
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    torch = torch_module()
    out["torch"] = torch.__version__ if torch is not None else "not installed"
    return out


def kernel_name(kernel_op: str) -> str:
    return convforge.build_info()["kernels"][kernel_op]["float32"]


def conv_algorithm(spec: "Spec") -> str:
    """The conv2d algorithm convforge runs for ``spec``'s pass on float32 on the active ISA.

    The first (default) name of ``functional.conv2d_algorithms`` for that pass, or the
    algorithm forced by ``CONVFORGE_CONV_ALGO`` / ``force_conv2d_algorithm``, marked
    ``(forced)``. Ask in the process that times the row: the answer depends on the ISA.
    """
    case = spec.source
    forced = getattr(F, "_forced_conv_algo", {}).get(spec.pas)
    if forced:
        return f"{forced} (forced)"
    names = F.conv2d_algorithms((case.n, case.c, case.h, case.w), (case.k, case.c, case.r, case.s),
                                stride=case.stride, padding=case.padding, dilation=case.dilation)[spec.pas]
    return names[0]


# --------------------------------------------------------------------------- problems


@dataclass
class Spec:
    """One (op, pass, shape): what it costs and how to build its contenders."""

    op: str  # conv | pool | relu
    pas: str  # fwd | bwd_data | bwd_weights | bwd
    shape: str  # short name, e.g. resnet
    dims: str  # full description of the shape
    kernel_op: str  # key of build_info()['kernels']
    work: float  # FLOPs (conv) or bytes moved (pool, relu) per call
    unit: str  # GFLOP/s or GB/s
    lenet: bool  # a LeNet layer (the >= 10x NumPy target)
    working_set: int  # bytes of all arrays a call touches
    source: Any = field(repr=False)  # ConvCase / pool shape / relu shape
    torch_ok: bool = True  # torch can express the call (its conv padding is symmetric)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.pas}-{self.shape}"

    @property
    def data_key(self) -> str:
        return f"{self.op}-{self.shape}"

    def rate(self, seconds: float) -> float:
        """GFLOP/s or GB/s of one call that took ``seconds``."""
        return self.work / seconds / 1e9


CONV_PASSES = ("fwd", "bwd_data", "bwd_weights")


def conv_specs(cases=BENCH_CONV) -> list[Spec]:
    specs = []
    for case in cases:
        stride, pads, dil, out_hw = conv_params((case.h, case.w), (case.r, case.s), case.stride, case.padding,
                                                case.dilation)
        flops = flops_conv2d(case.n, case.c, case.k, out_hw, (case.r, case.s))
        nx, nw, ny = case.n * case.c * case.h * case.w, case.k * case.c * case.r * case.s, case.n * case.k * math.prod(out_hw)
        for pas in CONV_PASSES:
            specs.append(Spec("conv", pas, case.name, case.id, f"conv2d_{pas}", flops, "GFLOP/s",
                              case.name.startswith("lenet"), 4 * (nx + nw + ny), case,
                              torch_ok=pads[0] == pads[1] and pads[2] == pads[3]))
    return specs


def pool_specs(shapes=BENCH_POOL) -> list[Spec]:
    specs = []
    for shape in shapes:
        n, c, h, w = shape
        _, _, _, (oh, ow) = pool_params((h, w), POOL_K, POOL_K, 0, False)
        nin, nout = n * c * h * w, n * c * oh * ow
        name = POOL_NAMES.get(tuple(shape), f"pool_{n}x{c}x{h}x{w}")
        dims = f"{n}x{c}x{h}x{w} (NCHW), 2x2/2"
        moved = 4 * nin + 4 * nout + 8 * nout  # x in; y and int64 indices out (bwd: dy, indices in; dx out)
        for pas, kop in (("fwd", "maxpool2d_fwd"), ("bwd", "maxpool2d_bwd")):
            specs.append(Spec("pool", pas, name, dims, kop, moved, "GB/s", name.startswith("lenet"), moved, shape))
    return specs


def relu_specs(shapes=BENCH_POOL, big: int = RELU_BIG) -> list[Spec]:
    specs = []
    for shape in [tuple(s) for s in shapes] + [(big,)]:
        nbytes = 4 * math.prod(shape)
        if len(shape) == 1:
            name, dims = f"{shape[0] // 2**20}Mi", f"{shape[0]} float32 (1-D)"
        else:
            name = POOL_NAMES.get(shape, "x".join(map(str, shape)))  # the max-pool inputs, same names
            dims = "x".join(map(str, shape)) + " (NCHW)"
        for pas, kop, arrays in (("fwd", "relu_fwd", 2), ("bwd", "relu_bwd", 3)):
            specs.append(Spec("relu", pas, name, dims, kop, arrays * nbytes, "GB/s", False, arrays * nbytes, shape))
    return specs


def dense_specs(shapes=BENCH_DENSE) -> list[Spec]:
    specs = []
    for name, (n, i, u) in shapes.items():
        dims = f"batch {n}, {i} -> {u} features"
        for pas in CONV_PASSES:
            specs.append(Spec("dense", pas, name, dims, f"dense_{pas}", 2.0 * n * i * u, "GFLOP/s",
                              name.startswith("lenet"), 4 * (n * i + i * u + n * u), (name, n, i, u)))
    return specs


def all_specs(only=OPS) -> list[Spec]:
    builders = {"conv": conv_specs, "pool": pool_specs, "relu": relu_specs, "dense": dense_specs}
    return [s for op in OPS if op in only for s in builders[op]()]


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(key.encode()))


def conv_arrays(case: ConvCase):
    """Seeded float32 x (N,C,H,W), w (K,C,R,S) scaled like He init, dy (N,K,OH,OW), and the normalised params."""
    rng = _rng(case.id)
    stride, pads, dil, out_hw = conv_params((case.h, case.w), (case.r, case.s), case.stride, case.padding,
                                            case.dilation)
    x = rng.standard_normal((case.n, case.c, case.h, case.w), dtype=np.float32)
    w = rng.standard_normal((case.k, case.c, case.r, case.s), dtype=np.float32)
    w *= np.float32(1 / math.sqrt(case.c * case.r * case.s))
    dy = rng.standard_normal((case.n, case.k, *out_hw), dtype=np.float32)
    return x, w, dy, stride, pads, dil


@dataclass
class Problem:
    """The data of one (op, shape) and, per pass, one zero-argument callable per contender."""

    key: str
    fns: dict[str, dict[str, Callable[[], Any]]]  # pass -> contender -> fn
    extract: dict[str, dict[str, Callable[[Any], tuple]]]  # pass -> contender -> result -> arrays
    refs: dict[tuple[str, str], tuple] = field(default_factory=dict)

    def output(self, pas: str, who: str) -> tuple:
        """The arrays ``who`` computes for ``pas`` (computed once, then cached as a copy)."""
        if (pas, who) not in self.refs:
            self.refs[(pas, who)] = tuple(np.array(a, copy=True) for a in self.extract[pas][who](self.fns[pas][who]()))
        return self.refs[(pas, who)]


def _identity_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def _torch_np(result) -> tuple:
    return tuple(t.numpy() for t in _identity_tuple(result))


def _build_conv(case: ConvCase) -> Problem:
    x, w, dy, stride, pads, dil = conv_arrays(case)
    fns = {
        "fwd": {
            "convforge": lambda: F.conv2d(x, w, None, case.stride, case.padding, case.dilation),
            "numpy": lambda: R.conv2d_im2col(x, w, None, case.stride, case.padding, case.dilation),
        },
        "bwd_data": {
            "convforge": lambda: F.conv2d_backward_data(dy, w, x.shape, case.stride, case.padding, case.dilation),
            "numpy": lambda: R.conv2d_backward_im2col(dy, x, w, case.stride, case.padding, case.dilation,
                                                      need_input_grad=True, need_bias_grad=False),
        },
        "bwd_weights": {
            "convforge": lambda: F.conv2d_backward_weights(dy, x, w.shape, case.stride, case.padding, case.dilation,
                                                           need_bias_grad=False),
            "numpy": lambda: R.conv2d_backward_im2col(dy, x, w, case.stride, case.padding, case.dilation,
                                                      need_input_grad=False, need_bias_grad=False),
        },
    }
    extract = {
        "fwd": {"convforge": _identity_tuple, "numpy": _identity_tuple},
        "bwd_data": {"convforge": _identity_tuple, "numpy": lambda r: (r[0],)},
        "bwd_weights": {"convforge": lambda r: (r[0],), "numpy": lambda r: (r[1],)},
    }
    torch = torch_module()
    if torch is not None and pads[0] == pads[1] and pads[2] == pads[3]:  # torch pads symmetrically
        tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
        tpad, tstride, tdil = [pads[0], pads[2]], list(stride), list(dil)
        conv_bwd = torch.ops.aten.convolution_backward
        conv_input = torch.nn.grad.conv2d_input  # dx alone, as convforge's conv2d_backward_data

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, None, tstride, tpad, tdil)

        def t_bwd_data():
            with torch.no_grad():
                return conv_input(x.shape, tw, tdy, tstride, tpad, tdil)

        def t_bwd_weights():
            with torch.no_grad():
                return conv_bwd(tdy, tx, tw, None, tstride, tpad, tdil, False, [0, 0], 1, [False, True, False])

        fns["fwd"]["torch"], fns["bwd_data"]["torch"], fns["bwd_weights"]["torch"] = t_fwd, t_bwd_data, t_bwd_weights
        extract["fwd"]["torch"] = _torch_np
        extract["bwd_data"]["torch"] = _torch_np
        extract["bwd_weights"]["torch"] = lambda r: (r[1].numpy(),)
    return Problem(f"conv-{case.name}", fns, extract)


def _build_pool(shape) -> Problem:
    n, c, h, w = shape
    rng = _rng(f"pool-{shape}")
    x = rng.standard_normal(shape, dtype=np.float32)
    _, idx = R.max_pool2d_im2col(x, POOL_K, POOL_K, return_indices=True)
    dy = rng.standard_normal(idx.shape, dtype=np.float32)
    k = POOL_K
    fns = {
        "fwd": {
            "convforge": lambda: F.max_pool2d(x, k, k, return_indices=True),
            "numpy": lambda: R.max_pool2d_im2col(x, k, k, return_indices=True),
        },
        "bwd": {
            "convforge": lambda: F.max_pool2d_backward(dy, idx, x.shape),
            "numpy": lambda: R.max_pool2d_backward_im2col(dy, idx, x.shape),
        },
    }
    extract = {p: {"convforge": _identity_tuple, "numpy": _identity_tuple} for p in fns}
    torch = torch_module()
    if torch is not None:
        tx, tdy, tidx = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(idx)
        pool_bwd = torch.ops.aten.max_pool2d_with_indices_backward

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.max_pool2d(tx, k, k, return_indices=True)

        def t_bwd():
            with torch.no_grad():
                return pool_bwd(tdy, tx, [k, k], [k, k], [0, 0], [1, 1], False, tidx)

        fns["fwd"]["torch"], fns["bwd"]["torch"] = t_fwd, t_bwd
        extract["fwd"]["torch"] = extract["bwd"]["torch"] = _torch_np
    return Problem(f"pool-{shape}", fns, extract)


def _build_relu(shape) -> Problem:
    rng = _rng(f"relu-{shape}")
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    # Every contender writes into its own preallocated output: the steady state of a
    # layer, and no page-fault storm from a fresh 256 MB allocation per call.
    y = {who: np.zeros_like(x) for who in CONTENDERS}
    dx = {who: np.zeros_like(x) for who in CONTENDERS}
    mask = np.zeros(shape, dtype=bool)
    zero = np.float32(0)

    def np_bwd():
        return np.multiply(dy, np.greater(x, zero, out=mask), out=dx["numpy"])

    fns = {
        "fwd": {
            "convforge": lambda: F.relu(x, out=y["convforge"]),
            "numpy": lambda: np.maximum(x, zero, out=y["numpy"]),
        },
        "bwd": {
            "convforge": lambda: F.relu_backward(dy, x, out=dx["convforge"]),
            "numpy": np_bwd,
        },
    }
    extract = {p: {"convforge": _identity_tuple, "numpy": _identity_tuple} for p in fns}
    torch = torch_module()
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        ty, tdx = torch.from_numpy(y["torch"]), torch.from_numpy(dx["torch"])
        thr_bwd = torch.ops.aten.threshold_backward.grad_input

        def t_fwd():
            # ATen's relu is clamp_min(x, 0); its out= form is the same kernel writing into ty.
            # (aten.relu.out is a generated wrapper: relu into a fresh tensor, then a copy.)
            with torch.no_grad():
                return torch.clamp_min(tx, 0, out=ty)

        def t_bwd():
            with torch.no_grad():
                return thr_bwd(tdy, tx, 0, grad_input=tdx)

        fns["fwd"]["torch"], fns["bwd"]["torch"] = t_fwd, t_bwd
        extract["fwd"]["torch"] = extract["bwd"]["torch"] = _torch_np
    return Problem(f"relu-{shape}", fns, extract)


def _build_dense(source) -> Problem:
    name, n, i, u = source
    rng = _rng(f"dense-{name}")
    x = rng.standard_normal((n, i), dtype=np.float32)
    w = rng.standard_normal((i, u), dtype=np.float32) * np.float32(1 / math.sqrt(i))
    dy = rng.standard_normal((n, u), dtype=np.float32)
    fns = {
        "fwd": {"convforge": lambda: F.dense(x, w), "numpy": lambda: x @ w},
        "bwd_data": {"convforge": lambda: F.dense_backward_data(dy, w), "numpy": lambda: dy @ w.T},
        "bwd_weights": {"convforge": lambda: F.dense_backward_weights(dy, x, need_bias_grad=False),
                        "numpy": lambda: x.T @ dy},
    }
    extract = {p: {"convforge": _identity_tuple, "numpy": _identity_tuple} for p in fns}
    extract["bwd_weights"]["convforge"] = lambda r: (r[0],)
    torch = torch_module()
    if torch is not None:
        # torch.nn.Linear keeps its weight as (units, in_features): made once, outside the timing.
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        tw = torch.from_numpy(np.ascontiguousarray(w.T))

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.linear(tx, tw)

        def t_bwd_data():  # what Linear's backward computes for the input
            with torch.no_grad():
                return torch.mm(tdy, tw)

        def t_bwd_weights():  # ... and for its (units, in_features) weight
            with torch.no_grad():
                return torch.mm(tdy.t(), tx)

        fns["fwd"]["torch"], fns["bwd_data"]["torch"], fns["bwd_weights"]["torch"] = t_fwd, t_bwd_data, t_bwd_weights
        extract["fwd"]["torch"] = extract["bwd_data"]["torch"] = _torch_np
        extract["bwd_weights"]["torch"] = lambda r: (r.numpy().T,)
    return Problem(f"dense-{name}", fns, extract)


_PROBLEM: Problem | None = None

# Builders that other bench modules register for their own ops (op -> builder(spec.source) -> Problem),
# e.g. bench/test_bench_resnet.py's batch normalisation.
EXTRA_BUILDERS: dict[str, Callable[[Any], Problem]] = {}
# Ops whose contenders sum in different orders: they agree to float32 rounding, not exactly.
TOLERANT_OPS = {"conv", "dense"}


def problem(spec: Spec) -> Problem:
    """The data and callables of ``spec``'s (op, shape); only the latest one is kept alive."""
    global _PROBLEM
    if _PROBLEM is None or _PROBLEM.key != _problem_key(spec):
        _PROBLEM = None
        gc.collect()
        builders = {"conv": _build_conv, "pool": _build_pool, "relu": _build_relu, "dense": _build_dense}
        builder = builders.get(spec.op) or EXTRA_BUILDERS[spec.op]
        _PROBLEM = builder(spec.source)
    return _PROBLEM


def _problem_key(spec: Spec) -> str:
    if spec.op == "conv":
        return f"conv-{spec.source.name}"
    if spec.op == "dense":
        return f"dense-{spec.source[0]}"
    return f"{spec.op}-{spec.source}"


def release() -> None:
    global _PROBLEM
    _PROBLEM = None
    gc.collect()


def check(spec: Spec, got: tuple, ref: tuple, who: str, ref_who: str) -> None:
    """Assert that two contenders agree: float32 tolerance for conv and dense, exact for pool and ReLU."""
    assert len(got) == len(ref), f"{spec.id}: {who} returned {len(got)} arrays, {ref_who} {len(ref)}"
    for i, (a, b) in enumerate(zip(got, ref)):
        a, b = np.asarray(a), np.asarray(b)
        where = f"{spec.id} output {i}: {who} vs {ref_who}"
        assert a.shape == b.shape, f"{where}: shapes {a.shape} vs {b.shape}"
        if spec.op in TOLERANT_OPS:
            # Sums of up to N*OH*OW products in float32, in different orders: relative
            # error ~1e-6 of the largest magnitude; 1e-4 leaves room, catches any real bug.
            scale = float(np.max(np.abs(b))) or 1.0
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


# --------------------------------------------------------------------------- timing (compare.py)


def _other_threads_cpu_ns() -> int | None:
    """CPU time (ns) used so far by this process's threads other than the calling one; None
    where the kernel does not say (no /proc, or scheduler statistics off)."""
    me = threading.get_native_id()
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        if int(tid) == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


def settle(max_s: float = 1.0, window_s: float = 0.01, fallback_s: float = 0.3) -> float:
    """Wait until this process's other threads stop running; returns the seconds waited.

    A pool that has just worked spins before it sleeps: OpenBLAS's workers for 2^28 cycles
    (~0.1 s at 2.6 GHz), libgomp's for GOMP_SPINCOUNT pauses. Timing the next contender while
    they spin gives it one core fewer: on a 2-core Xeon, convforge's 2-thread pointwise conv took
    7.8 ms right after a NumPy matmul, 7.1 ms 20 ms later and 3.0 ms once OpenBLAS slept. So wait
    until the other threads used under a tenth of a window's time for one window (at most
    ``max_s``); where the kernel gives no per-thread times, sleep ``fallback_s``.
    """
    start = time.perf_counter()
    before = _other_threads_cpu_ns()
    if before is None:
        time.sleep(fallback_s)
        return fallback_s
    while True:
        time.sleep(window_s)
        now = _other_threads_cpu_ns()
        waited = time.perf_counter() - start
        if now is None or now - before < 0.1 * window_s * 1e9 or waited >= max_s:
            return waited
        before = now



def warm_up(fn: Callable[[], Any], min_calls: int = 3, min_s: float = 0.02) -> float:
    """Call ``fn`` at least ``min_calls`` times and for at least ``min_s``; the fastest call's seconds.

    After an idle spell a pool's first calls can stall: on a 2-vCPU Xeon guest the first two
    2-thread calls after a NumPy matmul and 0.1 s of idling took 4-6 ms each (a scheduler tick:
    the woken worker waited behind the spinning caller) against 0.1 ms from the third on, and
    torch's first call 2-14 ms. So the warm-up runs past them, and sizes the timed loops by a
    warm call.
    """
    start = time.perf_counter()
    fastest = math.inf
    calls = 0
    while calls < min_calls or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - t0)
        calls += 1
    return fastest


def time_call(fn: Callable[[], Any], repeats: int, min_sample_s: float, first_s: float) -> list[float]:
    """Per-call seconds of ``repeats`` samples; a sample loops ``fn`` until it lasts ~``min_sample_s``.

    ``first_s`` is the duration of a call already made (the warm-up), used to size the loop.
    """
    inner = max(1, int(min_sample_s / max(first_s, 1e-7))) if first_s < min_sample_s else 1
    samples = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    finally:
        if was_enabled:
            gc.enable()
    return samples
