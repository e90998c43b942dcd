"""The Keras-breadth layers: float64 gradient checks in small models, training-only augmentation,
argument errors, and saving/loading of their configs."""

import re

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients


def check(model_layers, shape, classes=3, seed=0, **kwargs):
    convforge.seed(seed)
    model = convforge.Sequential(model_layers, dtype="float64")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, *shape))
    y = rng.integers(0, classes, 3)
    report = check_model_gradients(model, x, y, num_coords=8, **kwargs)
    assert report.passed, str(report)
    return model


@pytest.mark.parametrize(
    "middle",
    [
        lambda: [layers.Conv1D(4, 3, activation="tanh", input_shape=(12, 2)), layers.MaxPooling1D(2)],
        lambda: [layers.Conv1D(4, 3, padding="causal", dilation_rate=2, input_shape=(12, 2)),
                 layers.AveragePooling1D(3, strides=2, padding="same")],
        lambda: [layers.Conv1D(4, 5, strides=2, padding="same", activation="elu", input_shape=(12, 2)),
                 layers.GlobalAveragePooling1D()],
        # Dense on each step, after a layer (dx needed) and as the first layer (no dx).
        lambda: [layers.Conv1D(4, 3, input_shape=(12, 2)), layers.Dense(5, activation="tanh")],
        lambda: [layers.Dense(3, activation="softmax", input_shape=(12, 2)), layers.Dense(4, use_bias=False)],
        lambda: [layers.Conv1D(4, 3, activation="tanh", input_shape=(12, 2)), layers.GlobalMaxPooling1D()],
        lambda: [layers.Conv1D(4, 3, input_shape=(12, 2)), layers.GlobalMaxPooling1D(keepdims=True)],
        # The steps' reshaping layers: after a layer (dx needed, exact: zero-padded, cropped or
        # summed copies of dy) and first (no dx).
        lambda: [layers.Conv1D(4, 3, activation="tanh", input_shape=(12, 2)), layers.ZeroPadding1D((2, 1)),
                 layers.Conv1D(3, 3)],
        lambda: [layers.Conv1D(4, 3, activation="tanh", input_shape=(12, 2)), layers.Cropping1D((3, 1)),
                 layers.Conv1D(3, 2)],
        lambda: [layers.Conv1D(4, 3, activation="tanh", input_shape=(12, 2)), layers.UpSampling1D(3),
                 layers.Conv1D(3, 4, strides=2)],
        lambda: [layers.ZeroPadding1D(1, input_shape=(12, 2)), layers.Cropping1D(2), layers.UpSampling1D(),
                 layers.Conv1D(3, 3)],
        # DepthwiseConv1D, SeparableConv1D, Conv1DTranspose as the first layer (no dx) and after one.
        lambda: [layers.DepthwiseConv1D(3, depth_multiplier=2, activation="tanh", input_shape=(12, 2)),
                 layers.DepthwiseConv1D(3, strides=2, padding="same", dilation_rate=1)],
        lambda: [layers.Conv1D(3, 2, input_shape=(12, 2)),
                 layers.DepthwiseConv1D(3, padding="causal", dilation_rate=2, use_bias=False)],
        lambda: [layers.SeparableConv1D(4, 3, strides=2, padding="same", depth_multiplier=2, input_shape=(12, 2)),
                 layers.SeparableConv1D(3, 2, dilation_rate=2, activation="elu")],
        lambda: [layers.Conv1DTranspose(3, 3, strides=2, padding="same", output_padding=1, activation="tanh",
                                        input_shape=(12, 2)),
                 layers.Conv1DTranspose(2, 2, strides=3)],  # 'valid', stride > kernel
        lambda: [layers.Conv1D(3, 3, input_shape=(12, 2)), layers.Conv1DTranspose(2, 4, strides=2, use_bias=False)],
    ],
)
def test_sequence_layers_gradients(middle):
    check([*middle(), layers.Flatten(), layers.Dense(3, activation="softmax")], (12, 2))


CHANNELS_FIRST = {"data_format": "channels_first"}


@pytest.mark.parametrize(
    "middle",
    [
        lambda: [layers.Conv1D(4, 3, activation="tanh", **CHANNELS_FIRST), layers.MaxPooling1D(2, **CHANNELS_FIRST)],
        lambda: [layers.Conv1D(4, 3, padding="causal", dilation_rate=2, **CHANNELS_FIRST),
                 layers.AveragePooling1D(3, strides=2, padding="same", **CHANNELS_FIRST)],
        lambda: [layers.Conv1D(4, 5, strides=2, padding="same", **CHANNELS_FIRST),
                 layers.GlobalAveragePooling1D(keepdims=True, **CHANNELS_FIRST)],
        lambda: [layers.Conv1D(4, 3, activation="elu", **CHANNELS_FIRST), layers.GlobalMaxPooling1D(**CHANNELS_FIRST)],
        # BatchNormalization(axis=1) of (batch, channels, steps): batch statistics, and the fused ReLU.
        lambda: [layers.Conv1D(4, 3, **CHANNELS_FIRST), layers.BatchNormalization(axis=1), layers.ReLU()],
        lambda: [layers.BatchNormalization(axis=-2, center=False), layers.Conv1D(3, 2, **CHANNELS_FIRST)],
        # Zero steps given as PyTorch's Conv1d(padding=p) or (left, right), not in Keras.
        lambda: [layers.Conv1D(4, 3, strides=2, padding=1, **CHANNELS_FIRST), layers.Conv1D(3, 2, padding=(2, 1),
                                                                                        **CHANNELS_FIRST)],
        lambda: [layers.Conv1D(4, 3, activation="tanh", **CHANNELS_FIRST),
                 layers.ZeroPadding1D((0, 2), **CHANNELS_FIRST), layers.Cropping1D((1, 3), **CHANNELS_FIRST), layers.UpSampling1D(2, **CHANNELS_FIRST),
                 layers.Conv1D(3, 3, **CHANNELS_FIRST)],
        lambda: [layers.UpSampling1D(3, **CHANNELS_FIRST), layers.Conv1D(3, 3, strides=2, **CHANNELS_FIRST)],
        lambda: [layers.DepthwiseConv1D(3, depth_multiplier=2, activation="tanh", **CHANNELS_FIRST),
                 layers.DepthwiseConv1D(2, strides=2, padding=(1, 0), **CHANNELS_FIRST)],
        lambda: [layers.SeparableConv1D(4, 3, padding="same", depth_multiplier=2, activation="tanh", **CHANNELS_FIRST),
                 layers.SeparableConv1D(3, 3, strides=2, use_bias=False, **CHANNELS_FIRST)],
        lambda: [layers.Conv1DTranspose(3, 3, strides=2, activation="tanh", **CHANNELS_FIRST),
                 layers.Conv1DTranspose(2, 4, strides=3, padding="same", output_padding=2, **CHANNELS_FIRST)],
    ],
)
def test_channels_first_sequence_layers_gradients(middle):
    """(batch, channels, steps) sequences, Keras's data_format='channels_first' (PyTorch's Conv1d
    layout): float64 gradients through the layers and the Flatten after them."""
    check([layers.Input((2, 12)), *middle(), layers.Flatten(), layers.Dense(3, activation="softmax")], (2, 12))


