"""Models: :class:`Sequential` (a stack of layers) and :func:`load_model`.

Layout, as Keras's ``keras/src/models`` and ``trainers``:

``sequential.py``   the layer stack: add, build, the forward/backward passes, weights, config, save
``trainer.py``      compile / fit / evaluate / predict (a base class of the models)
``batches.py``      user arrays -> internal (NCHW) batches
``summary.py``      ``model.summary()``'s table
``diagnostics.py``  where a batch first produces NaN/Inf
``blas.py``         NumPy's BLAS kept on one thread while a model runs
``state.py``        what a model file holds beyond its format (weights, optimizer, callbacks, progress)
``loading.py``      ``load_model``

Imports run one way: ``loading`` -> ``sequential`` -> ``trainer`` -> {``batches``, ``blas``,
``summary``, ``diagnostics``, ``state``} -> :mod:`convforge.saving` (the file format, which imports
nothing from here).
"""

from __future__ import annotations

from .loading import load_model
from .sequential import Sequential

__all__ = ["Sequential", "load_model"]
