"""GroupNormalization, Keras's: values against a NumPy oracle written from Keras's definition on
the user's (channels-last) layout, Keras's weight shapes, parameter counts and groups=-1,
gradients checked numerically (and a broken one caught), training, saving, bad arguments, and
real Keras 3 side by side where it is installed. Its ONNX export and import are in test_onnx.py."""

from __future__ import annotations

import os

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients
from model_checks import fits_and_reloads

# (per-sample input, groups, axis): images, sequences, features; instance (-1) and layer (1)
# normalisation as the two ends; a channel axis that is not the last.
CASES = [((6, 5, 8), 2, -1), ((6, 5, 8), 4, -1), ((6, 5, 8), -1, -1), ((6, 5, 8), 1, -1), ((7, 6), 3, -1),
         ((12,), 4, -1), ((8, 5, 6), 2, 1), ((6, 8, 5), 4, 2)]


def _oracle(x, groups, axis, gamma, beta, eps=1e-3):
    """Keras's definition: the channel axis split into (groups, channels // groups), statistics over
    every axis but the batch and the groups."""
    axis %= x.ndim
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    split = x.astype(np.float64).reshape(*x.shape[:axis], groups, channels // groups, *x.shape[axis + 1:])
    reduce = tuple(a for a in range(1, split.ndim) if a != axis)
    mean = split.mean(axis=reduce, keepdims=True)
    var = split.var(axis=reduce, keepdims=True)
    normed = ((split - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = [1] * x.ndim
    shape[axis] = channels
    return normed * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("shape, groups, axis", CASES)
def test_group_normalization_matches_the_oracle_with_keras_weight_shapes(shape, groups, axis, rng):
    model = convforge.Sequential([layers.Input(shape), layers.GroupNormalization(groups=groups, axis=axis)],
                                 dtype="float64")
    channels = shape[axis - 1 if axis > 0 else axis]  # Keras's axis counts the batch
    gamma, beta = model.get_weights()
    assert gamma.shape == beta.shape == (channels,) and model.count_params() == 2 * channels
    np.testing.assert_array_equal(gamma, 1)
    np.testing.assert_array_equal(beta, 0)
    assert model.layers[0].groups == (channels if groups == -1 else groups)  # as Keras's, once built
    gamma, beta = rng.standard_normal(channels), rng.standard_normal(channels)
    model.set_weights([gamma, beta])
    x = rng.standard_normal((3, *shape)) * 3 + 1
    want = _oracle(x, groups, axis, gamma, beta)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model(x), want, rtol=1e-12, atol=1e-12)


def test_center_and_scale_off_leave_no_weights(rng):
    model = convforge.Sequential([layers.Input((4, 4, 6)), layers.GroupNormalization(3, center=False, scale=False)])
    assert model.get_weights() == [] and model.count_params() == 0
    x = rng.standard_normal((2, 4, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), _oracle(x, 3, -1, np.ones(6), np.zeros(6)), atol=2e-6)


@pytest.mark.parametrize("groups", [1, 2, -1])
def test_gradients_are_the_numerical_derivative(groups, rng):
    convforge.seed(3)
    x = convforge.Input((6, 6, 2), dtype="float64")
    h = layers.Conv2D(4, 3, padding="same")(x)
    h = layers.GroupNormalization(groups, gamma_initializer="random_normal", beta_initializer="random_normal")(h)
    h = layers.Conv2D(2, 3)(layers.ReLU()(h))
    model = convforge.Model(x, layers.Dense(2)(layers.Flatten()(h)))
    report = check_model_gradients(model, rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 2)),
                                   loss="mse", num_coords=8)
    assert report.passed, report
    assert any(r.key.endswith("gamma") for r in report.results) and any(r.key.endswith("beta") for r in report.results)


def test_gradient_check_fails_when_dx_is_wrong(rng, monkeypatch):
    convforge.seed(13)
    model = convforge.Sequential([layers.Input((5, 4)), layers.Dense(4), layers.GroupNormalization(2),
                                  layers.Flatten(), layers.Dense(1)], dtype="float64")
    original = layers.GroupNormalization.backward

    def plain_scale(self, dy):
        original(self, dy)  # the weights' gradients as they are
        return dy * 0.5  # not the normalisation's

    monkeypatch.setattr(layers.GroupNormalization, "backward", plain_scale)
    report = check_model_gradients(model, rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 1)), loss="mse")
    assert not report.passed


