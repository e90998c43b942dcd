"""Tests of convforge.layers, one layer at a time.

Each test builds a layer on its own, in the internal NCHW layout the layers
work in, and checks forward and backward: conv and max-pooling against the
NumPy oracles of convforge.reference, everything else against plain NumPy
formulas and float64 central differences. Steps are named reference /
kernel (or layer) / verify.
"""

import doctest
import math

import numpy as np
import pytest
from gradients import numerical_grad

import convforge
from convforge import functional as F
from convforge import layers, reference
from convforge.layers import base as layers_base
from convforge.layers import initializers

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def built(layer, input_shape, dtype=np.float64):
    """The layer built for a per-sample internal input shape (what a model does)."""
    layer._build(tuple(input_shape), dtype)
    return layer




def check_layer_gradients(layer, x, seed=0, tol=1e-6):
    """backward() against central differences of L = sum(forward(x) * dy), for x and every weight."""
    rng = np.random.default_rng(seed)
    state = convforge.random.get_state()

    def loss():
        convforge.random.set_state(state)  # the same dropout mask at every evaluation
        return float(np.sum(layer.forward(x.copy(), training=True) * dy))

    convforge.random.set_state(state)
    y = layer.forward(x.copy(), training=True)
    dy = rng.standard_normal(y.shape)
    # Reference: central differences.
    expected_dx = numerical_grad(loss, x)
    expected = {name: numerical_grad(loss, p) for name, p in layer.params.items()}
    # Layer: backprop.
    convforge.random.set_state(state)
    layer.forward(x.copy(), training=True)
    dx = layer.backward(dy.copy())
    # Verify.
    scale = max(1.0, np.abs(expected_dx).max())
    np.testing.assert_allclose(dx, expected_dx, atol=tol * scale, rtol=0, err_msg="dL/dx")
    for name, g in expected.items():
        np.testing.assert_allclose(layer.grads[name], g, atol=tol * max(1.0, np.abs(g).max()), err_msg=name)


def keras_pool(x, pool, strides, padding, op):
    """Keras/TF pooling on NCHW, straight from the definition.

    'same' pads so that out = ceil(in / stride), the odd extra cell after;
    padding never wins a max and is not counted in an average.
    """
    n, c, h, w = x.shape
    out, pads = [], []
    for size, k, s in zip((h, w), pool, strides):
        if padding == "valid":
            o = (size - k) // s + 1
            before = 0
        else:
            o = math.ceil(size / s)
            before = max((o - 1) * s + k - size, 0) // 2
        out.append(o)
        pads.append(before)
    y = np.empty((n, c, *out))
    for i in range(out[0]):
        for j in range(out[1]):
            r0, c0 = i * strides[0] - pads[0], j * strides[1] - pads[1]
            window = x[:, :, max(r0, 0) : r0 + pool[0], max(c0, 0) : c0 + pool[1]]
            y[:, :, i, j] = op(window, axis=(2, 3))
    return y


# ---------------------------------------------------------------------------
# Conv2D
# ---------------------------------------------------------------------------

