"""Resizing and CenterCrop, Keras's: against real Keras 3 (torch backend, what it runs there:
interpolate(align_corners=False), 'nearest-exact', its crop and pad boxes) where it is installed,
against hand-computed values without it, float64 gradient checks of every path (a broken one
caught), training, saving and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients
from model_checks import fits_and_reloads, real_keras

CASES = [("Resizing", (6, 7), {}), ("Resizing", (16, 20), {}), ("Resizing", (6, 7), {"interpolation": "nearest"}),
         ("Resizing", (17, 11), {"interpolation": "nearest"}), ("Resizing", (8, 8), {"crop_to_aspect_ratio": True}),
         ("Resizing", (8, 12), {"pad_to_aspect_ratio": True, "fill_value": 3.0}), ("CenterCrop", (4, 3), {}),
         ("CenterCrop", (7, 7), {}), ("CenterCrop", (40, 2), {})]
SHAPES = [(9, 13, 3), (5, 4, 2)]


def _model(kind, args, kwargs, shape, dtype="float32"):
    return convforge.Sequential([convforge.Input(shape), getattr(layers, kind)(*args, **kwargs)], dtype=dtype)


def test_hand_computed_values():
    x = np.arange(4.0).reshape(1, 4, 1, 1)  # one column 0, 1, 2, 3
    # Half-pixel centres: output i of 2 reads input (i + 0.5) * 2 - 0.5 = 0.5, 2.5.
    np.testing.assert_allclose(_model("Resizing", (2, 1), {}, (4, 1, 1), "float64").predict(x, verbose=0).ravel(),
                               [0.5, 2.5])
    # Up to 8: (i + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, ... 3.25 (its taps clamped to 3).
    np.testing.assert_allclose(_model("Resizing", (8, 1), {}, (4, 1, 1), "float64").predict(x, verbose=0).ravel(),
                               [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    # 'nearest' (PyTorch's nearest-exact): floor((i + 0.5) * 4 / 3) = 0, 2, 3.
    np.testing.assert_array_equal(
        _model("Resizing", (3, 1), {"interpolation": "nearest"}, (4, 1, 1)).predict(x, verbose=0).ravel(), [0, 2, 3])
    # CenterCrop of 2 from 4 starts at (4 - 2) // 2 = 1.
    np.testing.assert_array_equal(_model("CenterCrop", (2, 1), {}, (4, 1, 1)).predict(x, verbose=0).ravel(), [1, 2])


@pytest.mark.parametrize("kind, args, kwargs", CASES)
def test_gradients_are_exact(kind, args, kwargs, rng):
    convforge.seed(0)
    model = convforge.Sequential([convforge.Input((5, 4, 2)), layers.Conv2D(2, 1), getattr(layers, kind)(*args, **kwargs),
                                  layers.Flatten(), layers.Dense(2)], dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.standard_normal((3, 5, 4, 2)), rng.standard_normal((3, 2))
    assert check_model_gradients(model, x, y).passed


def test_a_broken_backward_is_caught(rng, monkeypatch):
    real = layers.Resizing.backward
    monkeypatch.setattr(layers.Resizing, "backward", lambda self, dy: real(self, dy) * 1.1)
    model = convforge.Sequential([convforge.Input((5, 4, 2)), layers.Conv2D(2, 1), layers.Resizing(7, 3),
                                  layers.Flatten(), layers.Dense(2)], dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    assert not check_model_gradients(model, rng.standard_normal((3, 5, 4, 2)), rng.standard_normal((3, 2))).passed


def test_a_model_with_them_trains_and_reloads(rng, tmp_path):
    x = rng.random((32, 12, 10, 3)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    model = convforge.Sequential([convforge.Input((12, 10, 3)), layers.Resizing(8, 8, crop_to_aspect_ratio=True),
                                  layers.CenterCrop(6, 6), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                                  layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert model.output_shape == (None, 2) and model.layers[1].output_shape == (None, 6, 6, 3)
    back = fits_and_reloads(model, x, y, tmp_path)
    assert back.layers[0].get_config()["crop_to_aspect_ratio"] is True


@pytest.mark.parametrize("make, error, message", [
    (lambda: layers.Resizing(0, 4), ValueError, "height must be a positive int; got 0"),
    (lambda: layers.Resizing(4, 2.5), ValueError, "width must be a positive int; got 2.5"),
    (lambda: layers.Resizing(4, 4, interpolation="bicubic"), NotImplementedError, "interpolation='bicubic'"),
    (lambda: layers.Resizing(4, 4, interpolation="cubic"), ValueError, "must be 'bilinear' or 'nearest'"),
    (lambda: layers.Resizing(4, 4, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), ValueError,
     "only one of crop_to_aspect_ratio and pad_to_aspect_ratio"),
    (lambda: layers.Resizing(4, 4, antialias=True), NotImplementedError, "antialias=True"),
    (lambda: layers.Resizing(4, 4, fill_mode="reflect"), ValueError, "fill_mode must be 'constant'"),
    (lambda: layers.CenterCrop(4, 4, data_format="nhwc"), ValueError, "data_format must be"),
    (lambda: convforge.Sequential([convforge.Input((10,)), layers.CenterCrop(4, 4)]), ValueError,
     r"expects images \(batch, height, width, channels\)"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


# Keras's torch backend converts tensors with np.array(x), which NumPy 2 warns about.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind, args, kwargs", CASES)
def test_against_real_keras(kind, args, kwargs, shape, rng):
    keras = real_keras()
    x = (rng.random((3, *shape)) * 255).astype(np.float32)
    theirs = keras.Sequential([keras.Input(shape), getattr(keras.layers, kind)(*args, **kwargs)])
    ours = _model(kind, args, kwargs, shape)
    assert ours.output_shape == theirs.output_shape
    # 255-scale values; PyTorch computes the taps' weights in float32.
    np.testing.assert_allclose(ours.predict(x, verbose=0), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=5e-4)
    config, keras_config = ours.layers[0].get_config(), theirs.layers[0].get_config()
    for key in set(config) & set(keras_config) - {"name", "trainable", "data_format", "dtype"}:
        assert config[key] == keras_config[key], key