def test_group_normalization_trains_saves_and_loads(tmp_path, rng):
    convforge.seed(14)
    x = convforge.Input((6, 6, 1))
    h = layers.GroupNormalization(groups=2)(layers.Conv2D(4, 3)(x))
    y = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(layers.ReLU()(h)))
    model = convforge.Model(x, y)
    model.compile("adam", "sparse_categorical_crossentropy")
    xs, ys = rng.standard_normal((16, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 16)
    before = model.layers[2].get_weights()[0].copy()
    back = fits_and_reloads(model, xs, ys, tmp_path)
    assert not np.array_equal(model.layers[2].get_weights()[0], before)  # gamma learns
    config = back.layers[2].get_config()
    assert config["groups"] == 2 and config["epsilon"] == 1e-3


def test_group_normalization_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"groups must be an int >= 1, or -1 \(one per channel\); got 0"):
        layers.GroupNormalization(0)
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        layers.GroupNormalization(2, epsilon=-1)
    with pytest.raises(NotImplementedError, match="gamma_regularizer"):
        layers.GroupNormalization(2, gamma_regularizer="l2")
    with pytest.raises(ValueError, match=r"the 6 channels \(axis -1\) of its input \(None, 4, 4, 6\) are not a "
                                         r"multiple of groups=4"):
        convforge.Sequential([layers.Input((4, 4, 6)), layers.GroupNormalization(4)])
    with pytest.raises(ValueError, match=r"multiple of groups=32"):  # Keras's default groups, 16 channels
        convforge.Sequential([layers.Input((4, 4, 16)), layers.GroupNormalization()])
    with pytest.raises(ValueError, match=r"axis=3 is not an axis of its input of rank 3"):
        convforge.Sequential([layers.Input((5, 4)), layers.GroupNormalization(2, axis=3)])


# Keras's torch backend converts tensors with np.array(x), which NumPy 2 warns about.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("shape, groups, axis", CASES)
def test_against_real_keras(shape, groups, axis, rng):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    if keras.backend.backend() != "torch":
        pytest.skip(f"real Keras on its torch backend (this process's is {keras.backend.backend()})")
    k_in = keras.Input(shape)
    k_layer = keras.layers.GroupNormalization(groups=groups, axis=axis, gamma_initializer="random_normal",
                                              beta_initializer="random_normal")
    k_model = keras.Model(k_in, k_layer(k_in))
    c_in = convforge.Input(shape)
    c_model = convforge.Model(c_in, layers.GroupNormalization(groups=groups, axis=axis)(c_in))
    c_model.set_weights(k_model.get_weights())
    assert c_model.count_params() == k_model.count_params()
    assert c_model.layers[1].get_config()["groups"] == k_layer.get_config()["groups"]
    x = (rng.standard_normal((3, *shape)) * 2 + 0.5).astype(np.float32)
    np.testing.assert_allclose(c_model.predict(x, verbose=0), k_model.predict(x, verbose=0), atol=2e-6)
    # Gradients of sum(y * r) on both.
    r = rng.standard_normal((3, *shape)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    (k_model(xt) * torch.tensor(r)).sum().backward()
    layer = c_model.layers[1]
    layer.input_grad_needed = True
    to_internal = (lambda a: np.moveaxis(a, -1, 1)) if len(shape) == 3 else (lambda a: a)
    layer.forward(np.ascontiguousarray(to_internal(x)), training=True)
    dx = layer.backward(np.ascontiguousarray(to_internal(r)))
    np.testing.assert_allclose(np.moveaxis(dx, 1, -1) if len(shape) == 3 else dx, xt.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(layer.grads["gamma"], k_layer.gamma.value.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.grads["beta"], k_layer.beta.value.grad.numpy(), rtol=1e-4, atol=1e-5)