CONV_CASES = [
    # (input C, H, W), filters, kernel_size, strides, padding, dilation_rate
    ((1, 8, 8), 3, 3, 1, "valid", 1),
    ((2, 7, 9), 4, (3, 2), 1, "same", 1),
    ((3, 9, 8), 2, 3, 2, "same", 1),
    ((2, 8, 8), 3, 2, (2, 1), "valid", (1, 2)),
    ((2, 6, 6), 2, 5, 1, 2, 1),  # LeNet's explicit padding 2
    ((1, 5, 5), 2, 4, 1, "same", 1),  # even kernel: the odd padding goes bottom/right
]


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize(
    "shape,filters,kernel,strides,padding,dilation", CONV_CASES, ids=[f"case{i}" for i in range(len(CONV_CASES))]
)
def test_conv2d_matches_reference(shape, filters, kernel, strides, padding, dilation, activation, use_bias):
    convforge.seed(1)
    layer = built(
        layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            dilation_rate=dilation,
            activation=activation,
            use_bias=use_bias,
            bias_initializer="random_normal",
        ),
        shape,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape))
    w, b = layer.params["kernel"], layer.params.get("bias")
    # Reference: the NumPy oracle, then ReLU by hand.
    z = reference.conv2d(x, w, b, strides, padding, dilation)
    expected = np.maximum(z, 0) if activation == "relu" else z
    # Layer.
    y = layer.forward(x, training=True)
    assert y.shape[1:] == layer._internal_output_shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # Backward: the oracle's gradients of the pre-activation.
    dy = rng.standard_normal(y.shape)
    dz = dy * (z > 0) if activation == "relu" else dy
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(dz, x, w, strides, padding, dilation)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["kernel"], ref_dw, rtol=1e-10, atol=1e-10)
    if use_bias:
        np.testing.assert_allclose(layer.grads["bias"], ref_db, rtol=1e-10, atol=1e-10)
    else:
        assert "bias" not in layer.grads and "bias" not in layer.params


def test_conv2d_float32_uses_fast_kernel_and_agrees():
    convforge.seed(2)
    layer = built(layers.Conv2D(8, 3, padding="same", activation="relu"), (4, 12, 12), np.float32)
    x = np.random.default_rng(0).standard_normal((3, 4, 12, 12)).astype(np.float32)
    y = layer.forward(x, training=False)
    assert y.dtype == np.float32
    expected = np.maximum(
        reference.conv2d(
            x.astype(np.float64),
            layer.params["kernel"].astype(np.float64),
            layer.params["bias"].astype(np.float64),
            1,
            "same",
        ),
        0,
    )
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_relu_runs_in_place_on_conv_output(monkeypatch):
    """activation='relu' must not allocate a second output nor take a second pass: the kernel
    applies it as it stores the conv result, in training (into the layer's buffer) and in inference
    (into a fresh array, leaving the training state alone)."""
    calls = []
    real_relu = F.relu

    def spy(x, out=None):
        calls.append(f"inference, in place: {out is x}")
        return real_relu(x, out=out)

    monkeypatch.setattr(F, "relu", spy)
    layer = built(layers.Conv2D(2, 3, activation="relu"), (1, 6, 6), np.float32)
    x = np.random.default_rng(1).standard_normal((1, 1, 6, 6)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y is layer._buffers("y", (1, 2, 4, 4), np.float32)  # the conv output itself
    assert layer.activation._y is y  # what the ReLU's backward masks with
    y_inference = layer.forward(x, training=False)
    assert calls == []  # fused into the conv kernel both times
    assert y_inference is not y and layer.activation._y is y
    np.testing.assert_array_equal(y, y_inference)
    assert (y == 0).any() and (y > 0).any()


def test_conv2d_first_layer_skips_input_gradient(monkeypatch):
    calls = []
    real = F.conv2d_backward_data
    monkeypatch.setattr(F, "conv2d_backward_data", lambda *a, **k: calls.append(a) or real(*a, **k))
    layer = built(layers.Conv2D(2, 3), (1, 6, 6))
    x = np.ones((1, 1, 6, 6))
    y = layer.forward(x, training=True)
    assert layer.backward(np.ones_like(y)).shape == x.shape and len(calls) == 1
    layer.input_grad_needed = False
    y = layer.forward(x, training=True)
    assert layer.backward(np.ones_like(y)) is None and len(calls) == 1  # no data-gradient convolution
    assert layer.grads["kernel"].shape == (2, 1, 3, 3)


def test_training_mode_reuses_arrays_inference_does_not():
    layer = built(layers.Conv2D(2, 3, activation="relu"), (1, 6, 6), np.float32)
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6)).astype(np.float32)
    y1 = layer.forward(x, training=True)
    dx1 = layer.backward(np.ones_like(y1))
    y2 = layer.forward(x, training=True)
    assert y2 is y1 and layer.backward(np.ones_like(y2)) is dx1  # no allocation from step to step
    assert layer.forward(x, training=False) is not layer.forward(x, training=False)
    # Another batch size (the last, smaller batch) gets its own arrays.
    assert layer.forward(x[:3], training=True).shape == (3, 2, 4, 4)
    # A size other than the one built for still works ('same' padding would differ).
    other = built(layers.Conv2D(2, 3, padding="same"), (1, 6, 6))
    big = np.random.default_rng(1).standard_normal((2, 1, 9, 7))
    np.testing.assert_allclose(
        other.forward(big, training=True),
        reference.conv2d(big, other.params["kernel"], other.params["bias"], 1, "same"),
    )


