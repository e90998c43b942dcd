"""How NumPy's own BLAS threads are kept out of the kernels' way while a model runs."""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["single_threaded_blas"]


def _find_openblas():
    """``(get_num_threads, set_num_threads)`` of the OpenBLAS NumPy loaded, or None.

    Linux only (it reads /proc/self/maps); nothing is loaded that is not loaded already.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        return None
    for path in paths:
        if ".so" not in path:
            continue
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        # numpy's wheels: scipy_openblas_*64_; a system OpenBLAS: openblas_*.
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", ""), ("", "64_")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None


class _SingleThreadedBLAS:
    """Runs NumPy's BLAS (OpenBLAS) on one thread inside ``with``, restoring it after.

    Why: NumPy products in a model (custom layers, Dense on inputs the compiled kernels
    do not take) run between kernel calls. OpenBLAS's own thread pool and the kernels'
    threads both busy-wait for work, so with both active they fight for the
    cores: LeNet-5 training on 2 cores ran 7x slower when Dense used NumPy. An
    explicit ``$OPENBLAS_NUM_THREADS`` is respected; without OpenBLAS (or off Linux)
    this does nothing.
    """

    _controls = None  # found on first use: (get, set), or False

    def __init__(self):
        self._restore = None

    def __enter__(self):
        self._restore = None
        if "OPENBLAS_NUM_THREADS" in os.environ:
            return self
        if _SingleThreadedBLAS._controls is None:
            _SingleThreadedBLAS._controls = _find_openblas() or False
        if _SingleThreadedBLAS._controls:
            get, put = _SingleThreadedBLAS._controls
            current = get()
            if current > 1:
                put(1)
                self._restore = current
        return self

    def __exit__(self, *exc):
        if self._restore is not None:
            _SingleThreadedBLAS._controls[1](self._restore)
        return False



def single_threaded_blas() -> _SingleThreadedBLAS:
    """A context manager running NumPy's OpenBLAS on one thread (see :class:`_SingleThreadedBLAS`)."""
    return _SingleThreadedBLAS()
