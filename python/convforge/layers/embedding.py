"""Embedding: integer token ids -> learned vectors (the first layer of a text model)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import regularizers
from . import initializers
from .base import Layer

__all__ = ["Embedding"]


def _positive(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Embedding {name} must be a positive int; got {value!r}")
    return int(value)


class Embedding(Layer):
    """Token ids -> vectors, Keras's ``Embedding``: ``(batch, steps)`` integers in
    ``[0, input_dim)`` -> ``(batch, steps, output_dim)``, row ``i`` of ``embeddings`` for id ``i``.

    The model's input is its float dtype, as every convforge input: ids reach the layer as
    float32 (exact below 2**24, so ``input_dim`` is at most 16,777,216 in a float32 model) and
    each must be a whole number in range; unlike Keras, which truncates 2.7 to 2 and leaves an
    out-of-range id to the backend, such an id is a ValueError naming it. The gradient of
    ``embeddings`` adds the output gradients of each id's steps (Keras's sparse update, as a dense
    array); the ids get none.

    Parameters
    ----------
    input_dim : int
        Vocabulary size: ids are ``0 .. input_dim - 1``.
    output_dim : int
        Length of each vector.
    embeddings_initializer : str or callable
        Default ``'uniform'`` (Keras's: uniform in [-0.05, 0.05]).
    embeddings_regularizer : Regularizer, optional
        Added to the training loss.
    mask_zero : bool
        Only False: convforge's layers take no masks (NotImplementedError).
    weights : array, optional
        The initial ``(input_dim, output_dim)`` matrix (pre-trained vectors), as Keras's.

    Weights
    -------
    ``embeddings`` ``(input_dim, output_dim)``, as Keras's.
    """

    _cache_attrs = ("_ids",)

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, *, input_shape=None,
                 input_length=None, name=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if mask_zero is not False and mask_zero is not np.False_:
            raise NotImplementedError(
                f"convforge does not support Embedding mask_zero={mask_zero!r}: its layers take no masks (pad with "
                "id 0 and let the model learn that vector)"
            )
        for argument, value in (("embeddings_constraint", embeddings_constraint), ("lora_rank", lora_rank)):
            if value is not None:
                raise NotImplementedError(f"convforge does not support Embedding {argument}={value!r}")
        self.input_dim = _positive(input_dim, "input_dim")
        self.output_dim = _positive(output_dim, "output_dim")
        if input_length is not None:  # Keras 2's argument; Keras 3 takes the length from the input
            _positive(input_length, "input_length")
            if input_shape is None:
                self.input_shape_arg = (int(input_length),)
        if weights is not None:  # Keras's initial matrix (pre-trained vectors), as [matrix] or matrix
            matrix = np.asarray(weights[0] if isinstance(weights, (list, tuple)) and len(weights) == 1 else weights)
            if matrix.shape != (self.input_dim, self.output_dim) or matrix.dtype.kind not in "fiu":
                raise ValueError(f"Embedding weights must be one ({self.input_dim}, {self.output_dim}) matrix of "
                                 f"numbers; got {matrix.dtype} of shape {matrix.shape}")
            embeddings_initializer = lambda shape, dtype: matrix.astype(dtype)  # noqa: E731
        self.embeddings_initializer = initializers.get(embeddings_initializer, "embeddings_initializer")
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer, "embeddings_regularizer")
        self._ids = None

    def _check(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Embedding expects token ids of shape (batch, steps); got {self._show(input_shape)}"
            )
        if self.input_dim > 2**24 and self.dtype == np.float32:
            raise ValueError(
                f"Embedding input_dim={self.input_dim} is more than float32 ids hold exactly (2**24): make the "
                "model float64 (dtype='float64')"
            )

    def build(self, input_shape):
        self._check(input_shape)
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                        regularizer=self.embeddings_regularizer)

    def _compute_internal_output_shape(self, input_shape):
        self._check(input_shape)
        return (input_shape[0], self.output_dim)

    def _token_ids(self, x) -> np.ndarray:
        """x as int64 ids, or ValueError naming the first that is no whole number in range."""
        ids = x.astype(np.int64)
        bad = (ids != x) | (ids < 0) | (ids >= self.input_dim) if x.dtype.kind == "f" else \
            (ids < 0) | (ids >= self.input_dim)
        if bad.any():
            where = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
            raise ValueError(
                f"layer {self.name!r} (Embedding): token ids must be whole numbers in [0, {self.input_dim}); got "
                f"{x[where].item()!r} at index {where}"
            )
        return ids

    def forward(self, x, training=False):
        ids = self._token_ids(x)
        if training:  # inference leaves the training cache alone (predict may run during fit)
            self._ids = ids
        return self.params["embeddings"][ids]

    def backward(self, dy):
        if self._ids is None:
            raise self._missing_cache()
        grad = np.zeros_like(self.params["embeddings"])
        # Repeated ids add up; np.add.at sums them in index order, the same bits on every run.
        np.add.at(grad, self._ids.reshape(-1), dy.reshape(-1, self.output_dim))
        self.grads["embeddings"] = grad
        if not self.input_grad_needed:
            return None
        return np.zeros(self._ids.shape, dtype=dy.dtype)  # piecewise constant in the ids

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "mask_zero": False,
        }

    @classmethod
    def from_config(cls, config):
        config = initializers.deserialize_config(config, keys=("embeddings_initializer",))
        if config.get("embeddings_regularizer") is not None:
            config["embeddings_regularizer"] = regularizers.get(config["embeddings_regularizer"],
                                                                "embeddings_regularizer")
        return cls(**config)