def test_conv2d_weight_layout_and_glorot_limit():
    convforge.seed(3)
    layer = built(layers.Conv2D(64, (3, 3)), (32, 10, 10))
    kernel = layer.params["kernel"]
    # OIHW; fans as Keras: fan_in = 32 * 9, fan_out = 64 * 9.
    assert kernel.shape == (64, 32, 3, 3)
    limit = math.sqrt(6 / (32 * 9 + 64 * 9))
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.95 * limit  # uniform over the whole range
    np.testing.assert_array_equal(layer.params["bias"], 0)
    assert layer.count_params() == 64 * 32 * 9 + 64


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"filters": 0, "kernel_size": 3}, "filters must be a positive int"),
        ({"filters": 4, "kernel_size": 3, "padding": "full"}, "padding must be 'valid' or 'same'"),
        ({"filters": 4, "kernel_size": 3, "activation": "glu"}, "activation must be one of"),
        ({"filters": 4, "kernel_size": 0}, "kernel_size must be >= 1"),
        ({"filters": 4, "kernel_size": 3, "kernel_initializer": "glorot"}, "kernel_initializer must be one of"),
        ({"filters": 4, "kernel_size": 3, "data_format": "NHWC"}, "data_format must be"),
    ],
)
def test_conv2d_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        layers.Conv2D(**kwargs)


def test_conv2d_shape_errors_speak_keras_layout():
    layer = layers.Conv2D(4, 3)
    with pytest.raises(
        ValueError, match=r"Conv2D expects input of shape \(batch, height, width, channels\); got \(batch, 128\)"
    ):
        built(layer, (128,))
    too_small = layers.Conv2D(4, 5, name="c")
    with pytest.raises(ValueError, match=r"layer 'c' \(Conv2D\) on input \(batch, 3, 3, 1\)"):
        built(too_small, (1, 3, 3))


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("pool,strides", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_maxpool_valid_matches_reference(pool, strides):
    layer = built(layers.MaxPooling2D(pool, strides), (3, 9, 10))
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 10))
    p = layer.pool_size
    s = layer.strides
    # Reference.
    y_ref, idx_ref = reference.max_pool2d(x, p, s, return_indices=True)
    # Layer (kernel with argmax).
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(y, keras_pool(x, p, s, "valid", np.max))
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), reference.max_pool2d_backward(dy, idx_ref, x.shape))


def test_maxpool_valid_2x2_uses_the_kernel_with_indices(monkeypatch):
    calls = []
    real = F.max_pool2d
    monkeypatch.setattr(F, "max_pool2d", lambda *a, **k: calls.append(
        "argmax" if k.get("return_indices") else "max") or real(*a, **k))
    layer = built(layers.MaxPooling2D(2, 2), (2, 8, 8), np.float32)
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    layer.forward(x, training=True)
    layer.forward(x, training=False)
    assert calls == ["argmax", "max"]  # indices only when backward will need them


SAME_CASES = [
    # (H, W), pool, strides: odd/even sizes, odd total padding, stride > pool, and the NumPy
    # fallback (stride 1 with odd total padding: (6, 6) and the 1x1 input)
    ((7, 7), 2, None),
    ((8, 8), 3, 1),
    ((7, 6), 3, 2),
    ((5, 9), (2, 3), (3, 2)),
    ((6, 6), 2, 1),
    ((1, 1), 2, 1),
    ((4, 5), 4, 3),
]


