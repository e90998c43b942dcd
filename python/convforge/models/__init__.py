"""Models: :class:`Sequential` (a stack of layers), ``Model(inputs, outputs)`` (a graph) and :func:`load_model`.

Layout, as Keras's ``keras/src/models`` and ``trainers``:

``functional.py``   ``Model`` (the base: weights, saving) and ``Functional``: graphs of layers, their executor
``sequential.py``   the layer stack: add, build, the forward/backward passes, config
``trainer.py``      compile / fit / evaluate / predict (a base class of the models)
``batches.py``      user arrays -> internal (NCHW) batches
``summary.py``      ``model.summary()``'s table
``diagnostics.py``  where a batch first produces NaN/Inf
``blas.py``         NumPy's BLAS kept on one thread while a model runs
``state.py``        what a model file holds beyond its format (weights, optimizer, callbacks, progress)
``loading.py``      ``load_model``

Imports run one way: ``loading`` -> ``sequential`` -> ``functional`` -> ``trainer`` -> {``batches``, ``blas``,
``summary``, ``diagnostics``, ``state``} -> :mod:`convforge.saving` (the file format, which imports
nothing from here).
"""

from __future__ import annotations

from .. import _unsupported
from .functional import Functional, Model
from .loading import clone_model, load_model, model_from_json
from .sequential import Sequential

__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]


def save_model(model, filepath, overwrite: bool = True) -> None:
    """Keras's ``keras.models.save_model(model, filepath)``: ``model.save(filepath, overwrite)``."""
    model.save(filepath, overwrite=overwrite)


# A Keras name this module lacks says so (Keras's other namespaces do too).
__getattr__ = _unsupported.module_getattr(__name__, lambda: globals())
