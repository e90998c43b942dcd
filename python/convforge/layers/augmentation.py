"""Training-only image augmentation: RandomFlip, RandomRotation, RandomZoom, RandomTranslation,
RandomContrast, RandomBrightness, RandomCrop.

As in Keras, each layer transforms every image of a batch by its own random
amount while training (``fit``, ``train_on_batch``) and is the identity in
inference (``predict``, ``evaluate``, ``model(x, training=False)``). A model
called on arrays without ``training`` (``augment(images)``, the tutorials' look
at augmented images) augments, as Keras's does (these layers' own default is
``training=True``): the rest of the model runs in inference mode then. The draws come from convforge's
generator (:func:`convforge.seed`), or from the layer's own generator when it
is given ``seed=``: runs are reproducible, but not the same draws as Keras's.

Rotation, zoom and translation resample with bilinear interpolation and
Keras's ``fill_mode`` (``'reflect'`` by default: ``d c b a | a b c d | d c b a``;
also ``'wrap'``, ``'nearest'``, ``'constant'`` with ``fill_value``). Their
backward pass is the exact adjoint of that resampling (so they may sit
anywhere in a model), although as first layers nothing is propagated
through them.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers

import numpy as np

from .. import random as _random
from .base import Layer, resolve_data_format
from .preprocessing import Resizing, _positive_size

__all__ = ["RandomBrightness", "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation",
           "RandomZoom"]

_FILL_MODES = ("reflect", "wrap", "nearest", "constant")

# Set while a model runs on arrays called without ``training``: its layers run with training
# False (a bool), and these layers augment as Keras's do when training is not given.
_TRAINING_UNSET = contextvars.ContextVar("convforge_augment_training_unset", default=False)
# Set around a layer that a model called with training=False froze (Keras's base(x,
# training=False)): it runs as at inference whatever the call's mode, and keeps what its
# backward needs when training (RandomCrop's resize).
_AS_AT_INFERENCE = contextvars.ContextVar("convforge_augment_as_at_inference", default=False)


@contextlib.contextmanager
def _setting(flag: contextvars.ContextVar):
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def training_unset():
    """Augmentation layers augment inside this block, with ``training=False`` (``model(x)``)."""
    return _setting(_TRAINING_UNSET)


def as_at_inference():
    """Augmentation layers run as at inference inside this block (a frozen node of a model)."""
    return _setting(_AS_AT_INFERENCE)


def training_unset_now() -> bool:
    """Inside :func:`training_unset` (the compiled inference plans, which do not augment, step aside)."""
    return _TRAINING_UNSET.get()


def augments_by_default(layer) -> bool:
    """Does ``layer`` transform its input when ``training`` is not given (Keras's default True)?"""
    return isinstance(layer, _Augmentation)


def _factor_range(factor, name: str, layer: str, bounds=None) -> tuple[float, float]:
    """Keras's factor argument: ``f`` -> ``(-f, f)``, or a ``(low, high)`` pair; ``bounds``
    ``(lowest, highest, lowest is open)``: Keras's range for the layer, e.g. a zoom's (-1, 1]."""

    def number(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)

    if isinstance(factor, (tuple, list)) and len(factor) == 2 and all(number(v) for v in factor):
        low, high = float(factor[0]), float(factor[1])
    elif number(factor):
        low, high = -abs(float(factor)), abs(float(factor))
    else:  # also a pair of strings or None (float() said "could not convert"), and nan
        raise ValueError(f"{layer} {name} must be a finite number or a (low, high) pair of them; got {factor!r}")
    if low > high:
        raise ValueError(f"{layer} {name} must have low <= high; got {(low, high)}")
    if bounds is not None:  # on the numbers given, as Keras checks them (RandomZoom(1.0) is fine)
        lowest, highest, open_low = bounds
        given = [float(v) for v in factor] if isinstance(factor, (tuple, list)) else [float(factor)]
        if any((v <= lowest if open_low else v < lowest) or v > highest for v in given):
            shown = f"{'(' if open_low else '['}{lowest}, {highest}]"
            raise ValueError(f"{layer} {name} must be in {shown} (Keras's range); got {factor!r}")
    return low, high


class _Augmentation(Layer):
    _expects_images = True
    _cache_attrs = ("_plan",)

    def __init__(self, seed=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"{type(self).__name__} seed must be an int or None; got {seed!r}")
        self.seed = seed
        self._own_generator = None if seed is None else np.random.default_rng(int(seed))
        self._plan = None

    def _generator(self) -> np.random.Generator:
        return self._own_generator if self._own_generator is not None else _random.get_generator()

    def random_generators(self) -> list:
        return [] if self._own_generator is None else [self._own_generator]

    def _compute_internal_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects images (batch, height, width, channels); got {self._show(input_shape)}"
            )
        return tuple(input_shape)

    def _augments(self, training) -> bool:
        return not _AS_AT_INFERENCE.get() and (bool(training) or _TRAINING_UNSET.get())

    def backward(self, dy):
        if self._plan is None:
            raise self._missing_cache()
        return self._adjoint(dy)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