@pytest.mark.parametrize("hw,pool,strides", SAME_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in SAME_CASES])
def test_maxpool_same_is_keras(hw, pool, strides):
    layer = built(layers.MaxPooling2D(pool, strides, padding="same"), (2, *hw))
    x = np.random.default_rng(0).standard_normal((2, 2, *hw))
    # Reference: Keras's definition; out = ceil(in / stride).
    expected = keras_pool(x, layer.pool_size, layer.strides, "same", np.max)
    assert expected.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(hw, layer.strides))
    # Layer: the kernel's symmetric padding + ceil mode, or NumPy -inf padding where that cannot
    # work (stride 1 with an odd total padding).
    assert (layer._prepad is not None) == (hw in [(1, 1), (6, 6)])
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, expected)
    assert y.shape[1:] == layer._internal_output_shape
    # Verify backward numerically (distinct random values: no ties).
    check_layer_gradients(built(layers.MaxPooling2D(pool, strides, padding="same"), (2, *hw)), x)


def test_maxpool_same_never_picks_padding_for_negative_inputs():
    layer = built(layers.MaxPooling2D(2, padding="same"), (1, 3, 3))
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3) - 100
    y = layer.forward(x, training=False)
    np.testing.assert_array_equal(y[0, 0], [[-101, -103], [-107, -109]])


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("hw,pool,strides", [((6, 6), 2, None), ((7, 5), 3, 2), ((5, 5), (2, 3), 1)])
def test_average_pooling_is_keras(hw, pool, strides, padding):
    layer = built(layers.AveragePooling2D(pool, strides, padding=padding), (3, *hw))
    x = np.random.default_rng(0).standard_normal((2, 3, *hw))
    # Reference: averages over real cells only.
    expected = keras_pool(x, layer.pool_size, layer.strides, padding, np.mean)
    # Layer.
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    check_layer_gradients(built(layers.AveragePooling2D(pool, strides, padding=padding), (3, *hw)), x)


@pytest.mark.parametrize("hw,pool,strides,padding", [((8, 8), 3, 2, 1), ((7, 6), 3, 2, (1, 0)), ((5, 5), (2, 3), 1, (1, 1)),
                                                      ((6, 9), 5, (2, 3), 2)])
def test_maxpool_explicit_padding_is_pytorchs(hw, pool, strides, padding):
    # convforge's extension: -inf rows/columns at both sides, PyTorch's MaxPool2d(padding=...)
    # (ResNet's stem MaxPool2d(3, 2, padding=1) on an even size, which 'same' is not).
    layer = built(layers.MaxPooling2D(pool, strides, padding=padding), (2, *hw))
    x = np.random.default_rng(0).standard_normal((2, 2, *hw)) - 3  # negative: a padded 0 would show
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    expected = keras_pool(padded, layer.pool_size, layer.strides, "valid", np.max)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, expected)
    assert y.shape[1:] == layer._internal_output_shape and layer._prepad is None
    np.testing.assert_array_equal(layer.forward(x, training=False), expected)
    check_layer_gradients(built(layers.MaxPooling2D(pool, strides, padding=padding), (2, *hw)), x)
    again = layers.MaxPooling2D.from_config(layer.get_config())
    assert again._explicit_padding() == (ph, pw)


def test_maxpool_explicit_padding_errors():
    with pytest.raises(ValueError, match=r"at most half the window \(pool_size=\(3, 3\)\); got padding=2"):
        layers.MaxPooling2D(3, padding=2)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same', an int or"):
        layers.MaxPooling2D(3, padding=True)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.AveragePooling2D(3, padding=1)  # Keras's: the averages' divisor would be ambiguous
    with pytest.raises(ValueError, match=r"MaxPooling1D padding must be at most half the window"):
        layers.MaxPooling1D(3, padding=2)
    with pytest.raises(ValueError, match=r"AveragePooling1D padding must be 'valid' or 'same'"):
        layers.AveragePooling1D(3, padding=1)


