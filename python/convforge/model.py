"""Moved to :mod:`convforge.models` (``convforge.models.Sequential``); kept so that old imports work."""

from __future__ import annotations

from .models.batches import _Batches, _Entry  # noqa: F401 - old private names, used by tests
from .models.blas import _find_openblas, _SingleThreadedBLAS  # noqa: F401
from .models.sequential import Sequential

__all__ = ["Sequential"]
