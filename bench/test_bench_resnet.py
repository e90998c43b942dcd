"""BatchNormalization forward (training: batch statistics) and backward at ResNet shapes, convforge
vs NumPy vs PyTorch's BatchNorm2d kernels (``aten.native_batch_norm`` / ``native_batch_norm_backward``).

Shapes: the three stages of examples/train_resnet.py (Fashion-MNIST, batch 128) and a ResNet-50
stage-1 tensor (32 x 64 x 56 x 56, 25.7 MB: larger than most L2s, inside a 32 MB L3).
Work is counted as bytes moved at the minimum (forward: x in, y out; backward: x and dy in, dx out),
so ``pct_copy_bw`` reads against the copy bandwidth (the issue's >= 70% target).

    python -m pytest bench/test_bench_resnet.py --benchmark-only --bench-threads 2
"""

from __future__ import annotations

import math

import numpy as np

import cfbench
from convforge import functional as F

EPS = 1e-3
BN_SHAPES = {
    "resnet_fm_s1": (128, 16, 28, 28),
    "resnet_fm_s2": (128, 32, 14, 14),
    "resnet_fm_s3": (128, 64, 7, 7),
    "resnet50_s1": (32, 64, 56, 56),
}


def bn_specs() -> list[cfbench.Spec]:
    specs = []
    for name, shape in BN_SHAPES.items():
        nbytes = 4 * math.prod(shape)
        dims = "x".join(map(str, shape)) + " (NCHW)"
        for pas, kop, arrays in (("fwd", "batchnorm_fwd_training", 2), ("bwd", "batchnorm_bwd", 3)):
            specs.append(cfbench.Spec("bn", pas, name, dims, kop, arrays * nbytes, "GB/s", False, arrays * nbytes,
                                      shape))
    return specs


def _numpy_bn(x, gamma, beta, out):
    """Vectorised NumPy in float32 (float64 sums for the statistics, like convforge)."""
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    var = x.var(axis=(0, 2, 3), dtype=np.float64)
    a = (gamma / np.sqrt(var + EPS)).astype(np.float32)
    np.subtract(x, mean.astype(np.float32)[None, :, None, None], out=out)
    out *= a[None, :, None, None]
    out += beta[None, :, None, None]
    return out, mean.astype(np.float32), var.astype(np.float32)


def _numpy_bn_bwd(dy, x, mean, var, gamma, out):
    inv = (1.0 / np.sqrt(var.astype(np.float64) + EPS)).astype(np.float32)
    count = x.size // x.shape[1]
    xhat = (x - mean[None, :, None, None]) * inv[None, :, None, None]
    dbeta = dy.sum(axis=(0, 2, 3), dtype=np.float64)
    dgamma = (dy * xhat).sum(axis=(0, 2, 3), dtype=np.float64)
    k = (gamma * inv)[None, :, None, None]
    np.multiply(xhat, (dgamma / count).astype(np.float32)[None, :, None, None], out=out)
    out += (dbeta / count).astype(np.float32)[None, :, None, None]
    np.subtract(dy, out, out=out)
    out *= k
    return out, dgamma.astype(np.float32), dbeta.astype(np.float32)


def _build_bn(shape) -> cfbench.Problem:
    rng = cfbench._rng(f"bn-{shape}")
    x = rng.standard_normal(shape, dtype=np.float32) * np.float32(2) + np.float32(0.5)
    dy = rng.standard_normal(shape, dtype=np.float32)
    c = shape[1]
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    _, mean, var = F.batch_norm(x, gamma, beta, EPS)
    # Each contender writes into its own preallocated outputs: a training step's steady state.
    y = {who: np.empty_like(x) for who in cfbench.CONTENDERS}
    dx = {who: np.empty_like(x) for who in cfbench.CONTENDERS}
    stats = (np.empty(c, np.float32), np.empty(c, np.float32))
    grads = (np.empty(c, np.float32), np.empty(c, np.float32))
    fns = {
        "fwd": {
            "convforge": lambda: F.batch_norm(x, gamma, beta, EPS, out=y["convforge"], out_mean=stats[0],
                                              out_var=stats[1]),
            "numpy": lambda: _numpy_bn(x, gamma, beta, y["numpy"]),
        },
        "bwd": {
            "convforge": lambda: F.batch_norm_backward(dy, x, mean, var, gamma, EPS, out=dx["convforge"],
                                                       out_gamma=grads[0], out_beta=grads[1]),
            "numpy": lambda: _numpy_bn_bwd(dy, x, mean, var, gamma, dx["numpy"]),
        },
    }
    first_two = lambda r: (r[0], r[1])  # noqa: E731 - y and the batch mean (torch keeps 1/std, not var)
    extract = {"fwd": {"convforge": first_two, "numpy": first_two},
               "bwd": {"convforge": tuple, "numpy": tuple}}
    torch = cfbench.torch_module()
    if torch is not None:
        tx, tdy, tg, tb = (torch.from_numpy(a) for a in (x, dy, gamma, beta))
        _, t_mean, t_invstd = torch.ops.aten.native_batch_norm(tx, tg, tb, None, None, True, 0.1, EPS)

        def t_fwd():
            with torch.no_grad():
                return torch.ops.aten.native_batch_norm(tx, tg, tb, None, None, True, 0.1, EPS)

        def t_bwd():  # what BatchNorm2d's backward runs in training mode
            with torch.no_grad():
                return torch.ops.aten.native_batch_norm_backward(tdy, tx, tg, None, None, t_mean, t_invstd, True,
                                                                 EPS, [True, True, True])

        fns["fwd"]["torch"], fns["bwd"]["torch"] = t_fwd, t_bwd
        extract["fwd"]["torch"] = lambda r: (r[0].numpy(), r[1].numpy())
        extract["bwd"]["torch"] = cfbench._torch_np
    return cfbench.Problem(f"bn-{shape}", fns, extract)


cfbench.EXTRA_BUILDERS["bn"] = _build_bn
cfbench.TOLERANT_OPS.add("bn")
SPECS = bn_specs()


def test_batch_norm(bench, benchmark, run_bench):
    run_bench(bench, benchmark)
