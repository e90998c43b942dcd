"""convforge: a fast CPU convolution engine with a Keras-like API.

The kernels (conv2d, max-pooling, ReLU; forward and backward) are C++ with
OpenMP threads and AVX-512/AVX2 code chosen at run time; ``convforge.functional``
is their NumPy-facing API and ``convforge.reference`` the NumPy oracles they are
tested against.
"""

from __future__ import annotations

import numbers

try:
    from . import _core
except ImportError as err:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "convforge's compiled extension (convforge._core) could not be imported. Install the package "
        "with `pip install .` from the source tree (a plain checkout on sys.path has no compiled "
        f"kernels), then import it from outside the source directory. Original error: {err}"
    ) from err

from . import datasets, functional, reference

__version__: str = _core.__version__

# The Keras-style API: layers, Sequential models, training and saving.
from . import callbacks, distributed, layers, losses, metrics, optimizers  # noqa: E402
from .random import seed  # noqa: E402

# The models package (Sequential, load_model) is imported on first use, so that
# `import convforge.saving` (the file format) does not pull in the models above it.
_FROM_MODELS = {"Sequential", "load_model"}


def __getattr__(name):
    if name in _FROM_MODELS or name == "models":
        import importlib

        models = importlib.import_module("convforge.models")
        return models if name == "models" else getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_FROM_MODELS, "models"})


__all__ = [
    "Sequential",
    "__version__",
    "build_info",
    "callbacks",
    "datasets",
    "distributed",
    "functional",
    "get_num_threads",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "reference",
    "seed",
    "set_num_threads",
]


def build_info() -> dict:
    """How this convforge was built and what it runs on.

    Returns a dict with ``version``, ``compiler``, ``build_type``, ``openmp``,
    ``num_threads`` (current) and ``default_num_threads``, ``isa_compiled``,
    ``isa_detected`` (best the CPU supports), ``isa_cap`` ($CONVFORGE_MAX_ISA),
    ``isa`` (in use), ``kernels`` (``{op: {dtype: kernel name}}``) and
    ``forked_child``.
    """
    return _core.build_info()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (>= 1).

    The default is ``$CONVFORGE_NUM_THREADS``, else ``$OMP_NUM_THREADS``, else the
    CPUs this process may run on (affinity mask, limited by a cgroup CPU quota).
    Results are bit-identical for any thread count. Without OpenMP, or in a
    child process forked after the kernels ran, the kernels use one thread.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__} {n!r}")
    if not 1 <= n <= 4096:
        raise ValueError(f"n must be between 1 and 4096 threads, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads the kernels use now (see :func:`set_num_threads`)."""
    return _core.get_num_threads()
