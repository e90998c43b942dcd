"""The issue-13 layers inside models: Keras defaults, non-trainable moving statistics (updated only
in training, saved, never seen by the optimizer), float64 gradient checks, shapes and bad arguments.
Their numerical agreement with Keras itself is in tests/test_keras_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers as L
from convforge.gradcheck import check_model_gradients


def _bn_model(**bn):
    return convforge.Sequential([
        L.Conv2D(4, 3, padding="same", use_bias=False, input_shape=(6, 6, 2)),
        L.BatchNormalization(**bn),
        L.Activation("relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(3, activation="softmax"),
    ])


def test_batch_norm_keras_defaults_and_counts():
    bn = L.BatchNormalization()
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 1e-3, True, True)
    model = _bn_model()
    bn = model.layers[1]
    assert list(bn.params) == ["gamma", "beta", "moving_mean", "moving_variance"]
    np.testing.assert_array_equal(bn.params["moving_mean"], 0)
    np.testing.assert_array_equal(bn.params["moving_variance"], 1)
    assert bn.count_params() == 16 and bn.count_trainable_params() == 8
    lines = []
    model.summary(print_fn=lines.append)
    total = model.count_params()
    assert "Non-trainable params: 8" in lines[0] and f"Total params: {total:,}" in lines[0]
    plain = L.BatchNormalization(center=False, scale=False)
    plain._build((3, 4, 4), np.float32)
    assert list(plain.params) == ["moving_mean", "moving_variance"] and plain.count_trainable_params() == 0


def test_moving_statistics_update_only_in_training_and_not_by_the_optimizer(rng):
    model = _bn_model(momentum=0.5)
    model.compile(convforge.optimizers.SGD(learning_rate=10.0), "sparse_categorical_crossentropy")
    names = [key for _, pairs in model._trainable_plan for _, key in pairs]
    assert not any("moving" in n for n in names)
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    bn = model.layers[1]
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(bn.params["moving_mean"], 0)
    np.testing.assert_array_equal(bn.params["moving_variance"], 1)
    # One training step: moving = 0.5 * moving + 0.5 * batch statistic of the conv output.
    conv_out = model.layers[0].forward(model._entry.convert(x), training=False)
    want_mean = 0.5 * conv_out.mean(axis=(0, 2, 3), dtype=np.float64)
    want_var = 0.5 + 0.5 * conv_out.var(axis=(0, 2, 3), dtype=np.float64)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_allclose(bn.params["moving_mean"], want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.params["moving_variance"], want_var, rtol=1e-5)


def test_frozen_batch_norm_runs_in_inference_mode_inside_fit(rng):
    model = _bn_model()
    bn = model.layers[1]
    bn.trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = bn.get_weights()
    model.fit(rng.standard_normal((8, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, 8), epochs=1, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_save_load_keeps_moving_statistics(tmp_path, rng):
    model = convforge.Sequential([
        L.ZeroPadding2D(((1, 0), (2, 1)), input_shape=(7, 7, 2)),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
        L.BatchNormalization(momentum=0.9),
        L.SeparableConv2D(5, 3, activation="relu"),
        L.Cropping2D(1),
        L.GlobalMaxPooling2D(),
        L.Dense(8),
        L.BatchNormalization(),
        L.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.standard_normal((16, 7, 7, 2)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 16), epochs=2, batch_size=8, verbose=0)
    assert not np.all(model.layers[2].params["moving_mean"] == 0)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]


def _gradcheck_model(dense_bn=True):
    return convforge.Sequential([
        L.ZeroPadding2D((1, 2), input_shape=(5, 6, 2)),
        L.Conv2D(3, 3, use_bias=False),
        L.BatchNormalization(),
        L.Activation("tanh"),
        L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same"),
        L.SeparableConv2D(4, 2, activation="tanh"),
        L.Cropping2D(((1, 0), (0, 1))),
        L.GlobalAveragePooling2D(),
        *([L.Dense(5), L.BatchNormalization(center=False)] if dense_bn else []),
        L.Dense(3, activation="softmax"),
    ])


def test_float64_gradient_check_passes(rng):
    model = _gradcheck_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = rng.standard_normal((6, 5, 6, 2))
    report = check_model_gradients(model, x, rng.integers(0, 3, 6), num_coords=6)
    assert report.passed, str(report)


def test_gradient_check_fails_when_a_backward_is_broken(rng, monkeypatch):
    model = _gradcheck_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.standard_normal((6, 5, 6, 2)), rng.integers(0, 3, 6)
    original = L.BatchNormalization.backward

    def broken(self, dy):
        dx = original(self, dy)
        return None if dx is None else dx * 1.01

    monkeypatch.setattr(L.BatchNormalization, "backward", broken)
    assert not check_model_gradients(model, x, y, num_coords=6).passed


def test_batch_norm_on_sequences_gradient_check(rng):
    """BatchNormalization after a Conv1D normalises each channel over the batch and the steps; its
    gradients, with the ReLU after it (fused in training) and without, are the numerical ones."""
    model = convforge.Sequential([
        L.Conv1D(3, 3, padding="same", input_shape=(7, 2)),
        L.BatchNormalization(),
        L.ReLU(),
        L.Conv1D(4, 2),
        L.BatchNormalization(scale=False),
        L.GlobalAveragePooling1D(),
        L.Dense(3, activation="softmax"),
    ])
    assert model.layers[1].count_params() == 12 and model.output_shape == (None, 3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    report = check_model_gradients(model, rng.standard_normal((6, 7, 2)), rng.integers(0, 3, 6), num_coords=6)
    assert report.passed, str(report)


def test_global_max_pool_gradient_check(rng):
    model = convforge.Sequential([L.Conv2D(3, 2, input_shape=(4, 4, 1)), L.GlobalMaxPooling2D(keepdims=True),
                                  L.Flatten(), L.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert check_model_gradients(model, rng.standard_normal((4, 4, 4, 1)), rng.integers(0, 2, 4)).passed


def test_shapes_and_keepdims():
    def out(*layers, shape=(7, 9, 3)):
        return convforge.Sequential([L.InputLayer(shape), *layers]).output_shape

    assert out(L.GlobalAveragePooling2D()) == (None, 3)
    assert out(L.GlobalAveragePooling2D(keepdims=True)) == (None, 1, 1, 3)
    assert out(L.GlobalMaxPooling2D(keepdims=True)) == (None, 1, 1, 3)
    assert out(L.ZeroPadding2D()) == (None, 9, 11, 3)
    assert out(L.ZeroPadding2D(2)) == (None, 11, 13, 3)
    assert out(L.ZeroPadding2D(((1, 0), (0, 3)))) == (None, 8, 12, 3)
    assert out(L.Cropping2D()) == (None, 7, 9, 3)
    assert out(L.Cropping2D((1, 2))) == (None, 5, 5, 3)
    assert out(L.DepthwiseConv2D(3, depth_multiplier=4)) == (None, 5, 7, 12)
    assert out(L.DepthwiseConv2D(3, strides=2, padding="same")) == (None, 4, 5, 3)
    assert out(L.SeparableConv2D(8, (3, 5), padding="same")) == (None, 7, 9, 8)
    assert out(L.Dense(4), L.BatchNormalization(), shape=(6,)) == (None, 4)


def test_padding_and_cropping_values(rng):
    x = rng.standard_normal((2, 3, 4, 1)).astype(np.float32)
    y = convforge.Sequential([L.ZeroPadding2D(((1, 0), (2, 1)), input_shape=(3, 4, 1))]).predict(x, verbose=0)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0))))
    y = convforge.Sequential([L.Cropping2D(((1, 0), (2, 1)), input_shape=(3, 4, 1))]).predict(x, verbose=0)
    np.testing.assert_array_equal(y, x[:, 1:, 2:3])


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: L.BatchNormalization(momentum=1.5), ValueError, "momentum must be in [0, 1]"),
        (lambda: L.BatchNormalization(epsilon=0), ValueError, "epsilon must be in (0, inf)"),
        (lambda: L.BatchNormalization(axis="channels"), TypeError, "axis must be an int"),
        (lambda: L.BatchNormalization(center=1), TypeError, "center must be True or False"),
        (lambda: L.BatchNormalization(gamma_regularizer="l2"), NotImplementedError, "gamma_regularizer='l2'"),
        (lambda: L.BatchNormalization(synchronized=True), NotImplementedError, "synchronized=True"),
        (lambda: L.BatchNormalization(renorm=True), NotImplementedError, "renorm"),
        (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), ValueError, "depth_multiplier must be a positive int"),
        (lambda: L.DepthwiseConv2D(3, padding="full"), ValueError, "padding must be 'valid' or 'same'"),
        (lambda: L.DepthwiseConv2D(3, depthwise_constraint="non_neg"), NotImplementedError, "depthwise_constraint"),
        (lambda: L.SeparableConv2D(0, 3), ValueError, "filters must be a positive int"),
        (lambda: L.SeparableConv2D(4, 3, pointwise_constraint="non_neg"), NotImplementedError, "pointwise_constraint"),
        (lambda: L.SeparableConv2D(4, 3, pointwise_regularizer="l3"), ValueError, "pointwise_regularizer"),
        (lambda: L.GlobalAveragePooling2D(keepdims="yes"), TypeError, "keepdims must be True or False"),
        (lambda: L.ZeroPadding2D(-1), ValueError, "padding must be an int >= 0"),
        (lambda: L.ZeroPadding2D((1, 2, 3)), ValueError, "padding must be an int >= 0, a pair"),
        (lambda: L.Cropping2D(((1, 2), (3,))), ValueError, "cropping must be ((top, bottom), (left, right))"),
    ],
)
def test_bad_arguments(make, exc, words):
    with pytest.raises(exc) as err:
        make()
    assert words in str(err.value)


@pytest.mark.parametrize(
    "layers, words",
    [
        ([L.BatchNormalization(axis=1, input_shape=(4, 4, 3))], "axis=1 on input (batch, 4, 4, 3) is not supported"),
        ([L.BatchNormalization(axis=-3, input_shape=(4, 3))],
         "axis=-3 on input (batch, 4, 3) is not supported; convforge normalises over the channel axis of sequences "
         "only (axis=-1 or 2 for (batch, steps, channels), 1 or -2 for (batch, channels, steps))"),
        ([L.BatchNormalization(input_shape=(2, 4, 4, 3))],
         "takes images (batch, height, width, channels), sequences (batch, steps, channels) or (batch, features)"),
    ],
)
def test_unsupported_batch_norm_axis(layers, words):
    with pytest.raises(NotImplementedError) as err:
        convforge.Sequential(layers)
    assert words in str(err.value)


def test_build_time_shape_errors():
    with pytest.raises(ValueError, match="leaves nothing of the input"):
        convforge.Sequential([L.Cropping2D(2, input_shape=(4, 4, 1))])
    with pytest.raises(ValueError, match="GlobalAveragePooling2D expects input of shape"):
        convforge.Sequential([L.GlobalAveragePooling2D(input_shape=(4,))])
    with pytest.raises(ValueError, match="DepthwiseConv2D"):
        convforge.Sequential([L.DepthwiseConv2D(5, input_shape=(3, 3, 1))])
