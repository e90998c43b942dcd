"""Keras's preprocessing layers: ``Normalization`` (statistics learnt from the data before
training), ``Resizing`` and ``CenterCrop`` (images to one size).

``Normalization`` standardises its input with a mean and a variance that ``adapt(data)``
computes from training data (or that are given), as Keras's layer does: a model that starts
with it takes raw data, and the statistics travel with the model file.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .base import Layer, display_shape, internal_shape, resolve_data_format
from .reshaping import _interpolate, _interpolate_backward

__all__ = ["CenterCrop", "Normalization", "Resizing"]

# Keras's backend.epsilon(): the smallest standard deviation divided by (a constant feature).
_EPSILON = 1e-7


class Normalization(Layer):
    """``(x - mean) / sqrt(variance)``, Keras's ``Normalization`` (``invert=True``: the inverse).

    ``axis`` names the axes that keep their own statistics, as Keras counts them on the shape the
    user sees (channels-last images, the batch axis 0): ``-1`` (default) one mean and variance per
    channel or feature, ``(1, 2)`` one per pixel position, ``None`` a single pair for the whole
    input. :meth:`adapt` computes them from data (over the batch and every axis not in ``axis``,
    in float64); or give ``mean`` and ``variance`` (numbers or arrays that broadcast), and the
    layer holds no weights. Until adapted, the mean is 0 and the variance 1, as in Keras.

    As Keras: the standard deviation is at least 1e-7 (a constant feature becomes 0), the
    weights are ``mean``, ``variance`` and ``count`` (non-trainable; Keras's shapes, broadcast
    against the channels-last input: ``(1, 1, 1, 3)`` for RGB images; ``count`` is 0, as Keras 3
    leaves it), a second ``adapt`` replaces the statistics. Differs: ``adapt`` takes arrays (a
    Sequence or generator of batches too), not a ``tf.data`` dataset; ``count`` is stored in the
    model's float dtype.
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, *, name=None, input_shape=None,
                 trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if axis is None:
            axes = ()
        elif isinstance(axis, (list, tuple)):
            axes = tuple(axis)
        else:
            axes = (axis,)
        if any(isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral) for a in axes):
            raise TypeError(f"Normalization axis must be an int, a tuple of ints or None; got {axis!r}")
        self.axis = tuple(int(a) for a in axes)
        if (mean is None) != (variance is None):
            raise ValueError("When setting values directly, both mean and variance must be set (Keras's rule); got "
                             f"mean={mean!r} and variance={variance!r}")
        self._fixed = None
        if mean is not None:
            fixed = []
            for arg, value in (("mean", mean), ("variance", variance)):
                try:
                    array = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    raise TypeError(f"Normalization {arg} must be a number or an array of numbers; got {value!r}")
                if not np.isfinite(array).all():
                    raise ValueError(f"Normalization {arg} must be finite; got {value!r}")
                fixed.append(array)
            if (fixed[1] < 0).any():
                raise ValueError(f"Normalization variance must be >= 0; got {variance!r}")
            self._fixed = tuple(fixed)
        if not isinstance(invert, (bool, np.bool_)):
            raise TypeError(f"Normalization invert must be True or False; got {invert!r}")
        self.invert = bool(invert)
        # As given (the config's), lists where arrays came.
        self._given = tuple(v.tolist() if isinstance(v, np.ndarray) else v for v in (mean, variance))

    def _label(self) -> str:
        return f"Normalization {self.name!r}" if self.name else "Normalization"

    # ------------------------------------------------------------------ shapes

    def _kept_axes(self, rank: int) -> list[int]:
        """The axes with statistics of their own, on the shown (batch, ...) shape of ``rank`` axes."""
        kept = sorted({a + rank if a < 0 else a for a in self.axis})
        if len(kept) != len(self.axis) or not all(1 <= a < rank for a in kept):
            raise ValueError(
                f"{self._label()}: axis={self.axis if self.axis else None} "
                f"does not name distinct axes of its input of rank {rank} (1 .. {rank - 1}, or -1 .. -{rank - 1}; "
                "0 is the batch axis)"
            )
        return kept

    def _statistics_shape(self, shown: tuple) -> tuple:
        """The shape mean and variance broadcast in (Keras's ``layer.mean``): the shown (batch, ...)
        shape with 1 on the reduced axes."""
        rank = len(shown) + 1
        kept = self._kept_axes(rank)
        return tuple(1 if a == 0 or a not in kept else shown[a - 1] for a in range(rank))

    def _weight_shape(self, shown: tuple) -> tuple:
        """Keras's shape of the mean and variance weights: the kept axes' sizes alone."""
        return tuple(shown[a - 1] for a in self._kept_axes(len(shown) + 1))

    @property
    def mean(self) -> np.ndarray:
        """The mean, shaped to broadcast against the (channels-last) input, as Keras's ``layer.mean``."""
        return self._statistic(0)

    @property
    def variance(self) -> np.ndarray:
        """The variance, shaped as :attr:`mean`."""
        return self._statistic(1)

    def _statistic(self, k: int) -> np.ndarray:
        if not self.built:
            raise ValueError(f"{self._label()} is not built yet: adapt it, or put it in a model")
        shape = self._statistics_shape(display_shape(self._internal_input_shape, self._data_format))
        if self._fixed is None:
            return self.params[("mean", "variance")[k]].reshape(shape)
        return self._broadcast_given(("mean", "variance")[k], self._fixed[k], shape)

    _weights_in_shown_axes = True

    def _compute_internal_output_shape(self, input_shape):
        shown = display_shape(input_shape, self._data_format)
        self._statistics_shape(shown)  # axis checked, as Keras
        if self.built and self._fixed is None and self.params["mean"].shape != self._weight_shape(shown):
            raise ValueError(
                f"{self._label()} holds statistics of shape {self.params['mean'].shape} (adapted to other "
                f"data) and cannot take input {('batch', *shown)}, whose axis={list(self.axis)} has shape "
                f"{self._weight_shape(shown)}"
            )
        return tuple(input_shape)

    @property
    def _keeps_feature_order(self) -> bool:
        """One mean and variance for every value (``axis=None``, or given as numbers): after a
        Flatten the features keep their places (models/functional.py's order walk)."""
        if self._fixed is not None:
            return all(a.size == 1 for a in self._fixed)
        return not self.axis

    @property
    def _loses_flatten_order(self) -> str | None:
        return None if self._keeps_feature_order else "normalises with a mean and variance per feature"

    def build(self, input_shape):
        shown = display_shape(input_shape, self._data_format)
        if self._fixed is None:
            self.add_weight("mean", self._weight_shape(shown), "zeros", trainable=False)
            self.add_weight("variance", self._weight_shape(shown), "ones", trainable=False)
            self.add_weight("count", (), "zeros", trainable=False)
        else:
            for arg, array in zip(("mean", "variance"), self._fixed):
                self._broadcast_given(arg, array, self._statistics_shape(shown))

    def _broadcast_given(self, arg: str, array: np.ndarray, shape: tuple) -> np.ndarray:
        kept = [d for d in shape[1:] if d != 1]
        if array.size == 1:
            return np.full(shape, array.reshape(-1)[0])
        if array.size == math.prod(kept):  # one value per kept position, in their order
            return array.reshape(shape)
        try:
            return np.broadcast_to(array, shape)
        except ValueError:
            raise ValueError(
                f"Normalization {arg} of shape {array.shape} does not fit statistics of shape {shape} (axis="
                f"{self.axis if self.axis else None})"
            ) from None

    # ------------------------------------------------------------------ statistics

    def _mean_and_std(self, ndim: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (at least 1e-7), shaped to broadcast against the arrays
        inside the model (images NCHW)."""
        mean, variance = self.mean, self.variance
        std = np.maximum(np.sqrt(np.maximum(np.asarray(variance, np.float64), 0.0)), _EPSILON)
        mean = np.asarray(mean, np.float64)
        if ndim == 4 and self._data_format != "channels_first":  # (1, h, w, c) -> the NCHW arrays' (1, c, h, w)
            mean, std = mean.transpose(0, 3, 1, 2), std.transpose(0, 3, 1, 2)
        return mean.astype(dtype), std.astype(dtype)

    def forward(self, x, training=False):
        mean, std = self._mean_and_std(x.ndim, x.dtype)
        return x * std + mean if self.invert else (x - mean) / std

    def backward(self, dy):
        _, std = self._mean_and_std(dy.ndim, dy.dtype)
        return dy * std if self.invert else dy / std

    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Compute the mean and variance of ``data`` (a NumPy array of samples, channels-last
        images as ``fit`` takes them; or a Sequence or generator of such batches, or of
        ``(x, y)`` pairs), in float64, and keep them in the layer's weights (replacing what a
        previous ``adapt`` set). Builds the layer for the data's shape if it is not built.

        ``batch_size`` is accepted for Keras's signature (the statistics are exact either
        way); ``steps`` limits how many batches of a Sequence or generator are read.
        """
        if self._fixed is not None:
            raise ValueError("Normalization: adapt() computes mean and variance, which this layer was given; make it "
                             "without mean= and variance= to adapt it")
        if steps is not None and (isinstance(steps, (bool, np.bool_)) or not isinstance(steps, numbers.Integral)
                                  or steps < 1):
            raise ValueError(f"Normalization.adapt steps must be a positive int or None; got {steps!r}")
        if batch_size is not None and (isinstance(batch_size, (bool, np.bool_))
                                       or not isinstance(batch_size, numbers.Integral) or batch_size < 1):
            raise ValueError(f"Normalization.adapt batch_size must be a positive int or None; got {batch_size!r}")
        batches = self._batches_of(data, steps)
        total = total_sq = None
        n = 0
        for batch in batches:
            if batch.shape[0] == 0:
                continue
            reduce = tuple(a for a in range(batch.ndim) if a not in self._kept_axes(batch.ndim))
            if total is None:
                sample_shape, shape = batch.shape[1:], self._statistics_shape(batch.shape[1:])
                shift = batch.mean(axis=reduce, keepdims=True)  # a shift for the sums' accuracy
                total, total_sq = np.zeros(shape), np.zeros(shape)
            elif self._statistics_shape(batch.shape[1:]) != shape:
                raise ValueError(f"Normalization.adapt: a batch of per-sample shape {batch.shape[1:]} after batches of "
                                 f"another shape")
            centred = batch - shift
            total += centred.sum(axis=reduce, keepdims=True)
            total_sq += np.square(centred).sum(axis=reduce, keepdims=True)
            n += batch.size // math.prod(shape)
        if total is None or n == 0:
            raise ValueError("Normalization.adapt: the data has no samples")
        mean = total / n
        variance = np.maximum(total_sq / n - np.square(mean), 0.0)
        mean += shift
        if not self.built:
            self._build(internal_shape(sample_shape, self._data_format), self.dtype)
        elif self.params["mean"].shape != self._weight_shape(sample_shape):
            raise ValueError(f"{self._label()} is built for statistics of shape {self.params['mean'].shape}; "
                             f"adapt got data of per-sample shape {sample_shape}, statistics of shape "
                             f"{self._weight_shape(sample_shape)}")
        # In place: a model (and its compiled plans) holds these arrays.
        self.params["mean"][...] = mean.reshape(self.params["mean"].shape)
        self.params["variance"][...] = variance.reshape(self.params["variance"].shape)
        self.params["count"][...] = 0  # Keras 3.15 leaves it 0

    def _batches_of(self, data, steps):
        """``data`` as float64 batches (samples first, at least one axis a sample)."""
        def checked(batch, from_source=False):
            if from_source and isinstance(batch, tuple) and 1 <= len(batch) <= 3:
                batch = batch[0]  # a Sequence's or generator's (x, y) or (x, y, sample_weight), as fit reads them
            array = np.asarray(batch)
            if array.dtype.kind not in "fiub":
                raise TypeError(f"Normalization.adapt: data must hold real numbers; got an array of dtype {array.dtype}")
            if array.ndim < 2:
                raise ValueError(f"Normalization.adapt: data is samples, (samples, features...); got shape {array.shape}")
            return array.astype(np.float64)

        if isinstance(data, (np.ndarray, list, tuple)):  # the samples themselves (a list of images too)
            yield checked(data)
            return
        if hasattr(data, "__getitem__") and hasattr(data, "__len__"):  # a Sequence of batches
            count = len(data) if steps is None else min(steps, len(data))
            for i in range(count):
                yield checked(data[i], from_source=True)
            return
        if hasattr(data, "__iter__"):  # a generator of batches
            for i, batch in enumerate(data):
                if steps is not None and i >= steps:
                    break
                yield checked(batch, from_source=True)
            return
        yield checked(data)

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": self._given[0], "variance": self._given[1]}


# ---------------------------------------------------------------------- Resizing and CenterCrop


def _resize_taps(size: int, out_size: int, dtype):
    """``(low, high, weight)`` of a linear resize of ``size`` values to ``out_size``, half-pixel
    centres, as PyTorch's ``interpolate(mode='bilinear', align_corners=False)`` (what Keras 3's
    Resizing runs on its torch backend): output i reads input ``(i + 0.5) * size / out_size - 0.5``,
    at least 0, its two neighbours clamped to the last."""
    source = np.maximum((np.arange(out_size) + 0.5) * (size / out_size) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), size - 1)
    return low, np.minimum(low + 1, size - 1), (source - low).astype(dtype)


