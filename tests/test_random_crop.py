"""RandomCrop: a window per image while training (checked against the input's slices), Keras's
documented smart_resize at inference (against real Keras's Resizing(crop_to_aspect_ratio=True)
where installed), float64 gradient checks of both paths, and its differences from Keras 3.15."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients
from model_checks import real_keras


def test_each_image_gets_a_window_of_its_own(rng):
    x = rng.random((64, 12, 10, 3)).astype(np.float32)
    layer = layers.RandomCrop(8, 6, seed=1)
    model = convforge.Sequential([convforge.Input((12, 10, 3)), layer])
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    out = layer.forward(nchw, training=True)
    rows, cols, _, _ = layer._plan[1]
    for i, (r, c) in enumerate(zip(rows, cols)):
        np.testing.assert_array_equal(out[i], nchw[i, :, r:r + 8, c:c + 6])
    assert set(rows) == set(range(5)) and set(cols) == set(range(5))  # every position drawn
    assert model.output_shape == (None, 8, 6, 3)
    assert model(x, training=True).shape == (64, 8, 6, 3) and model(x).shape == (64, 8, 6, 3)
    # Inference: the centred box of the window's aspect ratio, resized (not the uncropped image
    # Keras 3.15 returns, of another shape than its own output_shape).
    smart = convforge.Sequential([convforge.Input((12, 10, 3)), layers.Resizing(8, 6, crop_to_aspect_ratio=True)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), smart.predict(x, verbose=0))
    np.testing.assert_array_equal(model(x, training=False), smart.predict(x, verbose=0))
    small = convforge.Sequential([convforge.Input((5, 20, 3)), layers.RandomCrop(8, 6)])  # smaller: resized
    assert small(rng.random((2, 5, 20, 3)), training=True).shape == (2, 8, 6, 3)


@pytest.mark.parametrize("shape", [(12, 10, 2), (5, 20, 2)])  # a random window; the resize (smaller image)
def test_the_gradient_is_exact(shape, rng):
    convforge.seed(0)
    model = convforge.Sequential([convforge.Input(shape), layers.Conv2D(2, 1), layers.RandomCrop(8, 6, seed=2),
                                  layers.Flatten(), layers.Dense(2)], dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    assert check_model_gradients(model, rng.standard_normal((3, *shape)), rng.standard_normal((3, 2))).passed


def test_an_inference_mode_check_keeps_its_shape(rng):
    # As the identity at inference (gradcheck's training=False, a frozen base) it passed on the
    # uncropped image: a shape mismatch in the Dense after it.
    model = convforge.Sequential([convforge.Input((8, 8, 2)), layers.RandomCrop(6, 6, seed=1), layers.Conv2D(2, 3),
                                  layers.Flatten(), layers.Dense(2)], dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    assert check_model_gradients(model, rng.standard_normal((2, 8, 8, 2)), rng.standard_normal((2, 2)),
                                 training=False).passed


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="RandomCrop height must be a positive int; got 0"):
        layers.RandomCrop(0, 4)
    with pytest.raises(TypeError, match="RandomCrop seed must be an int or None"):
        layers.RandomCrop(4, 4, seed="a")
    with pytest.raises(ValueError, match=r"RandomCrop expects images"):
        convforge.Sequential([convforge.Input((10,)), layers.RandomCrop(4, 4)])


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_inference_is_keras_s_smart_resize(rng):
    keras = real_keras()
    x = (rng.random((3, 13, 9, 3)) * 255).astype(np.float32)
    ours = convforge.Sequential([convforge.Input((13, 9, 3)), layers.RandomCrop(7, 5)])
    theirs = keras.Sequential([keras.Input((13, 9, 3)), keras.layers.Resizing(7, 5, crop_to_aspect_ratio=True)])
    np.testing.assert_allclose(ours.predict(x, verbose=0), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=5e-4)
    assert ours.output_shape == keras.Sequential([keras.Input((13, 9, 3)), keras.layers.RandomCrop(7, 5)]).output_shape


def test_a_frozen_random_crop_trains_on_its_inference_path(rng):
    # In base(x, training=False) Keras keeps a layer in inference mode in fit too; a RandomCrop
    # there drew random windows in training (its loss moved from call to call).
    base = convforge.Sequential([convforge.Input((8, 8, 3)), layers.RandomCrop(4, 4), layers.Flatten()])
    inputs = convforge.Input((8, 8, 3))
    model = convforge.Model(inputs, layers.Dense(2)(base(inputs, training=False)))
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.random((6, 8, 8, 3)).astype(np.float32), rng.random((6, 2)).astype(np.float32)
    losses = {round(model.loss_and_gradients(x, y, training=True, need_grad=False)[0], 5) for _ in range(3)}
    assert losses == {round(model.evaluate(x, y, verbose=0), 5)}
    model64 = convforge.Sequential([convforge.Input((8, 8, 2)), layers.Conv2D(2, 1), layers.RandomCrop(6, 6),
                                    layers.Flatten(), layers.Dense(2)], dtype="float64")
    model64.compile(optimizer="sgd", loss="mse")
    x, y = rng.standard_normal((2, 8, 8, 2)), rng.standard_normal((2, 2))
    assert check_model_gradients(model64, x, y, training=False).passed  # the resize's gradient
    assert model64.loss_and_gradients(x, y, training=False)[0] == pytest.approx(model64.evaluate(x, y, verbose=0))
