"""SpatialDropout1D, SpatialDropout2D, GaussianNoise and GaussianDropout (layers/noise.py).

What each draws in training (whole channels dropped; the noise's mean and spread), that the
backward uses the very draws of the forward, the identity at inference (predict's compiled
plan, a training=False call, ONNX export), save/load, reproducibility under convforge.seed,
and clear errors. Their inference against real Keras 3 is in test_keras_reference.py
(LAYER_CASES); the config keys against Keras's are at the end of this file.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import convforge
from convforge import layers


def test_spatial_dropout2d_drops_whole_feature_maps():
    convforge.seed(3)
    layer = layers.SpatialDropout2D(0.4)
    model = convforge.Sequential([layers.Input((6, 5, 64)), layer])
    x = np.random.default_rng(0).uniform(1.0, 2.0, (50, 64, 6, 5))  # internal NCHW
    y = layer.forward(x, training=True)
    dropped = (y == 0).reshape(50, 64, -1)
    assert np.all(dropped == dropped[:, :, :1])  # one draw a (sample, channel)
    np.testing.assert_allclose(y[y != 0], x[y != 0] / 0.6, rtol=1e-15)
    assert abs(dropped[:, :, 0].mean() - 0.4) < 0.05  # 3200 draws
    dy = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(y == 0, 0.0, dy / 0.6), rtol=1e-15)
    assert model.predict(np.moveaxis(x, 1, -1), verbose=0).shape == (50, 6, 5, 64)


def test_spatial_dropout1d_drops_whole_channels_over_the_steps():
    convforge.seed(4)
    layer = layers.SpatialDropout1D(0.5)
    convforge.Sequential([layers.Input((9, 40)), layer])
    x = np.random.default_rng(0).uniform(1.0, 2.0, (30, 9, 40))  # (batch, steps, channels)
    y = layer.forward(x, training=True)
    ratio = y / x  # exactly 0 or 2: a power of two
    assert np.all(ratio == ratio[:, :1, :])  # the same for every step
    assert set(np.unique(ratio)) == {0.0, 2.0}
    assert abs((ratio[:, 0, :] == 0).mean() - 0.5) < 0.06
    dy = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dy), ratio)


def test_gaussian_noise_adds_noise_of_its_stddev_and_passes_the_gradient():
    convforge.seed(5)
    layer = layers.GaussianNoise(0.3)
    x = np.random.default_rng(0).standard_normal((200, 500))
    noise = layer.forward(x, training=True) - x
    assert abs(noise.mean()) < 0.003 and abs(noise.std() - 0.3) < 0.003
    dy = np.random.default_rng(1).standard_normal(x.shape)
    assert layer.backward(dy) is dy


def test_gaussian_dropout_multiplies_by_unit_mean_noise_and_so_does_its_gradient():
    convforge.seed(6)
    layer = layers.GaussianDropout(0.2)
    x = np.random.default_rng(0).uniform(1.0, 2.0, (200, 500))
    factor = layer.forward(x, training=True) / x
    assert abs(factor.mean() - 1.0) < 0.003 and abs(factor.std() - np.sqrt(0.2 / 0.8)) < 0.003
    dy = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), dy * factor, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: layers.SpatialDropout2D(0.5), lambda: layers.GaussianNoise(0.5),
                                  lambda: layers.GaussianDropout(0.5)])
def test_float64_gradcheck_with_the_draws_held_fixed(make):
    # convforge.seed before every forward gives the same draws: f(x) = sum(g * y(x)) is then a
    # function of x alone, and its central differences must equal backward(g).
    layer = make()
    convforge.Sequential([layers.Input((3, 4, 2)), layer])
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 4))
    g = np.random.default_rng(1).standard_normal(x.shape)

    def f(v):
        convforge.seed(7)
        return float(np.sum(g * layer.forward(v, training=True)))

    f(x)
    dx = layer.backward(g).copy()
    eps = 1e-6
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        assert (f(up) - f(down)) / (2 * eps) == pytest.approx(dx[index], rel=1e-6, abs=1e-8), index


@pytest.mark.parametrize("make", [lambda: layers.SpatialDropout2D(0.5), lambda: layers.GaussianNoise(0.5),
                                  lambda: layers.GaussianDropout(0.5), lambda: layers.SpatialDropout1D(0.5)])
def test_identity_at_inference_and_after_training(make):
    convforge.seed(8)
    shape = (7, 3) if isinstance(make(), layers.SpatialDropout1D) else (5, 4, 3)
    conv = layers.Conv1D(3, 1) if len(shape) == 2 else layers.Conv2D(3, 1)
    noisy = convforge.Sequential([layers.Input(shape), conv, make(), layers.Flatten(), layers.Dense(2)])
    noisy.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
    noisy.fit(x, np.zeros((16, 2), np.float32), epochs=1, verbose=0)
    plain = convforge.Sequential([layers.Input(shape), type(conv)(3, 1), layers.Flatten(), layers.Dense(2)])
    plain.set_weights(noisy.get_weights())
    np.testing.assert_array_equal(noisy.predict(x, verbose=0), plain.predict(x, verbose=0))
    np.testing.assert_array_equal(noisy(x, training=False), plain.predict(x, verbose=0))
    assert not np.array_equal(noisy(x, training=True), plain.predict(x, verbose=0))


def test_predict_during_training_keeps_the_draws_for_the_backward():
    convforge.seed(9)
    for layer in (layers.GaussianDropout(0.3), layers.SpatialDropout2D(0.3)):
        convforge.Sequential([layers.Input((3, 3, 2)), layer])
        x = np.random.default_rng(0).uniform(1, 2, (2, 2, 3, 3))
        y = layer.forward(x, training=True)
        layer.forward(x, training=False)  # a callback's predict between forward and backward
        np.testing.assert_allclose(layer.backward(np.ones_like(x)), y / x, rtol=1e-12)


def test_the_same_seed_gives_the_same_draws():
    draws = []
    for _ in range(2):
        convforge.seed(11)
        for layer in (layers.SpatialDropout2D(0.5), layers.GaussianNoise(0.5), layers.GaussianDropout(0.5)):
            convforge.Sequential([layers.Input((3, 3, 2)), layer])
            draws.append(layer.forward(np.ones((4, 2, 3, 3)), training=True))
    for a, b in zip(draws[:3], draws[3:]):
        np.testing.assert_array_equal(a, b)


def test_rate_zero_is_the_identity_in_training():
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    for layer in (layers.SpatialDropout2D(0.0), layers.GaussianNoise(0.0), layers.GaussianDropout(0.0)):
        assert layer.forward(x, training=True) is x
        assert layer.backward(x) is x


@pytest.mark.parametrize("make,match", [
    (lambda: layers.SpatialDropout2D(1.0), r"SpatialDropout2D rate must be a number in \[0, 1\); got 1.0"),
    (lambda: layers.SpatialDropout1D(-0.1), r"SpatialDropout1D rate must be"),
    (lambda: layers.GaussianNoise(1.5), r"GaussianNoise stddev must be a number in \[0, 1\]; got 1.5"),
    (lambda: layers.GaussianNoise(float("nan")), r"GaussianNoise stddev must be"),
    (lambda: layers.GaussianNoise(True), r"GaussianNoise stddev must be"),
    (lambda: layers.GaussianDropout(1.0), r"GaussianDropout rate must be a number in \[0, 1\)"),
    (lambda: layers.GaussianDropout("0.5"), r"GaussianDropout rate must be"),
    (lambda: layers.SpatialDropout2D(0.5, data_format="nhwc"), r"data_format must be"),
])
def test_bad_arguments_are_value_errors_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_seed_is_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"'seed' of GaussianNoise.*convforge.seed"):
        layers.GaussianNoise(0.1, seed=3)


def test_wrong_input_ranks_name_the_shapes():
    # (A (batch, height, width) input is a one-channel image to an image layer, as for Conv2D.)
    with pytest.raises(ValueError, match=r"SpatialDropout2D expects input of shape \(batch, height, width, channels\); "
                                         r"got \(batch, 12\)"):
        convforge.Sequential([layers.Input((12,)), layers.SpatialDropout2D(0.5)])
    with pytest.raises(ValueError, match=r"SpatialDropout1D expects input of shape \(batch, steps, channels\); "
                                         r"got \(batch, 4, 4, 2\)"):
        convforge.Sequential([layers.Input((4, 4, 2)), layers.Conv2D(2, 1), layers.SpatialDropout1D(0.5)])


def test_backward_before_forward_and_wrong_dy_are_errors():
    layer = layers.GaussianDropout(0.5)
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)), training=True)
    with pytest.raises(ValueError, match=r"dy has shape \(3, 3\), its output \(2, 3\)"):
        layer.backward(np.ones((3, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        layers.GaussianNoise(0.2).forward(np.ones((2, 3), np.int64), training=True)


def test_save_and_load_keep_the_layers(tmp_path):
    convforge.seed(12)
    model = convforge.Sequential([layers.Input((5, 5, 2)), layers.Conv2D(3, 3), layers.SpatialDropout2D(0.25),
                                  layers.GaussianNoise(0.1), layers.GaussianDropout(0.2), layers.Flatten(),
                                  layers.Dense(2)])
    path = tmp_path / "m.npz"
    model.save(path)
    back = convforge.load_model(path)
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in model.layers]
    assert back.layers[1].rate == 0.25 and back.layers[2].stddev == 0.1 and back.layers[3].rate == 0.2
    x = np.random.default_rng(0).standard_normal((3, 5, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_export_leaves_them_out(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    convforge.seed(13)
    model = convforge.Sequential([layers.Input((5, 5, 2)), layers.Conv2D(3, 3), layers.SpatialDropout2D(0.25),
                                  layers.GaussianNoise(0.1), layers.GaussianDropout(0.2), layers.Flatten(),
                                  layers.Dense(2)])
    path = tmp_path / "m.onnx"
    model.export(path)
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert not {"Dropout", "RandomNormal", "RandomNormalLike"} & set(ops)
    x = np.random.default_rng(0).standard_normal((3, 5, 5, 2)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,args", [("SpatialDropout1D", (0.3,)), ("SpatialDropout2D", (0.3,)),
                                       ("GaussianNoise", (0.2,)), ("GaussianDropout", (0.4,))])
def test_config_keys_and_defaults_match_keras(name, args):
    # Keras's config, less `seed` (convforge seeds every layer with convforge.seed) and dtype.
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    ours = getattr(layers, name)(*args)
    theirs = getattr(keras.layers, name)(*args)
    keras_config = {k: v for k, v in theirs.get_config().items() if k not in ("seed", "dtype", "name", "trainable")}
    our_config = {k: v for k, v in ours.get_config().items() if k not in ("name", "trainable")}
    if our_config.get("data_format", "") is None:  # the model's layout decides; Keras's default
        our_config["data_format"] = "channels_last"
    assert our_config == keras_config
    model = convforge.Sequential([layers.Input((4, 3) if name.endswith("1D") else (4, 4, 3)), ours])
    assert re.sub(r"_\d+$", "", model.layers[0].name) == re.sub(r"_\d+$", "", theirs.name)  # Keras's default name


def test_a_nested_model_called_with_training_false_keeps_them_off_in_fit():
    # Keras's fine-tuning recipe: base(x, training=False) runs base's noise layers as at
    # inference in fit too (as it does Dropout and the augmentation layers).
    convforge.seed(14)
    base = convforge.Sequential([layers.Input((4, 4, 2)), layers.GaussianNoise(1.0), layers.GaussianDropout(0.5),
                                 layers.SpatialDropout2D(0.5)])
    inputs = convforge.Input((4, 4, 2))
    model = convforge.Model(inputs, base(inputs, training=False))
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(model(x, training=True), x)
    free = convforge.Model(inputs, base(inputs))
    assert not np.array_equal(free(x, training=True), x)