def test_channels_first_sequence_layers_in_a_functional_model():
    """The functional API refuses channels-first image layers (its images are channels-last);
    a 1-D layer's data_format is its own sequences' layout, taken there too. The same graph
    channels-last, with the same weights, gives the same outputs."""
    def graph(fmt, shape):
        inp = layers.Input(shape)
        a = layers.Conv1D(4, 3, padding="same", data_format=fmt)(inp)
        b = layers.Conv1D(4, 1, data_format=fmt)(inp)
        y = layers.GlobalMaxPooling1D(data_format=fmt)(layers.Add()([a, b]))
        return convforge.Model(inp, layers.Dense(2)(y)), a
    first, a = graph("channels_first", (3, 10))
    last, _ = graph("channels_last", (10, 3))
    assert first.output_shape == (None, 2) and a.shape == (None, 4, 10)
    last.set_weights(first.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 3, 10)).astype(np.float32)
    np.testing.assert_allclose(first.predict(x, verbose=0), last.predict(x.transpose(0, 2, 1).copy(), verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_channels_first_sequence_layers_equal_the_channels_last_ones():
    """The same weights give the same outputs, transposed, in either layout."""
    def stack(fmt):
        return [layers.Conv1D(5, 3, padding="causal", activation="relu", data_format=fmt),
                layers.MaxPooling1D(2, padding="same", data_format=fmt),
                layers.DepthwiseConv1D(2, padding="same", depth_multiplier=2, data_format=fmt),
                layers.SeparableConv1D(4, 2, data_format=fmt),
                layers.Conv1DTranspose(3, 3, strides=2, output_padding=1, data_format=fmt),
                layers.Conv1D(3, 2, strides=2, data_format=fmt), layers.AveragePooling1D(2, data_format=fmt)]
    last = convforge.Sequential([layers.Input((11, 4)), *stack("channels_last")])
    first = convforge.Sequential([layers.Input((4, 11)), *stack("channels_first")])
    first.set_weights(last.get_weights())
    x = np.random.default_rng(3).standard_normal((2, 11, 4)).astype(np.float32)
    out = first.predict(x.transpose(0, 2, 1).copy(), verbose=0)
    np.testing.assert_array_equal(out, last.predict(x, verbose=0).transpose(0, 2, 1))
    pooled = layers.GlobalMaxPooling1D(data_format="channels_first")
    assert convforge.Sequential([layers.Input((4, 11)), pooled]).output_shape == (None, 4)
    np.testing.assert_array_equal(pooled.forward(x.transpose(0, 2, 1)), x.max(axis=1))


@pytest.mark.parametrize("make,forward,backward", [
    # The gradients by hand: the padded steps dropped, zeros at the cropped steps, the copies summed.
    (lambda fmt: layers.ZeroPadding1D((2, 1), data_format=fmt), lambda x: np.pad(x, ((0, 0), (2, 1), (0, 0))),
     lambda dy: dy[:, 2:-1]),
    (lambda fmt: layers.Cropping1D((3, 1), data_format=fmt), lambda x: x[:, 3:-1],
     lambda dy: np.pad(dy, ((0, 0), (3, 1), (0, 0)))),
    (lambda fmt: layers.UpSampling1D(3, data_format=fmt), lambda x: np.repeat(x, 3, axis=1),
     lambda dy: dy.reshape(dy.shape[0], -1, 3, dy.shape[2]).sum(axis=2)),
])
def test_steps_layers_move_the_steps_in_either_layout(make, forward, backward):
    """ZeroPadding1D, Cropping1D and UpSampling1D move the steps only, whichever axis holds them,
    in values and in gradients (the channels-last ones equal Keras's: test_keras_reference)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 11, 4))
    expected = forward(x)
    dy = rng.standard_normal(expected.shape)
    for fmt, to in (("channels_last", lambda a: a), ("channels_first", lambda a: a.transpose(0, 2, 1))):
        layer = make(fmt)
        model = convforge.Sequential([layers.Input(to(x).shape[1:]), layer], dtype="float64")
        assert model.output_shape == (None, *to(expected).shape[1:])
        layer.input_grad_needed = True  # as after another layer
        np.testing.assert_array_equal(layer.forward(to(x), training=True), to(expected))
        np.testing.assert_array_equal(layer.backward(to(dy)), to(backward(dy)))


@pytest.mark.parametrize("make,config", [
    (lambda: layers.ZeroPadding1D(), {"padding": [1, 1], "data_format": "channels_last"}),
    (lambda: layers.ZeroPadding1D((0, 3), data_format="channels_first"),
     {"padding": [0, 3], "data_format": "channels_first"}),
    # Keras's Cropping1D and UpSampling1D have no data_format: a channels-last config is Keras's.
    (lambda: layers.Cropping1D(), {"cropping": [1, 1]}),
    (lambda: layers.Cropping1D(np.int64(2), data_format="channels_first"),
     {"cropping": [2, 2], "data_format": "channels_first"}),
    (lambda: layers.UpSampling1D(), {"size": 2}),
    (lambda: layers.UpSampling1D(4, data_format="channels_first"), {"size": 4, "data_format": "channels_first"}),
])
def test_steps_layers_save_and_load(tmp_path, make, config):
    layer = make()
    got = layer.get_config()
    assert {k: v for k, v in got.items() if k not in ("name", "trainable")} == config
    first = layer.data_format == "channels_first"
    model = convforge.Sequential([layers.Input((3, 9) if first else (9, 3)), layer,
                                  layers.Conv1D(2, 2, data_format=layer.data_format)])
    model.save(tmp_path / "m.npz")
    loaded = convforge.load_model(tmp_path / "m.npz")
    assert type(loaded.layers[0]) is type(layer) and loaded.layers[0].get_config() == layer.get_config()
    x = np.random.default_rng(5).standard_normal((2, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: layers.Conv2DTranspose(3, 3, activation="swish"),
        lambda: layers.Conv2DTranspose(2, (2, 3), strides=2, padding="same"),
        lambda: layers.Conv2DTranspose(2, (1, 2), strides=(2, 3)),  # 'valid', stride > kernel
        lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1),
        lambda: layers.Conv2DTranspose(2, (2, 3), strides=(2, 3), output_padding=(1, 2)),
        lambda: layers.UpSampling2D((2, 1)),
        lambda: layers.UpSampling2D((2, 3), interpolation="bilinear"),
        lambda: layers.Permute((2, 3, 1)),
        lambda: layers.Rescaling(0.5, offset=1.0),
        lambda: layers.RandomFlip(),
        lambda: layers.RandomRotation(0.2),
        lambda: layers.RandomZoom(0.3, fill_mode="constant", fill_value=0.5),
        lambda: layers.RandomTranslation(0.2, 0.3, fill_mode="wrap"),
        lambda: layers.LeakyReLU(),
        lambda: layers.ReLU(max_value=0.3, negative_slope=0.1, threshold=0.05),
        lambda: layers.Activation("relu6"),
        lambda: layers.Activation("gelu"),
        lambda: layers.Activation("softplus"),
        lambda: layers.Activation("log_softmax"),  # over the channels
        lambda: layers.Activation("selu"),
        lambda: layers.Activation("hard_sigmoid"),
        lambda: layers.Activation("hard_silu"),
        lambda: layers.Activation("mish"),
        lambda: layers.Activation("softsign"),
        lambda: layers.Activation("exponential"),
        lambda: layers.Activation("celu"),
        lambda: layers.Activation("hard_tanh"),
        lambda: layers.Activation("hard_shrink"),
        lambda: layers.Activation("soft_shrink"),
        lambda: layers.Activation("tanh_shrink"),
        lambda: layers.Activation("log_sigmoid"),
        lambda: layers.Activation("squareplus"),
        lambda: layers.Activation("sparse_plus"),
        lambda: layers.Activation("sparse_sigmoid"),
        lambda: layers.UnitNormalization(),
        lambda: layers.UnitNormalization(axis=[1, 2, 3]),
        lambda: layers.UnitNormalization(axis=[1, 2]),
    ],
)
def test_image_layers_gradients_after_a_conv(make):
    """The layer sits after a Conv2D, so its backward (dL/dx) is what the conv's weights see."""
    check([layers.Conv2D(3, 2, input_shape=(6, 5, 2)), make(), layers.Flatten(), layers.Dense(3, activation="softmax")],
          (6, 5, 2))


def test_gelu_approximate_and_leaky_relu_gradients():
    check([layers.Dense(5, activation=layers.GELU(approximate=True), input_shape=(4,)), layers.LeakyReLU(0.05),
           layers.Dense(3, activation="softmax")], (4,))


def test_hard_activations_gradients_at_their_kinks_are_pytorchs():
    # Found by the second reviewer: hard_silu's gradient at -3 and 3 was (2x + 3) / 6, -0.5 and
    # 1.5, where Keras on torch (PyTorch's hardswish) gives 0 and 1; hard_sigmoid's is 0 at both.
    torch = pytest.importorskip("torch")
    x = np.array([[-4.0, -3.0, -2.0, 0.0, 2.0, 3.0, 4.0]])
    for name, fn in (("hard_silu", torch.nn.functional.hardswish), ("hard_sigmoid", torch.nn.functional.hardsigmoid)):
        layer = layers.Activation(name)
        convforge.Sequential([layers.Input((7,)), layer], dtype="float64")
        layer.forward(x.copy(), training=True)
        t = torch.tensor(x, requires_grad=True)
        fn(t).sum().backward()
        np.testing.assert_allclose(layer.backward(np.ones_like(x)), t.grad.numpy(), rtol=1e-7, err_msg=name)


def test_log_softmax_values_and_gradients():
    # Keras's activation 'log_softmax': log(softmax(x)), finite for large logits.
    check([layers.Dense(5, activation="log_softmax", input_shape=(4,)), layers.Dense(3, activation="softmax")], (4,))
    x = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    got = convforge.activations.log_softmax(x)
    want = np.array([[0.0, -1000.0, -2000.0], np.array([1.0, 2.0, 3.0]) - np.log(np.exp([1.0, 2.0, 3.0]).sum())])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    layer = layers.Activation("log_softmax")
    model = convforge.Sequential([layers.Input((3,)), layer], dtype="float64")
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_gelu_layer_against_math_erfc(dtype):
    # The layer runs F.gelu / F.gelu_backward: float32 evaluated in double (within 0.51 ulp);
    # float64 keeps the bits of 0.5 * x * (1 + erf(x / sqrt(2))) with math.erf.
    import math

    erf = np.vectorize(math.erf, otypes=[np.float64])
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(20000) * 4, rng.standard_normal(199) * 1e-30,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e38, -1e38, 6.0, -6.0]]).astype(dtype).reshape(4, -1)
    layer = layers.GELU()
    dy = rng.standard_normal(x.shape).astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        got = layer.forward(x.copy(), training=True)
        dx = layer.backward(dy)
        x64 = x.astype(np.float64)
        want = 0.5 * x64 * erfc(-x64 / math.sqrt(2))
        cdf, slope = 0.5 * erfc(-x64 / math.sqrt(2)), x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
        want_dx = dy * (cdf + slope)
        if dtype == np.float64:
            np.testing.assert_array_equal(got, (0.5 * x * (1 + erf(x / math.sqrt(2)))))
    finite = np.isfinite(x)
    assert np.isnan(got[~finite]).sum() == 2 and got[x == np.inf] == np.inf  # NaN and -inf * 0
    if dtype == np.float32:
        ulp = np.spacing(np.abs(want[finite]).astype(np.float32)).astype(np.float64)
        assert (np.abs(got[finite] - want[finite]) / np.maximum(ulp, 2.0**-149)).max() <= 0.51
        scale = np.abs(dy[finite]) * (cdf[finite] + np.abs(slope[finite]))
        ulp = np.spacing(scale.astype(np.float32)).astype(np.float64)
        assert (np.abs(dx[finite] - want_dx[finite]) / np.maximum(ulp, 2.0**-149)).max() <= 0.51
    else:
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(dx[finite], want_dx[finite], rtol=1e-13, atol=1e-14)