def _nearest_index(size: int, out_size: int) -> np.ndarray:
    """PyTorch's 'nearest-exact' (Keras 3's 'nearest' on torch): input floor((i + 0.5) * size / out_size)."""
    return np.minimum(np.floor((np.arange(out_size) + 0.5) * (size / out_size)).astype(np.int64), size - 1)


def _aspect_box(height: int, width: int, target_height: int, target_width: int, pad: bool):
    """Keras's crop (or pad) box to the target's aspect ratio: ``(box height, box width, row, col)``,
    the image's offset inside a pad box or the box's offset inside the image for a crop."""
    box_h = int(float(width * target_height) / target_width)
    box_w = int(float(height * target_width) / target_height)
    if pad:  # Keras pads both sides by the half (rounded down): an odd difference loses a row
        row, col = int(float(max(height, box_h) - height) / 2), int(float(max(width, box_w) - width) / 2)
        return height + 2 * row, width + 2 * col, row, col
    box_h, box_w = max(min(height, box_h), 1), max(min(width, box_w), 1)
    return box_h, box_w, int(float(height - box_h) / 2), int(float(width - box_w) / 2)


def _positive_size(value, name: str, layer: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer} {name} must be a positive int; got {value!r}")
    if value > 2**20:
        raise ValueError(f"{layer} {name}={value} is beyond any image (at most 2**20)")
    return int(value)


