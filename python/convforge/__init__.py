"""convforge: a fast CPU convolution engine with a Keras-like API.

The kernels (conv2d, max-pooling, ReLU; forward and backward) are C++ with
threads of their own and AVX-512/AVX2 code chosen at run time; ``convforge.functional``
is their NumPy-facing API and ``convforge.reference`` the NumPy oracles they are
tested against.
"""

from __future__ import annotations

import numbers as _numbers
import os as _os
import warnings as _warnings


def _check_thread_environment():
    """Warn about a $CONVFORGE_NUM_THREADS that the kernels ignore (they use the default then)."""
    text = _os.environ.get("CONVFORGE_NUM_THREADS")
    if text is None:
        return
    value = text.strip()
    if not (value.isdigit() and value.isascii() and 1 <= int(value) <= 4096):
        _warnings.warn(
            f"CONVFORGE_NUM_THREADS={text!r} is not a number of threads between 1 and 4096; it is ignored "
            f"(the kernels use {_core.get_num_threads()} threads)",
            RuntimeWarning,
            stacklevel=3,
        )


# GNU OpenMP starts with its own wait policy (spin ~300,000 times before a waiting thread sleeps;
# the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT if set). convforge once started it with 1,000 spins
# so that its threads yield quickly on a busy machine; that cost a quiet machine 5-37% on a
# LeNet-5 step. Since the twenty-second stop the kernels' loops run on convforge's own thread
# team, which never waits for a thread that cannot run (OpenMP only while another thread's call
# holds it): docs/RELIABILITY.md ("Busy machines"), bench/busy_machine.md.
try:
    from . import _core
except ImportError as err:  # pragma: no cover - depends on how the package was installed
    if str(err).startswith("CONVFORGE_"):  # the extension is there but refused a setting ($CONVFORGE_MAX_ISA)
        raise ImportError(f"convforge cannot start: {err}") from err
    raise ImportError(
        "convforge's compiled extension (convforge._core) could not be imported. Install the package "
        "with `pip install .` from the source tree (a plain checkout on sys.path has no compiled "
        f"kernels), then import it from outside the source directory. Original error: {err}"
    ) from err

from . import datasets, functional, reference

__version__: str = _core.__version__
_check_thread_environment()

# The Keras-style API: layers, Sequential models, training and saving.
from . import activations, callbacks, distributed, initializers, layers, losses, metrics, optimizers  # noqa: E402
from . import regularizers, utils  # noqa: E402
from .layers import Input  # noqa: E402
from .random import seed  # noqa: E402
from . import threads  # noqa: E402  (set_num_threads tells the governors)
from .threads import get_adaptive_threads, set_adaptive_threads  # noqa: E402

# The models package (Sequential, load_model) is imported on first use, so that
# `import convforge.saving` (the file format) does not pull in the models above it.
_FROM_MODELS = {"Model", "Sequential", "load_model"}
# Submodules imported on first use as attributes too (convforge.saving.ModelFileError without an
# `import convforge.saving` first), as `import convforge.x` would.
_LAZY_MODULES = {"backend", "gradcheck", "models", "onnx", "saving", "train"}


def __getattr__(name):
    if name in _FROM_MODELS or name in _LAZY_MODULES:
        import importlib

        if name in _LAZY_MODULES:
            return importlib.import_module(f"convforge.{name}")
        return getattr(importlib.import_module("convforge.models"), name)
    from . import _unsupported  # Keras names convforge lacks: say so, and what to use

    # the namespace is read in _unsupported: pass this module's (with the lazy names), not the builtin
    return _unsupported.module_getattr(__name__, lambda: {**globals(), **dict.fromkeys(_FROM_MODELS)})(name)


def __dir__():
    return sorted({*globals(), *_FROM_MODELS, *_LAZY_MODULES})


__all__ = [
    "Input",
    "Model",
    "Sequential",
    "activations",
    "__version__",
    "build_info",
    "callbacks",
    "datasets",
    "distributed",
    "functional",
    "get_adaptive_threads",
    "get_num_threads",
    "initializers",
    "layers",
    "load_model",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "reference",
    "regularizers",
    "seed",
    "set_adaptive_threads",
    "set_num_threads",
    "utils",
]


def build_info() -> dict:
    """How this convforge was built and what it runs on.

    Returns a dict with ``version``, ``compiler``, ``build_type``, ``openmp``,
    ``num_threads`` (current) and ``default_num_threads``, ``isa_compiled``,
    ``isa_detected`` (best the CPU supports), ``isa_cap`` ($CONVFORGE_MAX_ISA),
    ``isa`` (in use), ``kernels`` (``{op: {dtype: kernel name}}``),
    ``conv2d_algorithms`` (``{"conv2d_fwd" | "conv2d_bwd_data" | "conv2d_bwd_weights":
    {isa: [every compiled algorithm, best-first]}}``; float64 has the ``ref`` list; see
    :func:`convforge.functional.conv2d_algorithms` for one problem's) and ``forked_child``.
    """
    return _core.build_info()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (>= 1).

    The default is ``$CONVFORGE_NUM_THREADS``, else ``$OMP_NUM_THREADS``, else the
    CPUs this process may run on (affinity mask, limited by a cgroup CPU quota).
    Results are bit-identical for any thread count. Without OpenMP, or in a
    child process forked after the kernels ran, the kernels use one thread.
    ``fit``, ``evaluate`` and ``predict`` may run at half this count while they measure
    that to be faster (a busy machine; see :func:`set_adaptive_threads`), and restore it
    when they return.
    """
    if isinstance(n, bool) or not isinstance(n, _numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__} {n!r}")
    if not 1 <= n <= 4096:
        raise ValueError(f"n must be between 1 and 4096 threads, got {n}")
    _apply_num_threads(int(n))
    threads.note_user_set()  # a fit/evaluate/predict governing the count follows it (threads.py)


def _apply_num_threads(n: int) -> None:
    """The kernels' thread count, set without the checks and not noted as the user's: for the
    thread governor (threads.py), whose own settings must not look like a user's call."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use now (see :func:`set_num_threads`)."""
    return _core.get_num_threads()


# Machine facts for bench/ (private): the measured FMA peak and the kernels' scratch memory.
def _fma_peak(threads: int = 1, seconds: float = 0.3) -> dict:
    return _core._fma_peak(threads, seconds)


def _workspace_bytes() -> int:
    return _core._workspace_bytes()
