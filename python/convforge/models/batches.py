"""User arrays -> batches in the model's internal layout (NCHW) and dtype.

:class:`_Entry` checks a user array against the model's input spec and
converts a batch (NHWC -> NCHW transpose, or a free reshape for one channel);
:class:`_Batches` cuts an epoch into such batches, reusing its buffers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shape_str"]  # _Entry and _Batches are internal to convforge.models


def shape_str(shape) -> str:
    """Keras's way of printing a shape: ``(None, 28, 28, 1)``, ``(None, 10,)``."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def one_array(value):
    """The data for a model's one input (or one output) as Keras reads it: a list or tuple holding
    one array is that array (``fit([x], [y])``, and what ``Model([inp], [out])`` takes), as Keras
    flattens the structure. Anything else is left as it is (a nested Python list of numbers stays
    the samples it spells)."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], np.ndarray):
        return value[0]
    return value


class _Entry:
    """How user arrays become the first layer's input: checks and a layout/dtype conversion.

    ``kind`` is ``'nhwc'`` (channels-last images: transpose to NCHW),
    ``'reshape'`` (only the channel axis moves or appears, free for one
    channel), or ``'none'``.
    """

    def __init__(self, spec, internal, kind, dtype):
        self.spec, self.internal, self.kind, self.dtype = spec, internal, kind, dtype
        # Per-sample shapes accepted besides spec: (H, W) for a one-channel image, and the
        # reverse, (H, W, 1) when the model was declared with (H, W).
        self.accepted = {tuple(spec)}
        if kind == "nhwc" and spec[2] == 1:
            self.accepted.add(tuple(spec[:2]))
        if kind == "reshape" and len(spec) == 2:
            self.accepted |= {(*spec, 1), (1, *spec)}
        if kind == "none" and len(spec) == 3 and spec[0] == 1:
            self.accepted.add(tuple(spec[1:]))

    def check(self, x, argument="x", allow_empty: bool = False) -> np.ndarray:
        """The user's array, checked (not copied). ``allow_empty``: zero samples are fine
        (inference on an empty batch gives an empty result, as NumPy and PyTorch do)."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{argument} must hold real numbers; got an array of dtype {x.dtype}")
        if x.ndim < 1 or tuple(x.shape[1:]) not in self.accepted:
            expected = " or ".join(shape_str((None, *s)) for s in sorted(self.accepted, key=len, reverse=True))
            raise ValueError(
                f"Input {argument} is incompatible with the model: expected shape={expected}, "
                f"found shape={shape_str(x.shape)}"
            )
        if x.shape[0] == 0 and not allow_empty:
            raise ValueError(f"{argument} is empty (shape {x.shape}): there is nothing to train on")
        return x

    def convert_if_accepted(self, x: np.ndarray) -> np.ndarray | None:
        """``convert(check(x))`` for an array that ``check`` passes with at least one sample,
        without its checks' cost (predict's one-call path); None for any other array, whose
        fault ``check`` then names."""
        if x.ndim < 2 or not x.shape[0] or x.shape[1:] not in self.accepted or x.dtype.kind not in "fiub":
            return None
        return self.convert(x)

    def identity(self, x: np.ndarray) -> bool:
        """True if the batch of x needs no conversion beyond a reshape."""
        if x.dtype != self.dtype:
            return False
        return self.kind != "nhwc" or self.internal[0] == 1

    def convert(self, xb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A batch in the internal layout and dtype, written into ``out`` when given."""
        n = xb.shape[0]
        if self.kind == "nhwc" and self.internal[0] > 1:  # one channel: NHWC is NCHW, a reshape
            c, h, w = self.internal
            src = xb.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        else:
            src = xb.reshape(n, *self.internal)
        if out is None:
            if src.dtype == self.dtype and src.flags.c_contiguous:  # a view of the user's array, as it is
                return src
            return np.ascontiguousarray(src, dtype=self.dtype)
        np.copyto(out, src, casting="unsafe")
        return out


class _Batches:
    """Batches of (x, y) in the internal layout, written into buffers reused from batch to batch."""

    def __init__(self, entry: _Entry, x: np.ndarray, y, batch_size: int):
        self.entry, self.x, self.y, self.batch_size = entry, x, y, batch_size
        self.n = x.shape[0]
        self.steps = -(-self.n // batch_size)
        full = min(batch_size, self.n)
        self._identity = entry.identity(x)
        # Gathering shuffled samples: np.take(..., out=) into a buffer of the user's dtype,
        # then one conversion into the float NCHW buffer (skipped when it is a reshape).
        self._xbuf = None  # made by the first take(): predict and evaluate only slice
        self._full = full
        self._ibuf = None if self._identity else np.empty((full, *entry.internal), dtype=entry.dtype)
        self._ybuf = None if y is None else np.empty((full, *y.shape[1:]), dtype=y.dtype)

    def _finish(self, xb, m):
        if self._identity:
            return np.ascontiguousarray(xb.reshape(m, *self.entry.internal))
        return self.entry.convert(xb, self._ibuf[:m])

    def take(self, index: np.ndarray):
        m = index.shape[0]
        if self._xbuf is None:
            self._xbuf = np.empty((self._full, *self.x.shape[1:]), dtype=self.x.dtype)
        xb = np.take(self.x, index, axis=0, out=self._xbuf[:m], mode="clip")
        yb = None if self.y is None else np.take(self.y, index, axis=0, out=self._ybuf[:m], mode="clip")
        return self._finish(xb, m), yb

    def slice(self, lo: int, hi: int):
        xb = self.x[lo:hi]
        yb = None if self.y is None else self.y[lo:hi]
        return self._finish(xb, hi - lo), yb

