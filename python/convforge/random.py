"""The one random number generator behind weight initialisation, shuffling and dropout.

Everything random in convforge draws from a single ``numpy.random.Generator``
owned by this module -- never NumPy's global RNG and never the clock -- so one
call makes a whole run reproducible::

    import convforge
    convforge.seed(42)          # same seed + same thread count -> same weights, bit for bit
    model = convforge.Sequential([...])
    model.fit(x, y, epochs=3)

Before :func:`seed` is called the generator is seeded from the operating
system's entropy, so unseeded runs differ, as in Keras.

The state can be saved and restored (:func:`get_state`, :func:`set_state`);
training checkpoints do so, which is what lets ``fit(resume_from=...)``
finish with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

__all__ = ["get_generator", "get_state", "seed", "set_state"]

# One Generator object for the whole process. seed() re-seeds it in place (rather than
# replacing it) so a reference obtained earlier with get_generator() stays valid.
_generator = np.random.Generator(np.random.PCG64())


def seed(n: int) -> None:
    """Seed convforge's random number generator.

    Parameters
    ----------
    n : int
        Any non-negative integer. The same seed gives the same initial
        weights, the same shuffling order and the same dropout masks.
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int, got {type(n).__name__} {n!r}")
    if n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n}")
    _generator.bit_generator.state = np.random.PCG64(int(n)).state


def get_generator() -> np.random.Generator:
    """The generator convforge draws from (for custom layers that need randomness)."""
    return _generator


def get_state() -> dict:
    """A JSON-serialisable copy of the generator's state."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_state(state: dict) -> None:
    """Restore a state returned by :func:`get_state`."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError(
            f"state must be a dict returned by convforge.random.get_state() (a PCG64 state), got {state!r:.200}"
        )
    try:
        _generator.bit_generator.state = copy.deepcopy(state)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"invalid random generator state: {err}") from err


from . import _unsupported  # noqa: E402 - Keras's keras.random names: say what to use instead

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