def test_pooling_argument_errors():
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.MaxPooling2D(2, padding="full")
    with pytest.raises(ValueError, match=r"pool_size \(3, 3\) does not fit in the input \(batch, 2, 2, 1\)"):
        built(layers.MaxPooling2D(3), (1, 2, 2))
    assert layers.MaxPool2D is layers.MaxPooling2D and layers.AvgPool2D is layers.AveragePooling2D


# ---------------------------------------------------------------------------
# Dense, Flatten, Reshape, Dropout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid", "softmax"])
def test_dense_forward_and_gradients(activation):
    convforge.seed(4)
    layer = built(layers.Dense(5, activation=activation, bias_initializer="random_normal"), (7,))
    x = np.random.default_rng(0).standard_normal((3, 7))
    w, b = layer.params["kernel"], layer.params["bias"]
    # Reference.
    z = x @ w + b
    expected = {
        None: z,
        "relu": np.maximum(z, 0),
        "tanh": np.tanh(z),
        "sigmoid": 1 / (1 + np.exp(-z)),
        "softmax": np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
    }[activation]
    # Layer.
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-12, atol=1e-14)
    assert w.shape == (7, 5)  # Keras's layout
    check_layer_gradients(layer, x)


def test_dense_rejects_feature_maps_with_a_hint():
    with pytest.raises(
        ValueError,
        match=r"Dense expects input of shape \(batch, features\) or \(batch, steps, features\); "
              r"got \(batch, 13, 13, 64\)\. Add a Flatten\(\) layer",
    ):
        built(layers.Dense(10), (64, 13, 13))
    with pytest.raises(ValueError, match="units must be a positive int"):
        layers.Dense(0)
    assert layers.Dense(3, input_dim=4).input_shape_arg == (4,)


def test_flatten_is_channel_major():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)  # NCHW
    layer = built(layers.Flatten(), (3, 2, 2))
    y = layer.forward(x, training=True)
    # (C, H, W) order: the first four features are channel 0.
    np.testing.assert_array_equal(y[0, :4], x[0, 0].ravel())
    assert layer.output_shape == (None, 12)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(x.shape))


def test_reshape_follows_keras_element_order():
    layer = built(layers.Reshape((2, 2, 3)), (12,))
    flat = np.arange(24.0).reshape(2, 12)
    y = layer.forward(flat, training=True)
    # Keras fills (H, W, C) from the flat vector; internally that image is NCHW.
    np.testing.assert_array_equal(y.transpose(0, 2, 3, 1), flat.reshape(2, 2, 2, 3))
    assert layer._internal_output_shape == (3, 2, 2) and layer.output_shape == (None, 2, 2, 3)
    # Back to flat with Reshape((-1,)): Keras's (H, W, C) order, unlike Flatten.
    back = built(layers.Reshape((-1,)), (3, 2, 2))
    np.testing.assert_array_equal(back.forward(y, training=False), flat)
    check_layer_gradients(built(layers.Reshape((2, 2, 3)), (12,)), flat.copy())
    check_layer_gradients(built(layers.Reshape((-1,)), (3, 2, 2)), y.copy())
    with pytest.raises(ValueError, match="cannot reshape"):
        built(layers.Reshape((5, 5)), (12,))


def test_dropout_training_and_inference():
    convforge.seed(5)
    layer = built(layers.Dropout(0.25), (1000,))
    x = np.ones((20, 1000))
    # Inference: identity, same object.
    assert layer.forward(x, training=False) is x
    # Training: about a quarter zeroed, the rest scaled by 1 / 0.75 (inverted dropout).
    y = layer.forward(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    # Backward uses the same mask.
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)
    check_layer_gradients(built(layers.Dropout(0.5), (6,)), np.random.default_rng(0).standard_normal((3, 6)))
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        layers.Dropout(1.0)


