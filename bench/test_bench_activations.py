"""GELU (exact, Keras's default) forward: convforge's kernel (float32 evaluated in double with
SIMD, within 0.51 ulp) against the NumPy expression the layer once ran
(``np.vectorize(math.erf)``) and PyTorch's ``F.gelu``.

Shapes: one and 64 images of a 32 x 32 x 32 feature map (the first layers of a small CIFAR-style
CNN with GELU). Work is counted as bytes moved (x in, y out), as the ReLU benchmarks count it.

    python -m pytest bench/test_bench_activations.py --benchmark-only --bench-threads 1,2
"""

from __future__ import annotations

import math

import numpy as np

import cfbench
from convforge import functional as F

GELU_SHAPES = {"gelu_cnn_1": (1, 32, 32, 32), "gelu_cnn_64": (64, 32, 32, 32)}
_ERF = np.vectorize(math.erf, otypes=[np.float64])


def gelu_specs() -> list[cfbench.Spec]:
    specs = []
    for name, shape in GELU_SHAPES.items():
        nbytes = 4 * math.prod(shape)
        dims = "x".join(map(str, shape)) + " (NCHW)"
        specs.append(cfbench.Spec("gelu", "fwd", name, dims, "gelu_fwd", 2 * nbytes, "GB/s", False, 2 * nbytes, shape))
    return specs


def _build_gelu(shape) -> cfbench.Problem:
    x = cfbench._rng(f"gelu-{shape}").standard_normal(shape, dtype=np.float32) * np.float32(3)
    fns = {"fwd": {
        "convforge": lambda: F.gelu(x),
        # The layer's expression before the kernels: one math.erf call a value.
        "numpy": lambda: (0.5 * x * (1 + _ERF(x / math.sqrt(2)))).astype(np.float32, copy=False),
    }}
    extract = {"fwd": {"convforge": cfbench._identity_tuple, "numpy": cfbench._identity_tuple}}
    torch = cfbench.torch_module()
    if torch is not None:
        tx = torch.from_numpy(x)

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.gelu(tx)

        fns["fwd"]["torch"] = t_fwd
        extract["fwd"]["torch"] = cfbench._torch_np
    return cfbench.Problem(f"gelu-{shape}", fns, extract)


cfbench.EXTRA_BUILDERS["gelu"] = _build_gelu
cfbench.TOLERANT_OPS.add("gelu")  # each its own erf: within float32 tolerance of one another
SPECS = gelu_specs()


def test_gelu(bench, benchmark, run_bench):
    run_bench(bench, benchmark)