def _keras_relu(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """Keras 3's activations.relu, step by step, in float64."""
    x = x.astype(np.float64)
    y = x * (x > threshold) if threshold else np.maximum(x, 0)
    if max_value is not None:
        y = np.clip(y, 0, max_value)
    return y - negative_slope * np.maximum(threshold - x, 0)


@pytest.mark.parametrize("kw", [dict(max_value=6.0), dict(negative_slope=0.1), dict(threshold=1.0),
                                dict(max_value=2.0, negative_slope=0.3, threshold=0.5)],
                         ids=["relu6", "leaky", "threshold", "all"])
def test_relu_arguments_follow_keras_and_are_never_fused_as_a_plain_relu(kw):
    """Keras's ReLU(max_value, negative_slope, threshold): Keras's values, and a Conv2D,
    BatchNormalization or compiled plan before it must not run it as max(x, 0) in its kernel."""
    x = np.linspace(-4, 9, 5 * 2 * 6 * 6).astype(np.float32).reshape(5, 6, 6, 2)
    relu = layers.ReLU(**kw)
    np.testing.assert_allclose(relu.forward(x.copy(), training=True), _keras_relu(x, **kw), rtol=1e-6, atol=1e-6)
    assert layers.ReLU.from_config(relu.get_config()).get_config() == relu.get_config()
    convforge.seed(0)
    conv = convforge.Sequential([layers.Conv2D(3, 3, input_shape=(6, 6, 2))])
    pre = conv.predict(x, verbose=0)
    for model in (
        convforge.Sequential([layers.Conv2D(3, 3, input_shape=(6, 6, 2), activation=layers.ReLU(**kw))]),
        convforge.Sequential([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), layers.ReLU(**kw)]),
    ):
        model.set_weights(conv.get_weights())
        expected = _keras_relu(pre, **kw)
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
        model.compile(optimizer=convforge.optimizers.SGD(0.0), loss="mse")  # the training forward
        assert model.train_on_batch(x, np.zeros_like(expected)) == pytest.approx(np.mean(expected**2), rel=1e-5)
    bn = convforge.Sequential([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), layers.BatchNormalization(),
                               layers.ReLU(**kw)])
    bn.compile(optimizer="sgd", loss="mse")
    bn.fit(x, np.zeros((5, 4, 4, 3), np.float32), epochs=1, verbose=0)  # a training forward (the BN -> ReLU fusion)
    unfused = convforge.Sequential([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), layers.BatchNormalization()])
    unfused.set_weights(bn.get_weights())
    np.testing.assert_allclose(bn.predict(x, verbose=0), _keras_relu(unfused.predict(x, verbose=0), **kw),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_softmax_over_any_axis_gradients(axis, data_format):
    shape = (6, 5, 2) if data_format == "channels_last" else (2, 6, 5)
    check([layers.Conv2D(3, 2, data_format=data_format, input_shape=shape), layers.Softmax(axis=axis),
           layers.Flatten(), layers.Dense(3, activation="softmax")], shape)


def test_softmax_axis_is_checked():
    with pytest.raises(TypeError, match=r"Softmax axis must be an int such as -1; got \(1, 2\)"):
        layers.Softmax(axis=(1, 2))
    for axis in (0, 3, -4):  # the batch axis, and beyond the rank of (batch, steps, channels)
        with pytest.raises(ValueError, match=rf"\(Softmax\): axis={axis} is out of range for inputs of rank 3"):
            convforge.Sequential([layers.Softmax(axis=axis, input_shape=(5, 4))])
    back = layers.Softmax.from_config(layers.Softmax(axis=2).get_config())
    assert back.axis == 2


def test_relu_arguments_are_checked_and_relu6_is_a_name():
    with pytest.raises(ValueError, match=r"ReLU max_value must be >= 0 \(Keras's rule\); got -1"):
        layers.ReLU(-1)
    with pytest.raises(ValueError, match="ReLU threshold must be >= 0"):
        layers.ReLU(threshold=-0.5)
    with pytest.raises(ValueError, match="ReLU negative_slope must be >= 0"):
        layers.ReLU(negative_slope=-0.1)
    with pytest.raises(TypeError, match="ReLU max_value must be a number; got '6'"):
        layers.ReLU("6")
    with pytest.raises(ValueError, match="ReLU max_value must be finite"):
        layers.ReLU(float("inf"))
    six = layers.Activation("relu6")
    np.testing.assert_array_equal(six.forward(np.array([[-1.0, 3.0, 7.0]], np.float32)), [[0.0, 3.0, 6.0]])
    assert layers.ReLU().plain and not layers.ReLU(6.0).plain


@pytest.mark.parametrize("alpha,error,message", [
    ("a", TypeError, "ELU alpha must be a number; got 'a'"),  # was float()'s "could not convert string to float"
    ("1", TypeError, "ELU alpha must be a number; got '1'"),  # was taken as 1.0
    (True, TypeError, "ELU alpha must be a number; got True"),
    (None, TypeError, "ELU alpha must be a number; got None"),
    (float("nan"), ValueError, "ELU alpha must be finite; got nan"),  # was accepted: every negative input gave nan
])
def test_elu_alpha_is_checked(alpha, error, message):
    with pytest.raises(error, match=re.escape(message)):
        layers.ELU(alpha)
    assert layers.ELU(np.float32(0.5)).get_config()["alpha"] == 0.5 and layers.ELU(2).alpha == 2.0


def test_augmentation_is_training_only_and_seeded():
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32)
    for layer in (layers.RandomFlip(seed=1), layers.RandomRotation(0.25, seed=1), layers.RandomZoom(0.2, seed=1),
                  layers.RandomTranslation(0.2, 0.2, seed=1)):
        model = convforge.Sequential([layer], dtype="float32")
        model.build((None, 8, 8, 3))
        np.testing.assert_array_equal(model.predict(x, verbose=0), x)  # identity in inference
        a = model(x, training=True)
        assert not np.allclose(a, x)
        b = convforge.Sequential([type(layer).from_config(layer.get_config())])
        b.build((None, 8, 8, 3))
        np.testing.assert_array_equal(b(x, training=True), a)  # same seed, same draws


def test_a_model_called_without_training_augments_as_keras():
    # Keras's augmentation layers default to training=True: a model called on arrays without
    # training (the tutorials' look at augmented images, `data_augmentation(images)`) augments,
    # the rest of the model in inference mode (Keras 3.15.1: aug(x) differs from x, two calls of a
    # model with a Dropout differ by their flips only). convforge returned the images unchanged.
    x = np.random.default_rng(0).random((16, 8, 8, 3)).astype(np.float32)
    aug = convforge.Sequential([layers.RandomFlip("horizontal", seed=3), layers.RandomRotation(0.1, seed=4)])
    a = aug(x)  # a first call, on an unbuilt model
    assert a.shape == x.shape and not np.allclose(a, x)
    twin = convforge.Sequential([layers.RandomFlip("horizontal", seed=3), layers.RandomRotation(0.1, seed=4)])
    np.testing.assert_array_equal(twin(x, training=True), a)  # the training draws, nothing kept for backward
    np.testing.assert_array_equal(aug(x, training=False), x)
    np.testing.assert_array_equal(aug.predict(x, verbose=0), x)
    flip = layers.RandomFlip("horizontal")
    inputs = convforge.Input((8, 8, 3))
    model = convforge.Model(inputs, layers.Conv2D(2, 1)(layers.Dropout(0.5)(flip(inputs))))
    outs = [model(x) for _ in range(6)]
    reference = model.predict(x, verbose=0)
    mirrored = model.predict(np.ascontiguousarray(x[:, :, ::-1]), verbose=0)
    for out in outs:  # each image as it is or flipped: the Dropout is off
        same = np.isclose(out, reference, atol=1e-6).all(axis=(1, 2, 3))
        flipped = np.isclose(out, mirrored, atol=1e-6).all(axis=(1, 2, 3))
        assert (same | flipped).all()
    assert not all(np.array_equal(outs[0], o) for o in outs[1:])
    np.testing.assert_array_equal(model(x, training=False), reference)
    plain = convforge.Sequential([convforge.Input((8, 8, 3)), layers.Dropout(0.5), layers.Conv2D(2, 1)])
    np.testing.assert_array_equal(plain(x), plain.predict(x, verbose=0))


def test_a_model_called_without_training_leaves_a_frozen_augmentation_alone():
    # Keras 3.15.1: Model(i, aug(i, training=False))(x) returns x on every call; convforge's
    # unset-training call augmented it anyway.
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32)
    aug = convforge.Sequential([convforge.Input((8, 8, 3)), layers.RandomFlip("horizontal")])
    inputs = convforge.Input((8, 8, 3))
    model = convforge.Model(inputs, aug(inputs, training=False))
    for _ in range(4):
        np.testing.assert_array_equal(model(x), x)
    assert any(not np.array_equal(aug(x), x) for _ in range(4))  # the block alone still augments


def test_rotation_by_a_quarter_turn_is_exact():
    layer = layers.RandomRotation((0.25, 0.25))  # always +90 degrees: counter-clockwise, as Keras
    model = convforge.Sequential([layer], dtype="float64")
    model.build((None, 5, 5, 1))
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    y = model(x, training=True)
    # About the center of a 5x5 image a quarter turn maps pixels onto pixels: no interpolation.
    # (This accepted either direction, and the layer turned clockwise.)
    np.testing.assert_allclose(y[0, :, :, 0], np.rot90(x[0, :, :, 0], 1), atol=1e-9)