class RandomFlip(_Augmentation):
    """Flip each image left-right and/or up-down with probability 1/2, Keras's ``RandomFlip``.

    ``mode``: ``'horizontal'``, ``'vertical'`` or ``'horizontal_and_vertical'`` (default).

    Differs from Keras 3 in ``'horizontal_and_vertical'``: here each image is flipped left-right
    and up-down independently (four outcomes, a quarter each: as TF-Keras 2 and torchvision's two
    flips in a row); Keras 3 draws one coin per image and flips both axes together or neither
    (the image as it is or turned by 180 degrees, half each). Write
    ``RandomFlip('horizontal'), RandomFlip('vertical')`` for the same four outcomes in either.
    """

    def __init__(self, mode="horizontal_and_vertical", seed=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(seed, name=name, input_shape=input_shape, trainable=trainable)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(
                f"RandomFlip mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical'; got {mode!r}"
            )
        self.mode = mode

    def _flip(self, x, plan):
        flip_w, flip_h = plan
        y = x.copy()
        y[flip_w] = y[flip_w][..., ::-1]
        y[flip_h] = y[flip_h][:, :, ::-1, :]
        return y

    def forward(self, x, training=False):
        if not self._augments(training):  # the training plan stays: predict may run during fit
            return x                      # (docs/RELIABILITY.md 10)
        n = x.shape[0]
        rng = self._generator()
        flip_w = rng.random(n) < 0.5 if self.mode != "vertical" else np.zeros(n, bool)
        flip_h = rng.random(n) < 0.5 if self.mode != "horizontal" else np.zeros(n, bool)
        if training:
            self._plan = (flip_w, flip_h)
        return self._flip(x, (flip_w, flip_h))

    def _adjoint(self, dy):
        return self._flip(dy, self._plan)  # a flip is its own inverse and adjoint

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class _Affine(_Augmentation):
    """An image transform ``output(p) = input(A_n p + b_n)``, resampled bilinearly (see the module docstring)."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, *, name=None,
                 input_shape=None, trainable=True):
        super().__init__(seed, name=name, input_shape=input_shape, trainable=trainable)
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"{type(self).__name__} fill_mode must be one of {list(_FILL_MODES)}; got {fill_mode!r}")
        if interpolation != "bilinear":
            raise ValueError(
                f"convforge does not support {type(self).__name__} interpolation={interpolation!r}; use 'bilinear'"
            )
        if isinstance(fill_value, (bool, np.bool_)) or not isinstance(fill_value, numbers.Real):
            raise TypeError(f"{type(self).__name__} fill_value must be a number; got {fill_value!r}")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def _matrices(self, n, h, w, rng):  # pragma: no cover - abstract
        """``(A (n, 2, 2), b (n, 2))`` mapping output (row, col) to input (row, col)."""
        raise NotImplementedError

    def _indices(self, i, size):
        """Map integer indices into ``[0, size)`` by the fill mode; also whether each was inside."""
        inside = (i >= 0) & (i < size)
        if self.fill_mode == "reflect":
            period = 2 * size
            i = np.mod(i, period)
            i = np.where(i >= size, period - 1 - i, i)
        elif self.fill_mode == "wrap":
            i = np.mod(i, size)
        else:  # nearest, and constant (outside points get weight 0 below)
            i = np.clip(i, 0, size - 1)
        return i, inside

    def forward(self, x, training=False):
        if not self._augments(training):  # the training plan stays: predict may run during fit
            return x                      # (docs/RELIABILITY.md 10)
        n, c, h, w = x.shape
        a, b = self._matrices(n, h, w, self._generator())
        rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        a, b = a.astype(np.float32), b.astype(np.float32)
        src_r = a[:, 0, 0, None, None] * rows + (a[:, 0, 1, None, None] * cols + b[:, 0, None, None])
        src_c = a[:, 1, 0, None, None] * rows + (a[:, 1, 1, None, None] * cols + b[:, 1, None, None])
        r0, c0 = np.floor(src_r), np.floor(src_c)
        fr, fc = src_r - r0, src_c - c0
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        base = (np.arange(n) * (h * w))[:, None, None]
        corners = []
        outside = np.zeros((n, h, w), dtype=np.float32) if self.fill_mode == "constant" else None
        rows_idx = [self._indices(r0 + dr, h) for dr in (0, 1)]
        cols_idx = [self._indices(c0 + dc, w) for dc in (0, 1)]
        for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                               (1, 1, fr * fc)):
            (ri, r_in), (ci, c_in) = rows_idx[dr], cols_idx[dc]
            if outside is not None:
                valid = r_in & c_in
                outside += np.where(valid, 0.0, weight)
                weight = np.where(valid, weight, 0.0)
            # Flat pixel indices into the (n * h * w, c) view: one np.take per corner.
            corners.append(((base + ri * w + ci).reshape(-1), weight.astype(x.dtype).reshape(-1, 1)))
        if training:
            self._plan = (corners, x.shape)
        pixels = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n * h * w, c)
        out = np.zeros((n * h * w, c), dtype=x.dtype)
        for flat, weight in corners:
            out += weight * np.take(pixels, flat, axis=0)
        if outside is not None and self.fill_value:
            out += (self.fill_value * outside).reshape(-1, 1).astype(x.dtype)
        return np.ascontiguousarray(out.reshape(n, h, w, c).transpose(0, 3, 1, 2))

    def _adjoint(self, dy):
        corners, shape = self._plan
        n, c, h, w = shape
        dyt = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(n * h * w, c)
        dx = np.zeros((n * h * w, c), dtype=dy.dtype)
        for flat, weight in corners:
            np.add.at(dx, flat, weight * dyt)
        return np.ascontiguousarray(dx.reshape(n, h, w, c).transpose(0, 3, 1, 2))

    @staticmethod
    def _about_center(m, h, w):
        """``b`` such that ``p -> m p + b`` keeps the image center fixed."""
        center = np.array([(h - 1) / 2, (w - 1) / 2])
        return center - np.einsum("nij,j->ni", m, center)

    def get_config(self):
        return {
            **super().get_config(),
            "fill_mode": self.fill_mode,
            "interpolation": self.interpolation,
            "fill_value": self.fill_value,
        }


class RandomRotation(_Affine):
    """Rotate each image by a random angle in ``factor * [-2 pi, 2 pi]`` (or ``(low, high) * 2 pi``),
    Keras's ``RandomRotation``: ``factor=0.1`` turns by up to 36 degrees either way; a positive
    angle turns counter-clockwise, as in Keras (``(0.25, 0.25)`` is ``np.rot90``)."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, *,
                 name=None, input_shape=None, trainable=True):
        super().__init__(fill_mode, interpolation, seed, fill_value, name=name, input_shape=input_shape,
                         trainable=trainable)
        self.factor = factor
        self._range = _factor_range(factor, "factor", "RandomRotation")

    def _matrices(self, n, h, w, rng):
        # Keras turns a positive factor counter-clockwise. This matrix maps an output (row, col) to
        # the input pixel it reads, rows pointing down: turning the image counter-clockwise by a
        # reads it clockwise by a, hence the minus (it turned clockwise, for (low, high) factors).
        angle = -rng.uniform(*self._range, size=n) * 2 * math.pi
        cos, sin = np.cos(angle), np.sin(angle)
        m = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
        return m, self._about_center(m, h, w)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_Affine):
    """Zoom each image by a random amount, Keras's ``RandomZoom``: ``height_factor=0.2`` draws a zoom in
    ``[-20%, +20%]`` (positive zooms out); ``width_factor=None`` zooms both axes by the same amount."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, *, name=None, input_shape=None, trainable=True):
        super().__init__(fill_mode, interpolation, seed, fill_value, name=name, input_shape=input_shape,
                         trainable=trainable)
        self.height_factor, self.width_factor = height_factor, width_factor
        # A zoom of -1 or less would scale by 1 + f <= 0: Keras's (-1, 1].
        self._h_range = _factor_range(height_factor, "height_factor", "RandomZoom", (-1.0, 1.0, True))
        self._w_range = (None if width_factor is None
                         else _factor_range(width_factor, "width_factor", "RandomZoom", (-1.0, 1.0, True)))

    def _matrices(self, n, h, w, rng):
        zh = 1 + rng.uniform(*self._h_range, size=n)
        zw = zh if self._w_range is None else 1 + rng.uniform(*self._w_range, size=n)
        m = np.zeros((n, 2, 2))
        m[:, 0, 0], m[:, 1, 1] = zh, zw
        return m, self._about_center(m, h, w)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomTranslation(_Affine):
    """Shift each image by a random fraction of its size, Keras's ``RandomTranslation``:
    ``height_factor=0.1`` moves it up or down by up to 10% of its height."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, *, name=None, input_shape=None, trainable=True):
        super().__init__(fill_mode, interpolation, seed, fill_value, name=name, input_shape=input_shape,
                         trainable=trainable)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._h_range = _factor_range(height_factor, "height_factor", "RandomTranslation", (-1.0, 1.0, False))
        self._w_range = _factor_range(width_factor, "width_factor", "RandomTranslation", (-1.0, 1.0, False))

    def _matrices(self, n, h, w, rng):
        m = np.broadcast_to(np.eye(2), (n, 2, 2)).copy()
        shift = np.stack([rng.uniform(*self._h_range, size=n) * h, rng.uniform(*self._w_range, size=n) * w], 1)
        return m, -shift

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