def test_dropout_masks_follow_the_seed():
    layer = built(layers.Dropout(0.5), (50,))
    x = np.ones((4, 50))
    convforge.seed(7)
    a = layer.forward(x, training=True).copy()  # training-mode outputs are reused: keep a copy
    convforge.seed(7)
    b = layer.forward(x, training=True).copy()
    c = layer.forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [layers.ReLU, layers.Tanh, layers.Sigmoid, layers.Softmax])
def test_activation_layers_gradients(cls):
    x = np.random.default_rng(0).standard_normal((3, 5))
    check_layer_gradients(built(cls(), (5,)), x)


def test_activation_layers_values_and_stability():
    x = np.array([[-1000.0, -1.0, 0.0, 2.0, 1000.0]])
    np.testing.assert_array_equal(built(layers.ReLU(), (5,)).forward(x), [[0, 0, 0, 2, 1000]])
    s = built(layers.Sigmoid(), (5,)).forward(x)  # no overflow warning (warnings are errors here)
    np.testing.assert_allclose(s, [[0, 1 / (1 + math.e), 0.5, 1 / (1 + math.exp(-2)), 1]], atol=1e-15)
    p = built(layers.Softmax(), (5,)).forward(x)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1)
    np.testing.assert_allclose(built(layers.Tanh(), (5,)).forward(x), np.tanh(x))
    # Softmax over channels of an NCHW image (Keras's last axis).
    img = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(built(layers.Softmax(), (3, 4, 4)).forward(img).sum(axis=1), 1)


def test_standalone_activation_does_not_overwrite_its_input():
    x = np.array([[-1.0, 2.0]])
    y = built(layers.ReLU(), (2,)).forward(x, training=True)
    np.testing.assert_array_equal(x, [[-1.0, 2.0]])
    assert y is not x


def test_activation_layer_by_name():
    layer = built(layers.Activation("tanh"), (3,))
    x = np.array([[0.1, -0.2, 3.0]])
    np.testing.assert_allclose(layer.forward(x), np.tanh(x))
    assert built(layers.Activation("linear"), (3,)).forward(x) is x
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.Activation("glu")  # Keras has it; convforge does not


# ---------------------------------------------------------------------------
# The Layer base class
# ---------------------------------------------------------------------------