@pytest.mark.parametrize("data_format,pooling", [("channels_last", "GlobalAveragePooling1D"),
                                                 ("channels_first", "GlobalMaxPooling1D")])
def test_sequence_model_trains_and_saves(tmp_path, data_format, pooling):
    rng = np.random.default_rng(0)
    # Class 1 sequences hold a pulse somewhere; a convolution finds it wherever it is.
    x = 0.3 * rng.standard_normal((160, 30, 1)).astype(np.float32)
    y = rng.integers(0, 2, 160)
    for i in np.flatnonzero(y):
        start = rng.integers(0, 25)
        x[i, start : start + 5, 0] += 1.5
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1).copy()
    fmt = {"data_format": data_format}
    convforge.seed(0)
    model = convforge.Sequential([
        layers.Conv1D(8, 5, activation="relu", input_shape=x.shape[1:], **fmt),
        layers.MaxPooling1D(2, **fmt),
        layers.Conv1D(8, 3, padding="same", activation="relu", **fmt),
        getattr(layers, pooling)(**fmt),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.8
    path = tmp_path / "seq.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    def configs(m):  # input_shape goes to the model's input on saving
        return [{k: v for k, v in layer.get_config().items() if k != "input_shape"} for layer in m.layers]
    assert configs(loaded) == configs(model) and loaded.layers[0].data_format == data_format
    np.testing.assert_array_equal(loaded.predict(x[:5], verbose=0), model.predict(x[:5], verbose=0))


@pytest.mark.parametrize("make,shape,message", [
    (lambda: layers.Conv1D(2, 5), (3, 1),
     r"layer 'conv1d' \(Conv1D\): kernel_size=5 does not fit in the input \(batch, 3, 1\) \(3 steps\)"),
    (lambda: layers.Conv1D(2, 3, dilation_rate=2), (4, 2),
     r"\(Conv1D\): kernel_size=3 with dilation_rate=2 \(5 steps\) does not fit in the input \(batch, 4, 2\)"),
    (lambda: layers.AveragePooling1D(5), (3, 1),
     r"\(AveragePooling1D\): pool_size=5 does not fit in the input \(batch, 3, 1\) \(3 steps\) with padding='valid'"),
    (lambda: layers.MaxPooling1D(4), (3, 2), r"\(MaxPooling1D\): pool_size=4 does not fit"),
    (lambda: layers.Conv1D(2, 3), (3, 3, 1), r"Conv1D expects input of shape \(batch, steps, channels\); got \(batch, 3, 3, 1\)"),
    (lambda: layers.GlobalAveragePooling1D(), (3, 4, 1), r"got \(batch, 3, 4, 1\)$"),
    (lambda: layers.GlobalMaxPooling1D(), (3, 4, 1), r"GlobalMaxPooling1D expects input of shape \(batch, steps, ch"),
    (lambda: layers.Conv1D(2, 5, data_format="channels_first"), (2, 3),
     r"kernel_size=5 does not fit in the input \(batch, 2, 3\) \(3 steps\)"),
    (lambda: layers.MaxPooling1D(2, data_format="channels_first"), (2, 3, 1),
     r"MaxPooling1D expects input of shape \(batch, channels, steps\); got"),
    (lambda: layers.Cropping1D((2, 1)), (3, 4),
     r"layer 'cropping1d' \(Cropping1D\): cropping \(2, 1\) leaves nothing of the input \(batch, 3, 4\) \(3 steps\)"),
    (lambda: layers.Cropping1D(2, data_format="channels_first"), (5, 4),
     r"cropping \(2, 2\) leaves nothing of the input \(batch, 5, 4\) \(4 steps\)"),
    (lambda: layers.ZeroPadding1D(), (3, 4, 1), r"ZeroPadding1D expects input of shape \(batch, steps, channels\)"),
    (lambda: layers.UpSampling1D(2**30), (3, 4), r"\(UpSampling1D\): 3221225472 steps out of the input \(batch, 3, 4\)"),
    (lambda: layers.ZeroPadding1D((2**31 - 1, 1)), (3, 4), r"\(ZeroPadding1D\): 2147483651 steps out of the input"),
    (lambda: layers.UpSampling1D(data_format="channels_first"), (3,),
     r"UpSampling1D expects input of shape \(batch, channels, steps\); got \(batch, 3\)"),
    (lambda: layers.DepthwiseConv1D(5), (3, 1),
     r"layer 'depthwise_conv1d' \(DepthwiseConv1D\): kernel_size=5 does not fit in the input \(batch, 3, 1\)"),
    (lambda: layers.SeparableConv1D(2, 3, dilation_rate=2, data_format="channels_first"), (2, 4),
     r"\(SeparableConv1D\): kernel_size=3 with dilation_rate=2 \(5 steps\) does not fit in the input \(batch, 2, 4\)"),
    (lambda: layers.Conv1DTranspose(2, 2, padding="same", output_padding=0), (1, 3),
     r"\(Conv1DTranspose\): kernel_size=2 with output_padding=0 gives an empty output from the input \(batch, 1, 3\)"),
    (lambda: layers.Conv1DTranspose(2, 3), (3, 3, 1),
     r"Conv1DTranspose expects input of shape \(batch, steps, channels\); got \(batch, 3, 3, 1\)"),
])
def test_sequence_layer_errors_speak_of_sequences(make, shape, message):
    """Found by a review: these named the inner 2-D layer and its (batch, 1, steps, channels) image,
    'layer 'conv1d' (Conv2D) on input (batch, 1, 3, 1): ... the kernel 1x5', or an image shape
    channels first ('batch', 1, 3, 3)."""
    with pytest.raises(ValueError, match=message):
        convforge.Sequential([layers.Input(shape), make()])


@pytest.mark.parametrize("make", [lambda: layers.DepthwiseConv2D(5), lambda: layers.SeparableConv2D(2, 5)])
def test_depthwise_errors_show_the_input_as_given(make):
    """Found by a review: these said "on input (3, 3)", the height and width alone."""
    with pytest.raises(ValueError, match=r"Conv2D\) on input \(batch, 3, 4, 2\): conv2d output would be"):
        convforge.Sequential([layers.Input((3, 4, 2)), make()])


def test_conv2d_transpose_takes_numpy_ints_as_the_other_layers():
    """Found by a review: Conv2DTranspose(np.int64(4), 3) said "filters must be a positive int; got
    np.int64(4)" (an isinstance(int) check), where Conv2D and Dense take NumPy ints."""
    layer = layers.Conv2DTranspose(np.int64(4), 3)
    model = convforge.Sequential([layers.Input((3, 3, 2)), layer])
    assert model.output_shape == (None, 5, 5, 4) and type(layer.get_config()["filters"]) is int
    with pytest.raises(ValueError, match="Conv2DTranspose filters must be a positive int; got np.True_"):
        layers.Conv2DTranspose(np.True_, 3)


def test_keras_defaults_of_unsupported_arguments_are_taken():
    # Keras code that spells out a default of a feature convforge lacks runs (the feature is off
    # either way); any other value is refused by name.
    conv = layers.Conv2D(8, 3, groups=1, kernel_constraint=None, bias_constraint=None, activity_regularizer=None)
    assert conv.filters == 8
    assert layers.Dropout(0.5, seed=None).rate == 0.5
    assert layers.Dense(2, dtype=None, lora_rank=None).units == 2
    for kwargs, name in (({"kernel_constraint": None, "bogus": 0}, "bogus"),
                         ({"kernel_constraint": "non_neg"}, "kernel_constraint")):
        with pytest.raises(TypeError, match=f"convforge does not support the argument '{name}' of Conv2D"):
            layers.Conv2D(8, 3, **kwargs)
    assert layers.Conv1D(4, 3, groups=1).filters == 4  # Conv1D has no groups: 1 is taken, others refused
    for groups in (2, True):
        with pytest.raises(TypeError, match="the argument 'groups' of Conv1D; Conv2D takes groups"):
            layers.Conv1D(4, 3, groups=groups)


def _tiny():
    model = convforge.Sequential([convforge.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: layers.Conv1D(4, 3, padding="full"), "padding must be 'valid', 'same' or 'causal'"),
        (lambda: layers.Conv1D(4, 3, groups=2), "convforge does not support the argument 'groups' of Conv1D"),
        (lambda: layers.Conv2DTranspose(4, 3, strides=2, output_padding=2),
         r"output_padding must be less than strides on every axis \(Keras's rule\); got output_padding=\(2, 2\)"),
        (lambda: layers.Conv2DTranspose(4, 3, output_padding=1), r"output_padding=\(1, 1\), strides=\(1, 1\)"),
        (lambda: layers.Conv2DTranspose(4, 3, strides=2, output_padding=-1), "output_padding must be >= 0"),
        (lambda: layers.UpSampling2D(interpolation="bicubic"), "does not support UpSampling2D interpolation"),
        (lambda: layers.RandomRotation(0.1, interpolation="nearest"), "does not support RandomRotation interpolation"),
        (lambda: layers.RandomFlip("diagonal"), "RandomFlip mode must be"),
        # Augmentation factors: float() said "could not convert string to float: 'a'", nan was taken,
        # and a zoom of -2 (a scale of -1) mirrored the image; Keras's ranges, named.
        (lambda: layers.RandomRotation(("a", 1)), r"RandomRotation factor must be a finite number or a \(low, high\)"),
        (lambda: layers.RandomRotation(float("nan")), "RandomRotation factor must be a finite number"),
        (lambda: layers.RandomTranslation(0.1, (1, None)), "RandomTranslation width_factor must be a finite number"),
        (lambda: layers.RandomZoom((-2, 0.5)), r"RandomZoom height_factor must be in \(-1.0, 1.0\] \(Keras's range\)"),
        (lambda: layers.RandomZoom(0.1, (-1, 0)), r"RandomZoom width_factor must be in \(-1.0, 1.0\]"),
        (lambda: layers.RandomTranslation((-1.5, 0), 0), r"height_factor must be in \[-1.0, 1.0\]"),
        (lambda: layers.RandomZoom(0.1, fill_value="x"), "RandomZoom fill_value must be a number; got 'x'"),
        # approximate="none" (PyTorch's name of the exact GELU) was bool("none"), True: the tanh form.
        (lambda: layers.GELU(approximate="none"), r"GELU approximate must be True or False; got 'none'"),
        # keepdims="no" was bool("no"), True, as GlobalAveragePooling2D's is not.
        (lambda: layers.GlobalAveragePooling1D(keepdims="no"), "GlobalAveragePooling1D keepdims must be True or False"),
        (lambda: layers.GlobalMaxPooling1D(keepdims=1), "GlobalMaxPooling1D keepdims must be True or False"),
        (lambda: layers.Conv1D(4, 3, data_format="NCW"), "data_format must be 'channels_last', 'channels_first' or"),
        (lambda: layers.Conv1D(4, 3, padding=(1,)), r"or a \(left, right\) pair of ints >= 0; got \(1,\)"),
        (lambda: layers.Conv1D(4, 3, padding=-1), "Conv1D padding must be 'valid', 'same' or 'causal', or zero steps"),
        (lambda: layers.Conv1D(4, 3, padding=True), "Conv1D padding must be"),
        # Found by the second reviewer: these named the inner 2-D pooling ("MaxPooling2D padding ...").
        (lambda: layers.AveragePooling1D(2, padding=1), r"^AveragePooling1D padding must be 'valid' or 'same'; got 1$"),
        (lambda: layers.AveragePooling1D(2, padding="full"), r"^AveragePooling1D padding must be 'valid' or 'same'"),
        (lambda: layers.ZeroPadding1D(-1), "ZeroPadding1D padding must be an int >= 0; got -1"),
        (lambda: layers.ZeroPadding1D((1, 2, 3)), r"padding must be an int or a \(left, right\) pair of ints >= 0"),
        (lambda: layers.ZeroPadding1D(True), r"ZeroPadding1D padding must be an int; got True \(bool\)"),
        (lambda: layers.ZeroPadding1D((1, 1.5)), r"ZeroPadding1D padding must be an int; got 1.5 \(float\)"),
        (lambda: layers.ZeroPadding1D(data_format="NWC"), "data_format must be 'channels_last', 'channels_first'"),
        (lambda: layers.Cropping1D((0, -2)), "Cropping1D cropping must be an int >= 0; got -2"),
        (lambda: layers.Cropping1D("1"), r"Cropping1D cropping must be an int; got '1' \(str\)"),
        (lambda: layers.UpSampling1D(0), "UpSampling1D size must be an int >= 1; got 0"),
        (lambda: layers.UpSampling1D(2**31), "UpSampling1D size must be at most 2\\*\\*31 - 1; got 2147483648"),
        (lambda: layers.UpSampling1D(2.0), r"UpSampling1D size must be an int; got 2.0 \(float\)"),
        (lambda: layers.UpSampling1D((2,)), r"UpSampling1D size must be an int; got \(2,\)"),
        (lambda: layers.UpSampling1D(2, interpolation="linear"), "the argument 'interpolation' of UpSampling1D"),
        # The 1-D depthwise, separable and transposed convolutions speak of themselves, not of their
        # inner 2-D layers.
        (lambda: layers.DepthwiseConv1D(3, padding="full"), "DepthwiseConv1D padding must be 'valid', 'same' or"),
        (lambda: layers.DepthwiseConv1D(3, depth_multiplier=0), "DepthwiseConv1D depth_multiplier must be a positive"),
        (lambda: layers.SeparableConv1D(0, 3), "SeparableConv1D filters must be a positive int; got 0"),
        (lambda: layers.SeparableConv1D(2, (3, 3)), r"SeparableConv1D kernel_size must be a positive int \(or a 1-t"),
        (lambda: layers.Conv1DTranspose(2, 3, dilation_rate=2), "does not support Conv1DTranspose dilation_rate > 1"),
        (lambda: layers.Conv1DTranspose(2, 3, padding="causal"), "Conv1DTranspose padding must be 'valid' or 'same'"),
        (lambda: layers.Conv1DTranspose(2, 3, strides=2, output_padding=2),
         r"Conv1DTranspose output_padding must be less than strides \(Keras's rule\); got output_padding=2, strides=2"),
        (lambda: layers.Conv1DTranspose(2, 3, strides=2, output_padding=-1), "output_padding must be an int >= 0"),
        (lambda: layers.Conv1DTranspose(0, 3), "Conv1DTranspose filters must be a positive int; got 0"),
        (lambda: layers.Conv1DTranspose(2, 3, kernel_constraint="non_neg"),
         "does not support the argument 'kernel_constraint' of Conv1DTranspose; clip the weights"),
        (lambda: layers.Conv1DTranspose(2, 3, activity_regularizer="l2"), "'activity_regularizer' of Conv1DTranspose"),
        (lambda: layers.Permute((1, 3)), "Permute dims must be a permutation"),
        (lambda: layers.Dense(3, activity_regularizer="l2"), "activity_regularizer.*put the penalty in a custom Loss"),
        # Beyond the layers (found by the Keras review: these were Python's bare "unexpected keyword").
        (lambda: convforge.optimizers.SGD(foo="sgd"), r"argument 'foo' of SGD; its arguments are \['learning_rate'"),
        (lambda: convforge.losses.SparseCategoricalCrossentropy(ignore_class=0), "'ignore_class' of SparseCat"),
        (lambda: convforge.losses.MeanSquaredError(reduction=None), "the argument 'reduction' of MeanSquaredError"),
        (lambda: convforge.metrics.AUC(label_weights=[1.0, 2.0]), "the argument 'label_weights' of AUC; convforge's"),
        (lambda: convforge.metrics.AUC(multi_label=True), "the argument 'multi_label' of AUC"),
        (lambda: convforge.callbacks.ModelCheckpoint("m.npz", initial_value_threshold=0.5), "'initial_value_thr"),
        (lambda: _tiny().fit(np.ones((4, 3)), np.zeros(4), validation_freq=2), "'validation_freq' of Sequential.fit"),
        (lambda: _tiny().summary(show_layer_activations=True), "'show_layer_activations' of Sequential.summary"),
        (lambda: convforge.Input((3,)) + convforge.Input((3,)), r"arithmetic on symbolic tensors .*layers.Add\(\)"),
        # The Functional API guide's x[:, :2]: Python's bare "'KerasTensor' object is not subscriptable".
        (lambda: convforge.Input((4,))[:, :2], r"slicing a symbolic tensor .* is not supported by convforge: crop"),
        (lambda: list(convforge.Input((4,))), r"cannot be unpacked or iterated"),
    ],
)
def test_unsupported_arguments_say_so(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: layers.DepthwiseConv1D(3, depthwise_constraint="non_neg"),
         "DepthwiseConv1D: the Keras argument depthwise_constraint='non_neg' is not supported"),
        (lambda: layers.DepthwiseConv1D(3, bias_constraint="non_neg"), "DepthwiseConv1D: the Keras argument bias_con"),
        (lambda: layers.DepthwiseConv1D(3, activity_regularizer="l2"), "DepthwiseConv1D: the Keras argument activity_"),
        (lambda: layers.SeparableConv1D(2, 3, pointwise_constraint="non_neg"),
         "SeparableConv1D: the Keras argument pointwise_constraint='non_neg' is not supported"),
        (lambda: layers.SeparableConv1D(2, 3, depthwise_constraint="non_neg"), "SeparableConv1D: the Keras argument"),
    ],
)
def test_depthwise_1d_layers_refuse_constraints_as_the_2d_ones(make, message):
    """Keras's signature takes them; convforge refuses a value (NotImplementedError, as
    DepthwiseConv2D and SeparableConv2D), naming the 1-D layer rather than its inner 2-D one."""
    with pytest.raises(NotImplementedError, match=message):
        make()
    for kind in (layers.DepthwiseConv1D, layers.SeparableConv1D):  # None, Keras's default, is taken
        assert kind(*([2, 3] if kind is layers.SeparableConv1D else [3]), activity_regularizer=None,
                    depthwise_constraint=None, bias_constraint=None).kernel_size == 3