def _keras_factor(factor, bounds: tuple, layer: str) -> tuple[float, float]:
    """Keras 3.15's reading of a colour layer's ``factor`` (its ``_set_factor``): a pair, sorted, that
    reaches into ``bounds``; a number ``f`` within ``bounds`` is ``(max(-|f|, low bound), |f|)``."""
    message = (f"{layer} factor must be a number (or a list of two numbers) in the range [{bounds[0]}, {bounds[1]}] "
               f"(Keras's rule); got {factor!r}")

    def number(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)

    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(number(v) for v in factor) or factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(message)
        low, high = sorted(float(v) for v in factor)
        return low, high
    if not number(factor) or not bounds[0] <= factor <= bounds[1]:
        raise ValueError(message)
    return max(-abs(float(factor)), float(bounds[0])), abs(float(factor))


def _value_range(value_range, layer: str) -> tuple[float, float]:
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)
            for v in value_range):
        raise ValueError(f"{layer} value_range must be a (low, high) pair of numbers, such as (0, 255) or (0, 1); "
                         f"got {value_range!r}")
    low, high = sorted(float(v) for v in value_range)
    return low, high


class _ColourAugmentation(_Augmentation):
    """A per-image change of the pixel values, clipped into ``value_range`` (Keras's colour layers):
    ``forward`` draws one number per image; the backward is the exact gradient (the clip's mask)."""

    _cache_attrs = ("_plan",)

    def __init__(self, factor, value_range=(0, 255), seed=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(seed, name=name, input_shape=input_shape, trainable=trainable)
        self.factor = _keras_factor(factor, self._FACTOR_BOUNDS, type(self).__name__)
        self.value_range = _value_range(value_range, type(self).__name__)

    def forward(self, x, training=False):
        if not self._augments(training):  # the training plan stays: predict may run during fit
            return x                      # (docs/RELIABILITY.md 10)
        draws = self._generator().uniform(*self._draw_range(), size=x.shape[0]).reshape(-1, 1, 1, 1)
        unclipped = self._change(x, draws)
        low, high = self.value_range
        y = np.clip(unclipped, low, high).astype(x.dtype, copy=False)
        if training:
            self._plan = (draws, (unclipped > low) & (unclipped < high))
        return y

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor), "value_range": list(self.value_range)}


