"""Shared fixtures: every ISA path the CPU supports, thread counts, seeded data."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/shapes.py

import convforge  # noqa: E402
from convforge import _core  # noqa: E402

_ORDER = ["ref", "avx2", "avx512"]
SUPPORTED_ISAS = _ORDER[: _ORDER.index(convforge.build_info()["isa_detected"]) + 1]
ALL_ISAS = [
    pytest.param(isa, marks=pytest.mark.skipif(isa not in SUPPORTED_ISAS, reason=f"this CPU/build has no {isa}"))
    for isa in _ORDER
]


@pytest.fixture(autouse=True)
def fresh_layer_names():
    """Each test starts with the names a fresh process hands out (dense, dense_1, ...), as Keras's
    own tests call clear_session(): automatic names are numbered across the process, so without
    it a test's names would depend on which tests ran before it."""
    convforge.backend.clear_session()
    yield


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Run the test with the kernels capped at one ISA, then restore the cap."""
    previous = _core._isa_cap()
    _core._set_isa_cap(request.param)
    assert convforge.build_info()["isa"] == request.param
    yield request.param
    _core._set_isa_cap(previous)


@pytest.fixture
def threads():
    """Restore the thread count after a test changes it."""
    previous = convforge.get_num_threads()
    yield
    convforge.set_num_threads(previous)


@pytest.fixture
def rng(request):
    # A fixed seed per test, derived from its name: reproducible, but not the same data everywhere.
    return np.random.default_rng(_stable_seed(request.node.nodeid))


def _stable_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())
