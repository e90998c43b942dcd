"""layers.Normalization, Keras's preprocessing layer: adapt() against NumPy's mean and variance
in float64, Keras's weight shapes and parameter counts, given statistics, invert, the gradient
through it, training and saving, channels-first models, adapt from batches, bad arguments, and
real Keras 3 side by side where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients
from model_checks import fits_and_reloads, real_keras

# (per-sample shape, keyword arguments): per channel, one pair, per position, mixed axes,
# features, sequences, the inverse, statistics given.
CASES = [((4, 4, 3), {}), ((4, 4, 3), {"axis": None}), ((4, 4, 3), {"axis": (1, 2)}), ((4, 4, 3), {"axis": (1, -1)}),
         ((7,), {}), ((5, 6), {}), ((5, 6), {"axis": 1}), ((4, 4, 3), {"invert": True}),
         ((4, 4, 3), {"mean": [1, 2, 3], "variance": [1, 4, 9]}), ((7,), {"mean": 2.0, "variance": 4.0}),
         ((4, 4, 3), {"mean": 2.0, "variance": 4.0, "invert": True})]


def _data(shape, rng):
    x = (rng.random((20, *shape)) * 5 + 1).astype(np.float32)
    x[:, ..., 0] = 3.0  # a constant feature: its standard deviation is Keras's floor, 1e-7
    return x


def _oracle(x, kwargs):
    """Keras's definition on the user's layout: statistics over the batch and the axes not kept."""
    axis = kwargs.get("axis", -1)
    kept = () if axis is None else tuple(a % x.ndim for a in (axis if isinstance(axis, tuple) else (axis,)))
    reduce = tuple(a for a in range(x.ndim) if a not in kept)
    shape = [x.shape[a] if a in kept else 1 for a in range(x.ndim)]
    if "mean" in kwargs:
        size = int(np.prod([x.shape[a] for a in kept]))
        mean, variance = (np.broadcast_to(np.asarray(kwargs[k], np.float64).reshape(-1), (size,)).reshape(shape)
                          for k in ("mean", "variance"))
    else:
        x64 = x.astype(np.float64)
        mean, variance = x64.mean(axis=reduce, keepdims=True), x64.var(axis=reduce, keepdims=True)
    std = np.maximum(np.sqrt(variance), 1e-7)
    return x * std + mean if kwargs.get("invert") else (x - mean) / std, mean, variance


@pytest.mark.parametrize("shape, kwargs", CASES)
def test_normalization_matches_the_oracle_with_keras_weight_shapes(shape, kwargs, rng):
    x = _data(shape, rng)
    layer = layers.Normalization(**kwargs)
    if "mean" not in kwargs:
        layer.adapt(x)
    model = convforge.Sequential([convforge.Input(shape), layer])
    expected, mean, variance = _oracle(x, kwargs)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(layer.mean, mean, rtol=1e-6)  # Keras's broadcast shape
    kept = [d for d in mean.shape[1:] if d != 1]  # (no kept axis of size 1 among the cases)
    if "mean" in kwargs:  # given: no weights, as in Keras
        assert layer.get_weights() == [] and model.count_params() == 0
    else:  # mean, variance (the kept axes' shape) and count, non-trainable: Keras's 2 * size + 1
        assert [w.shape for w in layer.get_weights()] == [tuple(kept), tuple(kept), ()]
        assert model.count_params() == 2 * int(np.prod(kept)) + 1 and not layer.trainable_weights
        np.testing.assert_allclose(layer.get_weights()[1].reshape(variance.shape), variance, rtol=1e-5)


def test_the_gradient_goes_through_it(rng):
    # A Normalization after a Dense: dx = dy / std (or * std inverted), float64 gradient checks.
    for norm in (layers.Normalization(mean=[1, 2, 3, 4], variance=[1, 4, 9, 16]), layers.Normalization(invert=True)):
        model = convforge.Sequential([convforge.Input((5,)), layers.Dense(4), norm, layers.Dense(2)], dtype="float64")
        if not norm._fixed:
            norm.adapt(rng.standard_normal((10, 4)) * 3 + 1)
        model.compile(optimizer="sgd", loss="mse")
        assert check_model_gradients(model, rng.standard_normal((4, 5)), rng.standard_normal((4, 2))).passed


def test_a_model_that_starts_with_it_trains_and_reloads(rng, tmp_path):
    x = (rng.random((64, 6, 6, 3)) * 50 + 10).astype(np.float32)
    y = rng.integers(0, 2, 64)
    norm = layers.Normalization()
    norm.adapt(x)
    model = convforge.Sequential([convforge.Input((6, 6, 3)), norm, layers.Conv2D(4, 3, activation="relu"),
                                  layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    statistics = [w.copy() for w in norm.get_weights()]
    back = fits_and_reloads(model, x, y, tmp_path)
    for before, after, loaded in zip(statistics, norm.get_weights(), back.layers[0].get_weights()):
        np.testing.assert_array_equal(before, after)  # not trained
        np.testing.assert_array_equal(before, loaded)


def test_adapt_takes_batches_and_channels_first_models(rng):
    x = (rng.random((64, 6, 6, 3)) * 50 + 10).astype(np.float32)
    whole = layers.Normalization()
    whole.adapt(x)

    class Batches:  # a Sequence of (x, y) batches, as fit reads one
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[16 * i:16 * (i + 1)], np.zeros(16)

    for data in (Batches(), (x[i:i + 16] for i in range(0, 64, 16)), x.tolist(), list(x)):
        layer = layers.Normalization()
        layer.adapt(data)
        for a, b in zip(layer.get_weights(), whole.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    # Adapted on NCHW data before the model says it is channels-first: statistics of axis 1.
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    layer = layers.Normalization(axis=1)
    layer.adapt(nchw)
    model = convforge.Sequential([convforge.Input((3, 6, 6)), layer, layers.Conv2D(2, 1, data_format="channels_first")])
    np.testing.assert_allclose(layer.get_weights()[0], whole.get_weights()[0], rtol=1e-6)
    conv_alone = convforge.Sequential([convforge.Input((3, 6, 6)), layers.Conv2D(2, 1, data_format="channels_first")])
    conv_alone.set_weights(model.layers[1].get_weights())
    per_channel = (1, 3, 1, 1)
    normalised = (nchw - whole.get_weights()[0].reshape(per_channel)) / np.sqrt(whole.get_weights()[1]).reshape(per_channel)
    np.testing.assert_allclose(model.predict(nchw, verbose=0), conv_alone.predict(normalised, verbose=0),
                               rtol=1e-5, atol=1e-5)
    # A second adapt replaces the statistics, as Keras's.
    whole.adapt(x[:8])
    np.testing.assert_allclose(whole.get_weights()[0], x[:8].reshape(-1, 3).mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("make, error, message", [
    (lambda: layers.Normalization(axis="a"), TypeError, "axis must be an int, a tuple of ints or None"),
    (lambda: layers.Normalization(mean=1.0), ValueError, "both mean and variance must be set"),
    (lambda: layers.Normalization(mean=[1, 2], variance=[1, -1]), ValueError, "variance must be >= 0"),
    (lambda: layers.Normalization(mean=np.nan, variance=1.0), ValueError, "mean must be finite"),
    (lambda: layers.Normalization(invert=1), TypeError, "invert must be True or False"),
    (lambda: layers.Normalization(axis=5).adapt(np.ones((4, 6, 6, 3))), ValueError,
     r"axis=\(5,\) does not name distinct axes of its input of rank 4"),
    (lambda: layers.Normalization().adapt(np.array(["a", "b"])), TypeError, "data must hold real numbers"),
    (lambda: layers.Normalization().adapt(np.ones(3)), ValueError, r"got shape \(3,\)"),
    (lambda: layers.Normalization().adapt(np.ones((0, 3))), ValueError, "the data has no samples"),
    (lambda: layers.Normalization().adapt(np.ones((2, 3)), steps=0), ValueError, "steps must be a positive int"),
    (lambda: layers.Normalization(mean=1.0, variance=1.0).adapt(np.ones((2, 3))), ValueError,
     "adapt\\(\\) computes mean and variance, which this layer was given"),
    (lambda: convforge.Sequential([convforge.Input((4,)), layers.Normalization(mean=[1, 2, 3], variance=[1, 1, 1])]),
     ValueError, r"mean of shape \(3,\) does not fit statistics of shape \(1, 4\)"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_statistics_of_other_data_are_refused():
    layer = layers.Normalization()
    layer.adapt(np.ones((4, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"adapt got data of per-sample shape \(6, 6, 4\)"):
        layer.adapt(np.ones((4, 6, 6, 4)))
    with pytest.raises(ValueError, match=r"holds statistics of shape \(3,\) .*cannot take input"):
        convforge.Sequential([convforge.Input((6, 6, 4)), layer])


# Keras's torch backend converts tensors with np.array(x), which NumPy 2 warns about.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("shape, kwargs", CASES)
def test_against_real_keras(shape, kwargs, rng):
    keras = real_keras()
    x = _data(shape, rng)
    k_layer, c_layer = keras.layers.Normalization(**kwargs), layers.Normalization(**kwargs)
    if "mean" not in kwargs:
        k_layer.adapt(x)
        c_layer.adapt(x)
    k_model = keras.Sequential([keras.Input(shape), k_layer])
    c_model = convforge.Sequential([convforge.Input(shape), c_layer])
    np.testing.assert_allclose(c_model.predict(x, verbose=0), k_model.predict(x, verbose=0), rtol=2e-6, atol=2e-6)
    assert c_model.count_params() == k_model.count_params()
    assert [w.shape for w in c_layer.get_weights()] == [w.shape for w in k_layer.get_weights()]
    for ours, theirs in zip(c_layer.get_weights(), k_layer.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    k_config, c_config = k_layer.get_config(), c_layer.get_config()
    for key in ("invert", "mean", "variance"):
        assert c_config[key] == k_config[key]
    assert tuple(c_config["axis"]) == tuple(k_config["axis"])


def test_a_list_of_a_few_samples_is_samples(rng):
    # A list of three images was read as (x, y, sample_weight): the first image alone.
    images = rng.random((3, 6, 6, 3))
    layer = layers.Normalization()
    layer.adapt([images[0], images[1], images[2]])
    np.testing.assert_allclose(layer.get_weights()[0], images.reshape(-1, 3).mean(axis=0), rtol=1e-6)
    layer = layers.Normalization()
    layer.adapt([[1.0, 2], [3, 4], [5, 6]])
    np.testing.assert_allclose(layer.get_weights()[0], [3, 4])


def test_a_failed_model_build_leaves_an_adapted_layer_as_it_was(rng):
    images = rng.random((20, 6, 6, 3)).astype(np.float32)
    layer = layers.Normalization()
    layer.adapt(images)
    expected = layer(images)
    with pytest.raises(ValueError, match="holds statistics of shape"):
        convforge.Sequential([convforge.Input((3, 6, 6)), layer, layers.Conv2D(3, 1, data_format="channels_first")])
    np.testing.assert_array_equal(layer(images), expected)
    assert layer.mean.shape == (1, 1, 1, 3)
    assert layers.Normalization(axis=None).get_config()["axis"] == []  # Keras 3.15's () (None in its docs)