@pytest.mark.parametrize(
    "make",
    [
        # Keras's defaults spelled out (Keras code and configs do): they switch the feature off,
        # which is what convforge does, so they were refused for nothing.
        lambda: convforge.optimizers.Adam(amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None,
                                          use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                                          loss_scale_factor=None, gradient_accumulation_steps=None),
        lambda: convforge.losses.SparseCategoricalCrossentropy(reduction="sum_over_batch_size", ignore_class=None,
                                                               axis=-1),
        lambda: convforge.losses.MeanSquaredError(reduction="sum_over_batch_size", dtype=None),
        lambda: convforge.metrics.Precision(top_k=None, class_id=None),
        lambda: convforge.metrics.AUC(summation_method="interpolation", multi_label=False, num_labels=None,
                                      label_weights=None, thresholds=None),
    ],
)
def test_keras_default_values_of_unsupported_arguments_are_accepted(make):
    make()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: convforge.optimizers.Adam(use_ema=True), r"moving average of the weights \(only Keras's default "
                                                          "use_ema=False"),
        (lambda: convforge.optimizers.Adam(use_ema=0), "use_ema=False is accepted; got 0"),
        (lambda: convforge.losses.Huber(reduction="sum"), "reduction='sum_over_batch_size' is accepted; got 'sum'"),
        (lambda: convforge.losses.CategoricalCrossentropy(axis=True), "axis=-1 is accepted; got True"),
    ],
)
def test_other_values_of_unsupported_arguments_are_refused(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_keras_default_values_are_accepted_by_constructors_only():
    """The table of Keras's neutral defaults is the constructors'; a Model method given one of
    those names still refuses it rather than silently dropping it."""
    with pytest.raises(TypeError, match="'dtype' of Sequential.summary"):
        _tiny().summary(dtype=None)


@pytest.mark.parametrize(
    "make,shape,keras_shape",
    [
        (lambda: layers.Conv2D(6, (5, 3)), (8, 8, 2), (5, 3, 2, 6)),
        (lambda: layers.Conv1D(4, 3), (10, 2), (3, 2, 4)),
        (lambda: layers.Conv2DTranspose(4, 3), (5, 5, 2), (3, 3, 4, 2)),
        (lambda: layers.DepthwiseConv2D((3, 2), depth_multiplier=2), (6, 6, 3), (3, 2, 3, 2)),
        (lambda: layers.DepthwiseConv1D(3, depth_multiplier=2), (10, 4), (3, 4, 2)),
        (lambda: layers.Conv1DTranspose(5, 3, data_format="channels_first"), (4, 10), (3, 5, 4)),
    ],
)
def test_get_weights_uses_keras_layouts_and_set_weights_inverts_it(make, shape, keras_shape):
    layer = make()
    model = convforge.Sequential([layer])
    model.build((None, *shape))
    kernel, bias = layer.get_weights()
    assert kernel.shape == keras_shape
    stored = layer.kernel.copy()
    layer.set_weights([kernel * 2, bias])
    np.testing.assert_array_equal(layer.kernel, stored * 2)  # the same element, in the stored layout
    with pytest.raises(ValueError, match=r"has shape .* \(Keras layout\); set_weights got shape"):
        layer.set_weights([layer.kernel, bias])


@pytest.mark.parametrize("make", [
    lambda: layers.Conv2D(2, 3, use_bias="no"),
    lambda: layers.Dense(2, use_bias="no"),
    lambda: layers.DepthwiseConv2D(3, use_bias="no"),
    lambda: layers.Conv2DTranspose(2, 3, use_bias="no"),  # was accepted as bool("no") = True
    # The 1-D layers name themselves (Conv1D's message named its inner Conv2D).
    lambda: layers.Conv1D(2, 3, use_bias="no"),
    lambda: layers.DepthwiseConv1D(3, use_bias="no"),
    lambda: layers.SeparableConv1D(2, 3, use_bias="no"),
    lambda: layers.Conv1DTranspose(2, 3, use_bias="no"),
])
def test_use_bias_must_be_a_bool_for_every_layer_with_a_kernel(make):
    name = make.__code__.co_names[-1]  # the layer class the lambda calls
    with pytest.raises(TypeError, match=rf"^{name} use_bias must be True or False; got 'no'"):
        make()


def _ids(shape, vocabulary, seed=0):
    return np.random.default_rng(seed).integers(0, vocabulary, shape)


def test_embedding_gradients_in_a_text_model():
    """Embedding -> Conv1D -> GlobalMaxPooling1D -> Dense, Keras's text-classification shape: float64
    gradients of every weight (ids repeat across samples and steps: their rows' gradients add)."""
    convforge.seed(0)
    model = convforge.Sequential([layers.Input((9,)), layers.Embedding(6, 4), layers.Conv1D(3, 3, activation="tanh"),
                                  layers.GlobalMaxPooling1D(), layers.Dense(2, activation="softmax")],
                                 dtype="float64")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    report = check_model_gradients(model, _ids((3, 9), 6).astype(np.float64), np.array([0, 1, 1]), num_coords=12)
    assert report.passed, str(report)


def test_embedding_trains_saves_and_checks_its_ids(tmp_path):
    rng = np.random.default_rng(1)
    # Class 1 sequences hold token 7 somewhere.
    x = rng.integers(0, 7, (200, 12))
    y = rng.integers(0, 2, 200)
    x[np.flatnonzero(y), rng.integers(0, 12, int(y.sum()))] = 7
    convforge.seed(0)
    model = convforge.Sequential([layers.Input((12,)), layers.Embedding(8, 4), layers.Conv1D(4, 1, activation="relu"),
                                  layers.GlobalMaxPooling1D(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=30, batch_size=20, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.9
    model.save(tmp_path / "text.npz")
    back = convforge.load_model(tmp_path / "text.npz")
    np.testing.assert_array_equal(back.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0))
    assert back.layers[0].get_config()["input_dim"] == 8
    for bad, shown in ((2.5, "2.5"), (8, "8.0"), (-1, "-1.0")):
        ids = x[:2].astype(np.float64)
        ids[1, 3] = bad
        with pytest.raises(ValueError, match=rf"token ids must be whole numbers in \[0, 8\); got {shown} at index "
                                             r"\(1, 3\)"):
            model.predict(ids, verbose=0)


def test_embedding_initial_weights_and_refusals():
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    layer = layers.Embedding(4, 3, weights=[matrix], trainable=False)
    model = convforge.Sequential([layers.Input((2,)), layer])
    np.testing.assert_array_equal(model.predict(np.array([[3, 0]]), verbose=0)[0], matrix[[3, 0]])
    assert model.count_params() == 12 and not model.trainable_weights
    with pytest.raises(NotImplementedError, match="mask_zero=True: its layers take no masks"):
        layers.Embedding(4, 3, mask_zero=True)
    with pytest.raises(ValueError, match=r"weights must be one \(4, 3\) matrix of numbers; got float64 of shape \(3, 4\)"):
        layers.Embedding(4, 3, weights=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="Embedding input_dim must be a positive int; got 0"):
        layers.Embedding(0, 3)
    with pytest.raises(ValueError, match=r"Embedding expects token ids of shape \(batch, steps\); got \(batch, 2, 5\)"):
        convforge.Sequential([layers.Input((2, 5)), layers.Embedding(4, 3)])
def test_separable_conv1d_weights_use_keras_layouts():
    """depthwise_kernel (kernel_size, channels, multiplier) and pointwise_kernel (1, channels *
    multiplier, filters) at get_weights/set_weights, as Keras; each element lands where stored."""
    layer = layers.SeparableConv1D(5, 3, depth_multiplier=2)
    convforge.Sequential([layers.Input((10, 4)), layer])
    depthwise, pointwise, bias = layer.get_weights()
    assert (depthwise.shape, pointwise.shape, bias.shape) == ((3, 4, 2), (1, 8, 5), (5,))
    # Input channel c, multiplier m is stored output channel c * 2 + m; step t is the last axis.
    np.testing.assert_array_equal(depthwise[2, 3, 1], layer.params["depthwise_kernel"][7, 0, 0, 2])
    np.testing.assert_array_equal(pointwise[0, 6, 4], layer.params["pointwise_kernel"][4, 6, 0, 0])
    stored = {k: v.copy() for k, v in layer.params.items()}
    layer.set_weights([depthwise * 2, pointwise * 3, bias])
    np.testing.assert_array_equal(layer.params["depthwise_kernel"], stored["depthwise_kernel"] * 2)
    np.testing.assert_array_equal(layer.params["pointwise_kernel"], stored["pointwise_kernel"] * 3)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_separable_transposed_1d_save_and_load(tmp_path, data_format):
    """A model of the three saves and loads: the same configs (padding 'causal' and zero steps
    too) and the same predictions."""
    fmt = {"data_format": data_format}
    convforge.seed(0)
    model = convforge.Sequential([
        layers.Input((12, 3) if data_format == "channels_last" else (3, 12)),
        layers.DepthwiseConv1D(3, padding="causal", depth_multiplier=2, activation="relu",
                               depthwise_regularizer="l2", **fmt),
        layers.SeparableConv1D(4, 3, strides=2, padding=(1, 0), depth_multiplier=2, pointwise_initializer="he_normal",
                               **fmt),
        layers.Conv1DTranspose(2, 3, strides=2, padding="same", output_padding=1, use_bias=False, **fmt),
        layers.Flatten(),
        layers.Dense(2),
    ])
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).standard_normal((4, *model.input_shape[1:])).astype(np.float32)
    model.fit(x, np.zeros((4, 2)), epochs=1, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    assert loaded.layers[1].padding == (1, 0) and loaded.layers[0].get_config()["depthwise_regularizer"] is not None
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_bilinear_upsampling_reads_two_taps_an_axis():
    # Each output reads its two neighbours along each axis, as Keras's and PyTorch's: a NaN pixel
    # reaches 3 x 3 outputs at a corner (factor 2), not whole rows and columns as the dense
    # interpolation matrices of the first version did (0 * NaN; found by review); inf stays inf.
    model = convforge.Sequential([layers.Input((4, 4, 1)), layers.UpSampling2D(2, interpolation="bilinear")])
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 0, 0, 0] = np.nan
    y = model.predict(x, verbose=0)
    assert np.isnan(y).sum() == 9 and np.isnan(y[0, :3, :3]).all() and np.isnan(model(x)).sum() == 9
    x[0, 0, 0, 0] = np.inf
    y = model.predict(x, verbose=0)
    assert np.isinf(y).sum() == 9 and not np.isnan(y).any()
    layer = model.layers[0]
    layer.input_grad_needed = True
    layer.forward(np.zeros((1, 1, 4, 4), np.float32), training=True)
    dy = np.zeros((1, 1, 8, 8), np.float32)
    dy[0, 0, 7, 7] = np.nan
    assert np.isnan(layer.backward(dy)).sum() == 1  # the last output reads the last pixel alone (as torch)


def test_identity_layer_is_keras_s_and_passes_values_and_gradients(tmp_path):
    # Keras 3's layers.Identity (a shortcut that needs no projection, a placeholder head).
    check([layers.Dense(4, input_shape=(5,)), layers.Identity(), layers.Dense(3, activation="softmax")], (5,))
    x = convforge.Input((6, 6, 2))
    model = convforge.Model(x, layers.Add()([layers.Conv2D(2, 1)(x), layers.Identity()(x)]))
    data = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(data, verbose=0), model(data), rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(convforge.load_model(tmp_path / "m.npz").predict(data, verbose=0),
                                  model.predict(data, verbose=0))


class _NoInit(layers.Layer):  # a user's layer without an __init__ of its own
    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


class _KwargsUp(layers.Layer):  # a user's layer passing **kwargs up, Keras style
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def forward(self, x, training=False):
        return x * x.dtype.type(self.factor)

    def backward(self, dy):
        return dy * dy.dtype.type(self.factor)


@pytest.mark.parametrize("make", [lambda: layers.LayerNormalization(input_dim=4), lambda: layers.PReLU(input_dim=4),
                                  lambda: layers.Dense(3, input_dim=4), lambda: layers.Activation("relu", input_dim=4),
                                  lambda: layers.Identity(input_dim=4), lambda: layers.LeakyReLU(input_dim=4),
                                  lambda: _NoInit(input_dim=4), lambda: _KwargsUp(input_dim=4)])
def test_input_dim_is_input_shape_of_one_axis_on_every_layer(make):
    # Keras 3 takes input_dim=n on every layer (Keras 2 tutorials write it on their first layer);
    # convforge refused it but on Dense.
    model = convforge.Sequential([make(), layers.Dense(2)])
    assert model.input_shape == (None, 4)
    with pytest.raises(ValueError, match="give input_shape or input_dim, not both"):
        layers.PReLU(input_dim=4, input_shape=(4,))


@pytest.mark.parametrize("make", [lambda **k: layers.Dense(3, **k), lambda **k: layers.Identity(**k),
                                  lambda **k: _NoInit(**k), lambda **k: _KwargsUp(**k)])
def test_input_dim_and_unknown_arguments_are_named(make):
    # Identity and layers without an __init__ of their own (or passing **kwargs up) got Python's
    # bare "unexpected keyword argument"; a bad input_dim was reported as input_shape's.
    for bad in (0, 2.5, "4", (4,), True):
        with pytest.raises(ValueError, match=f"input_dim must be a positive int .*; got {re.escape(repr(bad))}"):
            make(input_dim=bad)
    with pytest.raises(TypeError, match="convforge does not support the argument 'foo' of .*'input_shape'"):
        make(foo=1)
    make(kernel_constraint=None)  # a Keras default of a feature convforge lacks is taken, not refused


def test_leaky_relu_takes_keras_2_alpha_and_the_common_arguments():
    assert layers.LeakyReLU(alpha=0.1).negative_slope == 0.1
    assert layers.LeakyReLU(0.2, input_dim=3).input_shape_arg == (3,)
    with pytest.raises(TypeError, match="convforge does not support the argument 'foo' of LeakyReLU"):
        layers.LeakyReLU(foo=1)


@pytest.mark.parametrize("make", [lambda f: layers.UpSampling2D(2, data_format=f),
                                  lambda f: layers.Conv2DTranspose(2, 1, data_format=f)])
def test_data_format_is_checked_and_case_folded_as_keras_does(make):
    # UpSampling2D and Conv2DTranspose kept data_format as given: 'Channels_Last' (Keras lowercases
    # it) made the Sequential read its images as channels-first, its output shape another one.
    model = convforge.Sequential([layers.Conv2D(2, 1, input_shape=(8, 8, 3)), make("Channels_Last")])
    out = model.predict(np.zeros((1, 8, 8, 3), np.float32), verbose=0)
    assert out.shape[1:] == model.output_shape[1:] and out.shape[1] == out.shape[2]
    for bad in ("bogus", 3):
        with pytest.raises(ValueError, match="data_format must be 'channels_last', 'channels_first' or None"):
            make(bad)


class _Keras3Scale(layers.Layer):
    """A layer of one's own written with Keras 3's add_weight: shape first, names left to it."""

    def build(self, input_shape):
        self.scale = self.add_weight((input_shape[-1],), initializer="ones")
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", dtype=None, constraint=None)
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def forward(self, x, training=False):
        if training:
            self._x = x
        return x * self.scale + self.shift

    def backward(self, dy):
        self.grads["variable"] = (dy * self._x).sum(axis=0)
        self.grads["variable_1"] = dy.sum(axis=0)
        return dy * self.scale


def test_add_weight_takes_keras_3_s_form():
    # Keras 3 writes add_weight(shape=..., initializer=...) or the shape first, and names unnamed
    # weights variable, variable_1 (Keras 3.15.1); convforge wanted the name first: "missing 1
    # required positional argument: 'name'".
    model = convforge.Sequential([convforge.Input((3,)), _Keras3Scale(), layers.Dense(2)], dtype="float64")
    layer = model.layers[0]
    assert list(layer.params) == ["variable", "variable_1", "seen"]
    assert layer.params["variable"] is layer.scale and layer.count_params() == 7
    assert [w.shape for w in layer.non_trainable_weights] == [()]
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    assert check_model_gradients(model, rng.standard_normal((4, 3)), rng.standard_normal((4, 2))).passed
    for make, message in ((lambda s: s.add_weight(initializer="ones"), "needs the weight's shape"),
                         (lambda s: s.add_weight(shape=(2,), constraint="non_neg"), "constraint='non_neg'"),
                         (lambda s: s.add_weight(shape=(2,), dtype="float64"), "the model's dtype \\(float32"),
                         (lambda s: s.add_weight(shape=(2,), foo=1), "unexpected argument 'foo'"),
                         (lambda s: s.add_weight((2,), name="a", trainable="no"), "trainable must be True or False"),
                         (lambda s: s.add_weight((2,), shape=(3,)), "shape both by position and by keyword")):
        class Bad(layers.Layer):
            def build(self, input_shape, make=make):
                make(self)

            def forward(self, x, training=False):
                return x

        with pytest.raises(TypeError, match=message):
            convforge.Sequential([convforge.Input((3,)), Bad()])


def test_a_kept_weight_follows_a_change_of_dtype(rng):
    # self.w = self.add_weight(...) kept the float32 array after gradcheck's float64 round trip:
    # the optimizer then trained params['variable'] while forward read self.w, and nothing learnt.
    model = convforge.Sequential([convforge.Input((3,)), _Keras3Scale(), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
    assert check_model_gradients(model, x[:4], y[:4]).passed
    layer = model.layers[0]
    assert layer.scale is layer.params["variable"] and layer.scale.dtype == np.float32
    before = layer.scale.copy()
    model.fit(x, y, epochs=2, verbose=0)
    assert not np.array_equal(before, layer.scale)


def test_a_layer_written_with_keras_s_call_is_told_what_convforge_needs():
    class KerasStyle(layers.Layer):
        def call(self, x):
            return x

    with pytest.raises(NotImplementedError, match="defines call\\(\\), Keras's method: .*forward\\(x, training=False\\) "
                                                  "and backward\\(dy\\)"):
        convforge.Sequential([convforge.Input((3,)), KerasStyle()])


def test_a_built_in_layer_whose_keras_call_is_overridden_is_refused_not_run_as_the_built_in():
    # The model ran Dense's forward and never the call: DoubleDense predicted Dense's outputs
    # (Keras: twice them).
    class DoubleDense(layers.Dense):
        def call(self, x):
            return super().call(x) * 2

    with pytest.raises(NotImplementedError, match="DoubleDense overrides call\\(\\), Keras's method, of Dense: "
                                                  "convforge runs Dense's forward and would ignore it"):
        DoubleDense(2)

    class WithForward(layers.Dense):  # call() beside a forward of its own: that forward runs
        def call(self, x):
            return x

        def forward(self, x, training=False):
            return 2 * super().forward(x, training)

    model = convforge.Sequential([convforge.Input((3,)), WithForward(2, kernel_initializer="ones")])
    np.testing.assert_allclose(model.predict(np.ones((1, 3), np.float32), verbose=0), [[6.0, 6.0]])

    class Mixin:  # after the built-in class: Dense's forward is found first, as Keras's call is
        def call(self, x):
            return x

    class Mixed(layers.Dense, Mixin):
        pass

    Mixed(2)


@pytest.mark.parametrize("name,keras_name", [("relu", "relu"), ("swish", "silu"), ("silu", "silu"),
                                             ("relu6", "relu6"), ("hard_swish", "hard_silu"), ("gelu", "gelu"),
                                             ("sigmoid", "sigmoid"), ("softmax", "softmax"),
                                             ("leaky_relu", "leaky_relu"), ("tanh", "tanh")])
def test_layer_activation_has_keras_s_function_name(name, keras_name):
    # keras.layers.Dense(3, activation=name).activation.__name__ in Keras 3.15.1; convforge's
    # activation objects had no __name__ (AttributeError in code printing a model's activations).
    assert layers.Dense(3, activation=name).activation.__name__ == keras_name
    assert layers.ReLU.__name__ == "ReLU"  # the class keeps its own


def test_build_called_by_hand_takes_keras_shapes():
    """``layer.build((None, 4))``, as the transfer-learning guide writes it: the whole shape, batch
    axis first, images channels-last (or as the layer's data_format says); the layer is then
    built as a model would build it. It was left unbuilt, and its next build failed with "already
    has a weight named 'kernel'"; Conv2D refused (None, 8, 8, 1) as a 4-D sample."""
    dense = layers.Dense(3)
    dense.build((None, 4))
    assert dense.built and [w.shape for w in dense.weights] == [(4, 3), (3,)]
    assert dense(np.ones((2, 4), np.float32)).shape == (2, 3)
    assert convforge.Sequential([convforge.Input((4,)), dense]).output_shape == (None, 3)
    norm = layers.BatchNormalization()
    norm.build((None, 5))
    assert norm.built and len(norm.weights) == 4 and len(norm.trainable_weights) == 2
    conv = layers.Conv2D(2, 3)
    conv.build((None, 8, 8, 1))
    assert conv.count_params() == 20 and conv(np.ones((1, 8, 8, 1), np.float32)).shape == (1, 6, 6, 2)
    conv.build((None, 8, 8, 1))  # again for the same shape: nothing to do, as Keras
    with pytest.raises(ValueError, match=re.escape("was built for input (batch, 8, 8, 1); build got (None, 9, 9, 1)")):
        conv.build((None, 9, 9, 1))
    first = layers.Conv2D(2, 3, data_format="channels_first")
    first.build((None, 1, 8, 8))
    assert first(np.ones((1, 1, 8, 8), np.float32)).shape == (1, 2, 6, 6)
    sequence = layers.Conv1D(4, 3)
    sequence.build((None, 10, 2))
    assert sequence.count_params() == 28 and sequence(np.ones((1, 10, 2), np.float32)).shape == (1, 8, 4)
    with pytest.raises(ValueError, match=re.escape("Dense.build: input_shape must be a tuple with the batch axis first")):
        layers.Dense(3).build((4,))


class _TwoDense(layers.Layer):
    """A layer of one's own holding two Dense layers (Keras's composed layers), built in its build."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1, self.d2 = layers.Dense(8, activation="relu"), layers.Dense(4)

    def build(self, input_shape):
        self.d1.build(input_shape)  # the per-sample shape this build got
        self.d2.build((8,))

    def forward(self, x, training=False):
        return self.d2.forward(self.d1.forward(x, training), training)

    def backward(self, dy):
        return self.d1.backward(self.d2.backward(dy))


class _Tied(layers.Layer):
    """Reads the kernel of a Dense layer of the model (tied weights): its own params are none."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def forward(self, x, training=False):
        return x @ self.dense.kernel.T

    def backward(self, dy):
        return dy @ self.dense.kernel


def test_layers_held_by_a_layer_of_ones_own_are_built_and_never_silently_left_untrained(tmp_path):
    """A layer built from inside another's build takes that build's per-sample shape (it was refused
    as a Keras shape without batch axis); training or saving a layer that holds layers with weights
    its params do not list is refused, naming them: fit trained nothing of them and save lost them,
    with no error (Keras tracks such layers; convforge does not). Predict runs."""
    x, y = np.ones((8, 5), np.float32), np.ones((8, 1), np.float32)
    model = convforge.Sequential([convforge.Input((5,)), _TwoDense(), layers.Dense(1)])
    held = model.layers[0]
    assert held.d1.built and held.d1.kernel.shape == (5, 8) and held.d2.kernel.shape == (8, 4)
    assert model.predict(x, verbose=0).shape == (8, 1)
    model.compile(optimizer="sgd", loss="mse")
    message = "layer '__two_dense' (_TwoDense) holds a layer with weights in self.d1 (Dense)"
    with pytest.raises(NotImplementedError, match=re.escape(message) + ".*training would leave"):
        model.fit(x, y, verbose=0)
    with pytest.raises(NotImplementedError, match=re.escape(message) + ".*saving would leave"):
        model.save(tmp_path / "m.npz")
    # A layer of the model held for its weights is trained and saved by the model: allowed.
    inputs = convforge.Input((5,))
    dense = layers.Dense(3, use_bias=False)
    tied = convforge.Model(inputs, _Tied(dense)(dense(inputs)))
    tied.compile(optimizer="sgd", loss="mse")
    tied.fit(x, np.ones((8, 5), np.float32), verbose=0)
    tied.save(tmp_path / "tied.npz")


def test_losses_add_loss_and_add_metric_as_keras_3_or_refused_by_name():
    """``model.losses`` and ``layer.losses`` are the regularizer terms (Keras 3.15.1 gives [0.03,
    0.3] for these weights); ``add_loss`` and ``add_metric`` were bare AttributeErrors."""
    from convforge import regularizers

    model = convforge.Sequential([convforge.Input((4,)), layers.Dense(3, kernel_regularizer=regularizers.l2(0.01),
                                                                      bias_regularizer=regularizers.l1(0.1)),
                                  layers.Dense(2)])
    model.layers[0].set_weights([np.full((4, 3), 0.5, np.float32), np.full((3,), -1.0, np.float32)])
    assert model.losses == pytest.approx([0.03, 0.3]) and model.layers[0].losses == pytest.approx([0.03, 0.3])
    assert model.layers[1].losses == []
    model.trainable = False  # nothing trained, nothing added (Keras's frozen model has no losses)
    assert model.losses == []

    class AddsLoss(layers.Layer):
        def forward(self, x, training=False):
            self.add_loss(np.sum(x))
            return x

    with pytest.raises(NotImplementedError, match="'adds_loss' \\(AddsLoss\\): convforge does not support add_loss"):
        AddsLoss(name="adds_loss").forward(np.ones((1, 2)))
    with pytest.raises(NotImplementedError, match="does not support add_metric"):
        layers.Dense(2).add_metric(1.0, name="m")


def test_one_d_convolutions_name_themselves_in_argument_errors():
    """A Conv1D's errors from the 2-D layer it runs on said "Conv2D filters must be a positive int"."""
    for make, message in ((lambda: layers.Conv1D("64", 3), "Conv1D filters must be a positive int; got '64'"),
                          (lambda: layers.SeparableConv1D(0, 3), "SeparableConv1D filters must be a positive int"),
                          (lambda: layers.DepthwiseConv1D(3, depth_multiplier=0), "DepthwiseConv1D depth_multiplier"),
                          (lambda: layers.Conv1DTranspose(0, 3), "Conv1DTranspose filters must be a positive int")):
        with pytest.raises(ValueError, match=re.escape(message)):
            make()
    assert not any(hasattr(convforge, name) for name in ("os", "numbers", "warnings"))  # not Keras's names


def test_held_layers_are_found_in_nested_containers_models_and_own_layers(tmp_path):
    """The second read: the check missed layers in nested containers, in a held Sequential and in a
    held layer of one's own; and build() by hand of a subclass of a built-in layer ran the
    subclass's build twice ("already has a weight named 'extra'")."""
    class Holder(layers.Layer):
        def __init__(self, blocks, **kwargs):
            super().__init__(**kwargs)
            self.blocks = blocks

        def forward(self, x, training=False):
            return x

    class Inner(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(2)

        def forward(self, x, training=False):
            return x

    x = np.ones((4, 3), np.float32)
    for blocks in ({"a": [layers.Dense(3)]}, [(layers.Dense(3),)],
                   convforge.Sequential([convforge.Input((3,)), layers.Dense(3)]), Inner()):
        if not isinstance(blocks, convforge.Sequential):  # build the held Dense layers, as a build would
            for dense in ([blocks["a"][0]] if isinstance(blocks, dict) else [blocks[0][0]] if isinstance(blocks, list)
                          else [blocks.dense]):
                dense.build((None, 3))
        model = convforge.Sequential([convforge.Input((3,)), Holder(blocks)])
        model.compile("sgd", "mse")
        with pytest.raises(NotImplementedError, match=r"holds a layer with weights in self\.blocks \(Dense\)"):
            model.fit(x, x, verbose=0)

    class MyDense(layers.Dense):
        def build(self, input_shape):
            self.extra = self.add_weight(name="extra", shape=(self.units,), initializer="ones")
            super().build(input_shape)

    mine = MyDense(3)
    mine.build((None, 4))
    assert mine.built and [w.shape for w in mine.weights] == [(3,), (4, 3), (3,)]
    assert convforge.Sequential([convforge.Input((4,)), MyDense(3)]).count_params() == 18


def test_new_activations_keep_nan_and_their_tails():
    """Found by a review beside Keras 3.15.1 (PyTorch): the shrinks turned NaN into 0 (hiding a
    diverging net), hard_tanh's gradient at NaN was 0, and CELU's gradient, taken from its output,
    was 0 from x = -21 (float32) where exp(x) is 7.6e-10."""
    from convforge import activations
    from convforge.layers import activations as acts

    x = np.array([np.nan, 1.0, -2.0, 0.2])
    assert np.isnan(activations.hard_shrink(x)[0]) and np.isnan(activations.soft_shrink(x)[0])
    np.testing.assert_array_equal(activations.soft_shrink(x)[1:], [0.5, -1.5, 0.0])
    for layer in (acts.HardShrink(), acts.SoftShrink(), acts.HardTanh()):
        layer.forward(x, training=True)
        assert layer.backward(np.ones_like(x))[0] == 1.0  # NaN passes the gradient on, as PyTorch's
    celu = acts.CELU()
    tail = np.array([-15.0, -21.0, -40.0], np.float32)
    celu.forward(tail, training=True)
    np.testing.assert_allclose(celu.backward(np.ones_like(tail)), np.exp(tail.astype(np.float64)), rtol=1e-6)