class RandomContrast(_ColourAugmentation):
    """Scale each image's contrast by a random factor, Keras's ``RandomContrast``: each channel's
    pixels move away from (or towards) that channel's mean over the image, ``(x - mean) * f + mean``,
    then are clipped into ``value_range`` (default ``(0, 255)``: give ``(0, 1)`` after a
    ``Rescaling(1 / 255)``). ``f`` is drawn per image, uniform in ``[1 - low, 1 + high]`` for
    ``factor=(low, high)`` in [0, 1].

    As Keras 3.15 computes it, a number ``factor=0.2`` is ``(0, 0.2)``: factors in [1, 1.2] only
    (Keras's documentation says [0.8, 1.2]; write ``factor=(0.2, 0.2)`` for that, in either).
    """

    _FACTOR_BOUNDS = (0, 1)

    def _draw_range(self):
        return 1.0 - self.factor[0], 1.0 + self.factor[1]

    def _change(self, x, draws):
        mean = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
        return ((x - mean) * draws + mean).astype(x.dtype)

    def _adjoint(self, dy):
        draws, inside = self._plan
        d = np.where(inside, dy, 0).astype(dy.dtype, copy=False)
        # d/dx of (x - mean) f + mean: f on the pixel, (1 - f) / (h w) through the mean.
        return (d * draws + (1 - draws) * d.mean(axis=(2, 3), keepdims=True, dtype=np.float64)).astype(dy.dtype)