def test_custom_layer_docstring_example_runs():
    """The NumPy custom layer in Layer's docstring builds, counts and runs in a model."""
    failures, tried = doctest.testmod(layers_base, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_get_set_weights_and_errors():
    layer = built(layers.Dense(2), (3,))
    w = layer.get_weights()
    assert [a.shape for a in w] == [(3, 2), (2,)]
    w[0][...] = 7  # copies: the layer is unchanged
    assert not np.any(layer.params["kernel"] == 7)
    kernel = layer.params["kernel"]
    layer.set_weights([np.ones((3, 2)), np.zeros(2)])
    assert layer.params["kernel"] is kernel  # set in place
    np.testing.assert_array_equal(kernel, 1)
    with pytest.raises(ValueError, match=r"weight 'kernel' has shape \(3, 2\); set_weights got shape \(2, 3\)"):
        layer.set_weights([np.ones((2, 3)), np.zeros(2)])
    with pytest.raises(ValueError, match="has 2 weights"):
        layer.set_weights([np.ones((3, 2))])


def test_backward_needs_a_training_forward():
    layer = built(layers.Dense(2), (3,))
    layer.forward(np.ones((1, 3)), training=False)  # inference keeps nothing
    assert layer._x is None
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(x, training=True\) first"):
        layer.backward(np.ones((1, 2)))


def test_layer_name_validation():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        layers.Dense(2, name="a/b")
    assert layers_base.snake_case("MaxPooling2D") == "max_pooling2d"
    assert layers_base.snake_case("ReLU") == "re_lu"  # as Keras names it


# ---------------------------------------------------------------------------
# Initializers
# ---------------------------------------------------------------------------


def test_initializers_follow_keras_formulas():
    convforge.seed(8)
    he = initializers.get("he_normal")((400, 300))
    # Truncated normal at 2 standard deviations, rescaled so the variance is 2 / fan_in.
    assert np.abs(he).max() <= 2 * math.sqrt(2 / 400) / 0.87962566103423978 + 1e-12
    assert abs(he.std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    assert initializers.compute_fans((16, 6, 5, 5)) == (150, 400)
    np.testing.assert_array_equal(initializers.get("zeros")((2, 2)), 0)
    custom = initializers.get(lambda shape, dtype: np.full(shape, 3.0, dtype))((2,), np.float32)
    assert custom.dtype == np.float32 and np.all(custom == 3)
    with pytest.raises(ValueError, match="returned an array of shape"):
        initializers.get(lambda shape, dtype: np.zeros(3))((2,))


@pytest.mark.parametrize(
    "cls", [initializers.HeNormal, initializers.GlorotUniform, initializers.RandomNormal, initializers.TruncatedNormal]
)
def test_seeded_initializers_draw_the_same_weights_every_call(cls):
    """Keras's ``kernel_initializer=keras.initializers.HeNormal(seed=42)``: a seeded initializer draws the
    same values at every call (Keras 3's rule), whatever convforge.seed drew since; unseeded ones draw
    from convforge's generator; the seed survives a model file's config."""
    seeded = cls(seed=42)
    first = seeded((20, 10))
    convforge.seed(1)
    np.testing.assert_array_equal(seeded((20, 10)), first)
    assert not np.array_equal(cls(seed=43)((20, 10)), first)
    assert not np.array_equal(cls()((20, 10)), cls()((20, 10)))
    again = initializers.deserialize(initializers.serialize(seeded))
    np.testing.assert_array_equal(again((20, 10)), first)
    layer = layers.Dense(10, kernel_initializer=seeded)
    np.testing.assert_array_equal(built(layer, (20,), np.float64).params["kernel"], seeded((20, 10), np.float64))
    with pytest.raises(TypeError, match="seed must be"):
        cls(seed=1.5)


def test_same_seed_same_weights_in_float32_and_float64():
    convforge.seed(9)
    a = built(layers.Conv2D(4, 3), (2, 5, 5), np.float32).params["kernel"]
    convforge.seed(9)
    b = built(layers.Conv2D(4, 3), (2, 5, 5), np.float64).params["kernel"]
    np.testing.assert_array_equal(a, b.astype(np.float32))


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_frozen_layer_backward_computes_dx_alone(kind, monkeypatch):
    # Keras's trainable=False: no weight gradient at all (PyTorch's conv2d_input cost), same dx.
    rng = np.random.default_rng(6)
    if kind == "conv":
        make, shape, x = (lambda t: layers.Conv2D(3, 3, activation="relu", trainable=t)), (2, 7, 7), \
            rng.standard_normal((4, 2, 7, 7)).astype(np.float32)
        weights_fn = "conv2d_backward_weights"
    else:
        make, shape, x = (lambda t: layers.Dense(5, activation="relu", trainable=t)), (6,), \
            rng.standard_normal((4, 6)).astype(np.float32)
        weights_fn = "dense_backward_weights"
    live, frozen = built(make(True), shape, np.float32), built(make(False), shape, np.float32)
    for name in live.params:
        frozen.params[name][...] = live.params[name]
    dy = rng.standard_normal(live.forward(x, training=True).shape).astype(np.float32)
    want = live.backward(dy).copy()
    assert set(live.grads) == set(live.params)
    monkeypatch.setattr(F, weights_fn, lambda *a, **k: pytest.fail("weight gradient computed"))
    frozen.forward(x, training=True)
    np.testing.assert_array_equal(frozen.backward(dy), want)
    assert frozen.grads == {}
    assert frozen.count_trainable_params() == 0