class Resizing(Layer):
    """Resize images to ``(height, width)``, Keras's ``Resizing``: ``'bilinear'`` (default; half-pixel
    centres, two taps an axis, as Keras 3 on its torch backend, ``interpolate(align_corners=False)``)
    or ``'nearest'`` (PyTorch's 'nearest-exact'). ``crop_to_aspect_ratio=True`` first crops the
    largest centred box of the target's aspect ratio; ``pad_to_aspect_ratio=True`` pads the image with
    ``fill_value`` to it instead (Keras's boxes, to the pixel). The backward is the exact adjoint.

    Differences from Keras: ``antialias=True`` and the interpolations ``'bicubic'``, ``'area'``,
    ``'lanczos3/5'`` and ``'lanczos'`` are refused (NotImplementedError); ``fill_mode`` is
    ``'constant'`` only (Keras's only one too).
    """

    _expects_images = True

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                 fill_mode="constant", fill_value=0.0, antialias=False, data_format=None, *, name=None,
                 input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        layer = type(self).__name__
        self.height, self.width = _positive_size(height, "height", layer), _positive_size(width, "width", layer)
        if interpolation not in ("bilinear", "nearest"):
            if interpolation in ("bicubic", "area", "lanczos3", "lanczos5", "lanczos", "gaussian", "mitchellcubic"):
                raise NotImplementedError(f"convforge does not support {layer} interpolation={interpolation!r}; "
                                          "use 'bilinear' or 'nearest'")
            raise ValueError(f"{layer} interpolation must be 'bilinear' or 'nearest'; got {interpolation!r}")
        for arg, value in (("crop_to_aspect_ratio", crop_to_aspect_ratio), ("pad_to_aspect_ratio", pad_to_aspect_ratio),
                           ("antialias", antialias)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{layer} {arg} must be True or False; got {value!r}")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError(f"{layer}: only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be True "
                             "(Keras's rule)")
        if antialias:
            raise NotImplementedError(f"convforge does not support {layer} antialias=True (Keras's default is False)")
        if fill_mode != "constant":
            raise ValueError(f"{layer} fill_mode must be 'constant' (Keras's only one); got {fill_mode!r}")
        if isinstance(fill_value, (bool, np.bool_)) or not isinstance(fill_value, numbers.Real) \
                or not math.isfinite(fill_value):
            raise TypeError(f"{layer} fill_value must be a finite number; got {fill_value!r}")
        self.interpolation, self.fill_mode, self.fill_value = interpolation, fill_mode, float(fill_value)
        self.crop_to_aspect_ratio, self.pad_to_aspect_ratio = bool(crop_to_aspect_ratio), bool(pad_to_aspect_ratio)
        self.antialias = False
        self.data_format = resolve_data_format(data_format)

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects images (batch, height, width, channels); got "
                             f"{self._show(input_shape)}")
        return (input_shape[0], self.height, self.width)

    def _box(self, h: int, w: int):
        """None, or ``('crop' | 'pad', box height, box width, row, col)`` before the resize."""
        if self.crop_to_aspect_ratio or self.pad_to_aspect_ratio:
            return ("pad" if self.pad_to_aspect_ratio else "crop",
                    *_aspect_box(h, w, self.height, self.width, self.pad_to_aspect_ratio))
        return None

    def _framed(self, x):
        box = self._box(x.shape[2], x.shape[3])
        if box is None:
            return x
        kind, bh, bw, r, c = box
        if kind == "crop":
            return x[:, :, r:r + bh, c:c + bw]
        framed = np.full((*x.shape[:2], bh, bw), self.fill_value, x.dtype)
        framed[:, :, r:r + x.shape[2], c:c + x.shape[3]] = x
        return framed

    def _unframed(self, g, h: int, w: int):
        box = self._box(h, w)
        if box is None:
            return g
        kind, bh, bw, r, c = box
        if kind == "pad":
            return g[:, :, r:r + h, c:c + w]
        dx = np.zeros((*g.shape[:2], h, w), g.dtype)
        dx[:, :, r:r + bh, c:c + bw] = g
        return dx

    def forward(self, x, training=False):
        framed = self._framed(x)
        h, w = framed.shape[2:]
        if self.interpolation == "nearest":
            out = framed[:, :, _nearest_index(h, self.height)][:, :, :, _nearest_index(w, self.width)]
        else:
            rows = _interpolate(framed, 2, _resize_taps(h, self.height, x.dtype))
            out = _interpolate(rows, 3, _resize_taps(w, self.width, x.dtype))
        if training:
            self._in_hw = x.shape[2:]
        return np.ascontiguousarray(out, dtype=x.dtype)

    def backward(self, dy):
        if getattr(self, "_in_hw", None) is None:
            raise self._missing_cache()
        h0, w0 = self._in_hw
        box = self._box(h0, w0)
        h, w = (h0, w0) if box is None else box[1:3]
        if self.interpolation == "nearest":
            rows = np.zeros((*dy.shape[:3], w), dy.dtype)
            np.add.at(rows, (slice(None), slice(None), slice(None), _nearest_index(w, self.width)), dy)
            g = np.zeros((*dy.shape[:2], h, w), dy.dtype)
            np.add.at(g, (slice(None), slice(None), _nearest_index(h, self.height)), rows)
        else:
            rows = _interpolate_backward(dy, 3, _resize_taps(w, self.width, dy.dtype), w)
            g = _interpolate_backward(rows, 2, _resize_taps(h, self.height, dy.dtype), h)
        return np.ascontiguousarray(self._unframed(g, h0, w0))

    _cache_attrs = ("_in_hw",)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation, "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio, "fill_mode": self.fill_mode,
                "fill_value": self.fill_value, "antialias": self.antialias, "data_format": self.data_format}