class RandomBrightness(_ColourAugmentation):
    """Add a random amount to each image, Keras's ``RandomBrightness``: ``factor=(low, high)`` in
    [-1, 1] (a number ``f``: ``(-f, f)``) draws a delta per image, uniform in ``[low, high]`` times
    the width of ``value_range`` (default ``(0, 255)``), added to every pixel and channel, then the
    image is clipped into ``value_range``."""

    _FACTOR_BOUNDS = (-1, 1)

    def _draw_range(self):
        return self.factor

    def _change(self, x, draws):
        low, high = self.value_range
        return x + (draws * (high - low)).astype(x.dtype)

    def _adjoint(self, dy):
        _, inside = self._plan
        return np.where(inside, dy, 0).astype(dy.dtype, copy=False)


class RandomCrop(_Augmentation):
    """A random ``(height, width)`` window of each image while training, Keras's ``RandomCrop``;
    at inference (and for an image smaller than the window) the largest centred box of the
    window's aspect ratio, resized to it (bilinear: Keras's documented ``smart_resize``).

    Differs from Keras 3.15, whose code does not do what its documentation says: there every
    image of a batch gets the same window, an image must be strictly larger than it on both axes
    to be cropped at random, and at inference the image comes back uncropped (its output then
    has another shape than the layer's own ``compute_output_shape``, which breaks the layers
    after it). Here each image draws its own window, an axis as long as the window has the one
    position, and inference follows the documentation."""

    # Not the identity at inference: where a model called with training=False freezes it (and in
    # gradcheck's training=False) it trains on its resize (Functional._run), not on nothing.
    _identity_at_inference = False

    def __init__(self, height, width, seed=None, data_format=None, *, name=None, input_shape=None, trainable=True):
        super().__init__(seed, name=name, input_shape=input_shape, trainable=trainable)
        self.height, self.width = _positive_size(height, "height", "RandomCrop"), _positive_size(width, "width",
                                                                                                  "RandomCrop")
        self.data_format = resolve_data_format(data_format)
        self._smart = Resizing(self.height, self.width, crop_to_aspect_ratio=True)  # the inference path

    def _compute_internal_output_shape(self, input_shape):
        super()._compute_internal_output_shape(input_shape)  # images only
        return (input_shape[0], self.height, self.width)

    def forward(self, x, training=False):
        n, _, h, w = x.shape
        if not self._augments(training) or h < self.height or w < self.width:
            if training:
                self._plan = ("smart", (h, w))
            return self._smart.forward(x, training)
        rng = self._generator()
        rows = rng.integers(0, h - self.height + 1, size=n)
        cols = rng.integers(0, w - self.width + 1, size=n)
        r = rows[:, None] + np.arange(self.height)
        c = cols[:, None] + np.arange(self.width)
        out = x[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None], r[:, None, :, None],
                c[:, None, None, :]]
        if training:
            self._plan = ("crop", (rows, cols, h, w))
        return np.ascontiguousarray(out)

    def _adjoint(self, dy):
        kind, detail = self._plan
        if kind == "smart":
            return self._smart.backward(dy)
        rows, cols, h, w = detail
        dx = np.zeros((*dy.shape[:2], h, w), dy.dtype)
        for i, (r, c) in enumerate(zip(rows, cols)):
            dx[i, :, r:r + self.height, c:c + self.width] = dy[i]
        return dx

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "data_format": self.data_format}
