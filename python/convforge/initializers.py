"""Weight initialisers under Keras's names: ``convforge.initializers.HeNormal()`` or ``'he_normal'``.

The same objects as :mod:`convforge.layers.initializers` (where they are
documented), plus Keras's lower-case aliases (``initializers.he_normal()``).
"""

from __future__ import annotations

from .layers import initializers as _layer_initializers
from .layers.initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
    compute_fans,
    deserialize,
    get,
    serialize,
)

# Keras's lower-case aliases of the classes.
constant = Constant
glorot_normal = GlorotNormal
glorot_uniform = GlorotUniform
he_normal = HeNormal
he_uniform = HeUniform
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
ones = Ones
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
zeros = Zeros
variance_scaling = VarianceScaling
orthogonal = Orthogonal
identity = Identity

__all__ = [
    *_layer_initializers.__all__,
    "constant",
    "deserialize",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "lecun_normal",
    "lecun_uniform",
    "ones",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "serialize",
    "truncated_normal",
    "variance_scaling",
    "zeros",
]

from . import _unsupported  # noqa: E402

__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())

# A Keras argument an initializer lacks gets a TypeError naming it, not Python's bare
# "unexpected keyword argument" (or "takes no arguments"). The private bases too: HeNormal's
# __init__ is theirs.
for _cls in {base for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Initializer)
             for base in v.__mro__ if issubclass(base, Initializer)}:
    _unsupported.check_arguments(_cls)