class CenterCrop(Resizing):
    """The centred ``(height, width)`` window of each image, Keras's ``CenterCrop`` (the window starts
    at ``(H - height) // 2``); an image smaller than the window on either axis is resized to it
    instead, after a centred crop to its aspect ratio (Keras's ``smart_resize``: bilinear)."""

    def __init__(self, height, width, data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(height, width, "bilinear", crop_to_aspect_ratio=True, data_format=data_format, name=name,
                         input_shape=input_shape, trainable=trainable)

    def _slices(self, h: int, w: int) -> bool:
        return h >= self.height and w >= self.width

    def forward(self, x, training=False):
        h, w = x.shape[2:]
        if not self._slices(h, w):
            return super().forward(x, training)
        r, c = (h - self.height) // 2, (w - self.width) // 2
        if training:
            self._in_hw = (h, w)
        return np.ascontiguousarray(x[:, :, r:r + self.height, c:c + self.width])

    def backward(self, dy):
        if getattr(self, "_in_hw", None) is None:
            raise self._missing_cache()
        h, w = self._in_hw
        if not self._slices(h, w):
            return super().backward(dy)
        r, c = (h - self.height) // 2, (w - self.width) // 2
        dx = np.zeros((*dy.shape[:2], h, w), dy.dtype)
        dx[:, :, r:r + self.height, c:c + self.width] = dy
        return dx

    def get_config(self):
        config = Layer.get_config(self)
        return {**config, "height": self.height, "width": self.width, "data_format": self.data_format}
