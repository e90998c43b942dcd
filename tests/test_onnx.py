"""ONNX export and import (convforge.onnx): every exportable layer and option checked three ways
-- onnxruntime runs the exported file and gives predict's output; load_model reads it back and
predicts the same; the file passes onnx's checker with shape inference -- a PyTorch-exported
LeNet-5 imports and predicts like PyTorch, and hostile files raise ModelFileError cheaply."""

from __future__ import annotations

import itertools
import os
import tracemalloc
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import convforge  # noqa: E402
from convforge import layers  # noqa: E402
from convforge.onnx import register_exporter  # noqa: E402
from convforge.layers.activations import LogSoftmax  # noqa: E402
from convforge.saving import ModelFileError  # noqa: E402

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RTOL = ATOL = 2e-5  # float32: different summation orders in onnxruntime and convforge

# An NCHW file whose model takes channels-last images warns (test_an_nchw_file_imported_channels_last_
# warns_how_to_feed_it); the tests of such imports feed them NHWC on purpose.
NCHW_AS_NHWC = "is NCHW, but its convforge model takes channels-last images"
pytestmark = pytest.mark.filterwarnings(f"ignore:.*{NCHW_AS_NHWC}:UserWarning")


def run_ort(path, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def round_trip(model, x, tmp_path, exact=True, **export_args):
    """Export, check the file, compare onnxruntime with predict, re-import and compare again."""
    path = tmp_path / "model.onnx"
    model.export(path, **export_args)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    expected = model.predict(x, verbose=0)
    layout = export_args.get("input_layout") or model._data_format()
    x_onnx = x.astype(np.float32)
    if layout != model._data_format() and x.ndim == 4:
        x_onnx = np.ascontiguousarray(x_onnx.transpose(0, 3, 1, 2) if layout == "channels_first" else x_onnx.transpose(0, 2, 3, 1))
    got = run_ort(path, x_onnx)
    if layout != model._data_format() and got.ndim == 4:
        got = got.transpose(0, 2, 3, 1) if layout == "channels_first" else got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path, input_layout=model._data_format() if x.ndim == 4 else None)
    if exact:
        np.testing.assert_array_equal(back.predict(x, verbose=0), expected)
    else:  # the same arithmetic split over other layers
        np.testing.assert_allclose(back.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    return proto, back


def export_checked(model, x, tmp_path):
    """Export, check the file, compare onnxruntime with predict; the file's path."""
    path = tmp_path / "model.onnx"
    model.export(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    return path


def export_torch(net, args, path, **kwargs):
    """torch.onnx.export with the legacy TorchScript exporter (dynamo=False: the new one needs
    onnxscript), its deprecation notice silenced."""
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, path, dynamo=False, **kwargs)


def exported_torch(net, x, tmp_path, **kwargs):
    """``net`` exported with a dynamic batch (input ``x``) to ``tmp_path / 'm.onnx'``, and its
    outputs for ``x`` as NumPy arrays (a tuple where it returns several)."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.onnx"
    export_torch(net, (x,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, **kwargs)
    with torch.no_grad():
        out = net(x)
    return path, tuple(t.numpy() for t in out) if isinstance(out, tuple) else out.numpy()


def seeded(model_layers, **kw):
    convforge.seed(1)
    return convforge.Sequential(model_layers, **kw)


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------
# Export -> onnxruntime == predict; export -> load_model -> predict equal
# ---------------------------------------------------------------------------

CONV_CASES = [
    dict(filters=4, kernel_size=3),
    dict(filters=4, kernel_size=3, padding="same"),
    dict(filters=5, kernel_size=(2, 4), padding="same", strides=2),  # odd extra padding at the bottom/right
    dict(filters=3, kernel_size=3, padding="same", strides=(2, 1), dilation_rate=(1, 2)),
    dict(filters=3, kernel_size=3, dilation_rate=2, use_bias=False),
    dict(filters=2, kernel_size=3, padding=1),
    dict(filters=2, kernel_size=(3, 2), padding=((0, 2), (1, 0)), strides=(1, 3)),
    dict(filters=4, kernel_size=1, activation="relu"),
    dict(filters=4, kernel_size=3, activation="tanh", padding="same"),
    dict(filters=4, kernel_size=3, activation="sigmoid"),
    dict(filters=4, kernel_size=3, activation="softmax"),  # over channels
]


@pytest.mark.parametrize("config", CONV_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_round_trip(config, tmp_path):
    model = seeded([layers.Conv2D(**config, input_shape=(9, 11, 3))])  # image output: the exit transpose
    conv = model.layers[0]
    if conv.use_bias:
        conv.params["bias"][...] = np.linspace(-1, 1, conv.filters)  # a bias that matters
    round_trip(model, images((4, 9, 11, 3)), tmp_path)


POOL_CASES = [
    dict(pool_size=2),
    dict(pool_size=2, padding="same"),
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=(2, 3), strides=1, padding="same"),  # even window, stride 1: padding split 0/1
    dict(pool_size=3, strides=(1, 2)),
]


@pytest.mark.parametrize("pool", [layers.MaxPooling2D, layers.AveragePooling2D])
@pytest.mark.parametrize("config", POOL_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pooling_round_trip(pool, config, tmp_path):
    model = seeded([layers.Conv2D(3, 1, input_shape=(7, 9, 2)), pool(**config)])
    round_trip(model, images((3, 7, 9, 2)), tmp_path)


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid", "softmax"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_round_trip(activation, use_bias, tmp_path):
    model = seeded([layers.Dense(7, activation=activation, use_bias=use_bias, input_shape=(5,)), layers.Dense(3)])
    if use_bias:
        model.layers[0].params["bias"][...] = np.arange(7) / 7
    proto, _ = round_trip(model, images((6, 5)), tmp_path)
    assert [n.op_type for n in proto.graph.node][:1] == ["Gemm"]


STANDALONE = {
    "ReLU": layers.ReLU,
    "Tanh": layers.Tanh,
    "Sigmoid": layers.Sigmoid,
    "Softmax": layers.Softmax,
    "Activation-relu": lambda: layers.Activation("relu"),
    "Activation-linear": lambda: layers.Activation("linear"),
    "Dropout": lambda: layers.Dropout(0.5),
    "LeakyReLU": lambda: layers.LeakyReLU(negative_slope=0.2),
    "ELU": lambda: layers.ELU(alpha=0.7),
    "Activation-softplus": lambda: layers.Activation("softplus"),
    "Activation-leaky_relu": lambda: layers.Activation("leaky_relu"),
    "Activation-log_softmax": lambda: layers.Activation("log_softmax"),
    "Activation-selu": lambda: layers.Activation("selu"),
    "Activation-hard_sigmoid": lambda: layers.Activation("hard_sigmoid"),
    "Activation-hard_silu": lambda: layers.Activation("hard_silu"),
    "Activation-mish": lambda: layers.Activation("mish"),
    "Activation-softsign": lambda: layers.Activation("softsign"),
    "Activation-exponential": lambda: layers.Activation("exponential"),
    "Activation-celu": lambda: layers.Activation("celu"),
}


# Exported as several ONNX ops (x * sigmoid(x); 0.5 x (1 + erf(x / sqrt 2)) or its tanh form):
# checked in onnxruntime; the importer reads the GELU formulas back as one GELU layer.
COMPOSITE = {
    "swish": lambda: layers.Activation("swish"),
    "gelu": lambda: layers.Activation("gelu"),
    "gelu-tanh": lambda: layers.GELU(approximate=True),
    "hard_tanh": lambda: layers.Activation("hard_tanh"),
    "hard_shrink": lambda: layers.Activation("hard_shrink"),
    "soft_shrink": lambda: layers.Activation("soft_shrink"),
    "tanh_shrink": lambda: layers.Activation("tanh_shrink"),
    "log_sigmoid": lambda: layers.Activation("log_sigmoid"),
    "squareplus": lambda: layers.Activation("squareplus"),
    "sparse_plus": lambda: layers.Activation("sparse_plus"),
    "sparse_sigmoid": lambda: layers.Activation("sparse_sigmoid"),
}


@pytest.mark.parametrize("make", COMPOSITE.values(), ids=COMPOSITE.keys())
def test_composite_activations_export(make, tmp_path):
    model = seeded([layers.Conv2D(4, 3, input_shape=(6, 6, 2)), make(), layers.Flatten(), layers.Dense(3), make()])
    path = tmp_path / "model.onnx"
    model.export(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    x = images((3, 6, 6, 2)) * 3  # both tails of the curves
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("approximate", [False, True], ids=["erf", "tanh"])
def test_gelu_round_trips_as_one_layer(approximate, tmp_path):
    # Its formula (Mul/Erf/Add or the tanh form) stopped the importer at the first Mul by a constant.
    model = seeded([layers.Conv2D(4, 3, input_shape=(6, 6, 2)), layers.GELU(approximate=approximate), layers.Flatten(),
                    layers.Dense(3), layers.Activation("gelu") if not approximate else layers.GELU(approximate=True)])
    _, back = round_trip(model, images((3, 6, 6, 2)) * 3, tmp_path)
    gelus = [layer for layer in back.layers if type(layer).__name__ == "GELU"]
    assert [g.approximate for g in gelus] == [approximate, approximate]


@pytest.mark.parametrize("form, opset", [("none", 17), ("tanh", 17), ("none", 20), ("tanh", 20)])
def test_pytorch_gelu_imports(form, opset, tmp_path):
    # PyTorch writes the erf formula in its own order (Div, Erf, Add, Mul, Mul), the tanh form with
    # x * x * x, and from opset 20 the Gelu op itself.
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.GELU(approximate=form), nn.Linear(5, 2)).eval()
    x = torch.randn(6, 4) * 2
    path = tmp_path / "gelu.onnx"
    export_torch(net, (x,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, opset_version=opset)
    with torch.no_grad():
        expected = net(x).numpy()
    model = convforge.load_model(path)
    assert [(type(layer).__name__, getattr(layer, "approximate", None)) for layer in model.layers] == [
        ("Dense", None), ("GELU", form == "tanh"), ("Dense", None)]
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not hasattr(convforge, "Model"), reason="this convforge has no graph models")
def test_gelu_after_a_residual_add_and_a_formula_that_is_not_gelu(tmp_path):
    # x itself made by arithmetic (a residual Add): the formula starts at the Add's output.
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    const = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("half", 0.5), ("k", 1 / np.sqrt(2)), ("one", 1.0), ("third", 1 / 3))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["r"], name="residual"),
             helper.make_node("Mul", ["r", "half"], ["h"], name="half_x"),
             helper.make_node("Mul", ["r", "k"], ["s"], name="scaled"),
             helper.make_node("Erf", ["s"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["p"], name="one_plus"),
             helper.make_node("Mul", ["h", "p"], ["y"], name="gelu")]
    path = save_graph(tmp_path / "res.onnx", nodes, [w, *const])
    model = convforge.load_model(path)
    assert [type(layer).__name__ for layer in model.layers if type(layer).__name__ != "InputLayer"] == [
        "Conv2D", "Add", "GELU"]
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    got = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL)
    # The same nodes with 1/3 in place of 0.5 are no GELU: refused as before, naming a node.
    nodes[2] = helper.make_node("Mul", ["r", "third"], ["h"], name="half_x")
    path = save_graph(tmp_path / "not.onnx", nodes, [w, *const])
    with pytest.raises(ModelFileError, match=r"node '(half_x|scaled|erf|one_plus|gelu)'"):
        convforge.load_model(path)


def test_inference_only_and_resampling_layers_export(tmp_path):
    """Augmentation is nothing at inference; Rescaling is Mul (+ Add); UpSampling2D is a nearest Resize."""
    model = seeded([
        layers.Input(shape=(5, 4, 2)),
        layers.Rescaling(1 / 255.0, offset=-0.5),
        layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1),
        layers.RandomTranslation(0.1, 0.1),
        layers.UpSampling2D((2, 3)),
        layers.Conv2D(3, 3, padding="same"),
    ])
    path = tmp_path / "model.onnx"
    model.export(path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node if n.op_type not in ("Transpose",)][:4] == ["Mul", "Add", "Resize", "Conv"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("size", [(2, 2), (2, 3), (1, 4)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("opset", [13, 21])
def test_upsampling_round_trips(size, opset, tmp_path):
    # Exported as a nearest Resize, which the importer did not read back (issue 17: every
    # exportable layer round-trips).
    model = seeded([layers.Conv2D(3, 3, padding="same", input_shape=(5, 4, 2)), layers.UpSampling2D(size),
                    layers.Conv2D(2, 1)])
    _, back = round_trip(model, images((2, 5, 4, 2)), tmp_path, opset=opset)
    assert [type(layer).__name__ for layer in back.layers] == ["Conv2D", "UpSampling2D", "Conv2D"]
    assert back.layers[1].size == size


def test_pytorch_nearest_upsample_imports(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 6)
    for scale, opset in ((2, 17), ((3, 2), 13), (2, 11)):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=scale), nn.Conv2d(4, 2, 1))
        net.eval()
        path = tmp_path / f"up{opset}.onnx"
        export_torch(net, (x,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, opset_version=opset)
        with torch.no_grad():
            expected = net(x).numpy()
        model = convforge.load_model(path)
        assert "UpSampling2D" in [type(layer).__name__ for layer in model.layers]
        np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "attributes, scales, message",
    [
        ({"mode": "cubic"}, [1, 1, 2, 2], "attribute 'mode': only mode 'nearest'"),
        # Linear with PyTorch's align_corners=True: Keras's bilinear has half-pixel centres.
        ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2, 2],
         "attribute 'coordinate_transformation_mode': a linear resize with 'align_corners' coordinates"),
        # (At scale 2 on 6 pixels align_corners happens to read the repeat's pixels, and is taken.)
        ({"coordinate_transformation_mode": "align_corners"}, [1, 1, 3, 3], "attribute 'coordinate_transformation_mode'"),
        ({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "round_prefer_floor"}, [1, 1, 3, 3],
         "'round_prefer_floor' at scale 3 reads other pixels"),
        ({}, [1, 1, 1.5, 2], r"scales \[1.0, 1.0, 1.5, 2.0\]: only whole factors"),
        ({}, [1, 2, 2, 2], r"factors \[2, 2, 2\]: only height and width can be scaled, not the channels"),
    ],
    ids=["cubic", "linear-align-corners", "align-corners", "asymmetric-round", "fraction", "channels"],
)
def test_resize_that_upsampling_cannot_do_names_the_attribute(attributes, scales, message, tmp_path):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attributes)
    path = save_graph(tmp_path / "m.onnx", [node], [numpy_helper.from_array(np.array(scales, np.float32), "scales")])
    with pytest.raises(ModelFileError, match=r"node 'up' \(Resize\).*" + message):
        convforge.load_model(path)


def test_resize_keeps_its_sizes_only_when_stretched(tmp_path):
    # keep_aspect_ratio_policy 'not_larger' / 'not_smaller' change the sizes asked for (onnxruntime
    # gave (1, 2, 3, 4) for sizes (1, 2, 6, 12)): refused, not read as a repeat of the sizes.
    sizes = numpy_helper.from_array(np.array([1, 2, 12, 12], np.int64), "sizes")
    for policy in ("not_larger", "not_smaller"):
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up", keep_aspect_ratio_policy=policy,
                                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        path = save_graph(tmp_path / f"{policy}.onnx", [node], [sizes], opset=19)
        with pytest.raises(ModelFileError, match=r"'up' \(Resize\), attribute 'keep_aspect_ratio_policy'"):
            convforge.load_model(path)


def test_resize_with_onnx_defaults_is_upsampling(tmp_path):
    # ONNX's defaults (half_pixel, round_prefer_floor) read floor(i / s) at any whole scale.
    good = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up")
    path = save_graph(tmp_path / "ok.onnx", [good], [numpy_helper.from_array(np.array([1, 1, 3, 2], np.float32), "scales")])
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    model = convforge.load_model(path, input_layout="channels_first")
    np.testing.assert_array_equal(model.predict(x, verbose=0), run_ort(path, x))


@pytest.mark.parametrize("make", STANDALONE.values(), ids=STANDALONE.keys())
def test_standalone_layers_round_trip(make, tmp_path):
    # On images (softmax over channels) and on features.
    model = seeded([layers.Conv2D(4, 3, input_shape=(6, 6, 2)), make(), layers.Flatten(), layers.Dense(3), make()])
    proto, _ = round_trip(model, images((3, 6, 6, 2)), tmp_path)
    assert "Dropout" not in {n.op_type for n in proto.graph.node}


def randomise_statistics(model, seed=3):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name, value in layer.params.items():
            if name in ("gamma", "moving_variance"):
                value[...] = rng.uniform(0.5, 2.0, value.shape)
            elif name in ("beta", "moving_mean", "bias"):
                value[...] = rng.uniform(-1.0, 1.0, value.shape)


LAYERS13 = {
    "batchnorm-images": lambda: [layers.Conv2D(4, 3), layers.BatchNormalization(epsilon=0.01), layers.ReLU()],
    "batchnorm-features": lambda: [layers.Flatten(), layers.Dense(6), layers.BatchNormalization(center=False)],
    "batchnorm-no-scale": lambda: [layers.BatchNormalization(scale=False)],
    "global-average": lambda: [layers.Conv2D(4, 3), layers.GlobalAveragePooling2D()],
    "global-max-keepdims": lambda: [layers.Conv2D(4, 3), layers.GlobalMaxPooling2D(keepdims=True)],
    "global-max": lambda: [layers.GlobalMaxPooling2D(), layers.Dense(3)],
    "zero-padding": lambda: [layers.ZeroPadding2D(((1, 2), (0, 3))), layers.Conv2D(2, 3)],
    "cropping": lambda: [layers.Cropping2D(((1, 0), (2, 1))), layers.Conv2D(2, 3)],
    "depthwise": lambda: [layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")],
    "depthwise-strided": lambda: [layers.DepthwiseConv2D((3, 2), strides=2, dilation_rate=(1, 1), use_bias=False)],
}


@pytest.mark.parametrize("make", LAYERS13.values(), ids=LAYERS13.keys())
def test_layers13_round_trip(make, tmp_path):
    model = seeded([layers.Input(shape=(9, 8, 3)), *make()])
    randomise_statistics(model)
    round_trip(model, images((3, 9, 8, 3)), tmp_path)


def export_sequence_model(model, x, tmp_path):
    """Export a model of sequences (batch, steps, channels), check the file, compare onnxruntime
    with predict, and import it back: the same layers, the same results (the 1-D importers came
    after the exporters: a 1-D model's file was refused, naming its input's shape)."""
    path = tmp_path / "sequences.onnx"
    model.export(path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(run_ort(path, x), expected, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path)
    np.testing.assert_array_equal(back.predict(x, verbose=0), expected)
    # Every layer comes back as itself, but Dropout (dropped) and an activation the exporter
    # wrote after a Conv1D's transpose (a layer of its own).
    kinds = _imported_kinds(type(layer).__name__ for layer in model.layers if type(layer).__name__ != "Dropout")
    assert [k for k in (type(layer).__name__ for layer in back.layers) if k not in ("ReLU", "Softmax")] == \
        [k for k in kinds if k not in ("ReLU", "Softmax")]
    return proto


def test_batchnorm_on_sequences_normalises_the_channels(tmp_path):
    """Found by a review: BatchNormalization of (batch, steps, channels) went out as ONNX's
    BatchNormalization of that tensor, which normalises axis 1, the steps: onnxruntime refused the
    file (the statistics have one value per channel)."""
    model = seeded([layers.Input(shape=(7, 3)), layers.BatchNormalization(epsilon=0.01), layers.ReLU()])
    randomise_statistics(model)
    x = images((4, 7, 3))
    p = model.layers[0].params
    keras = np.maximum((x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 0.01) * p["gamma"] + p["beta"], 0)
    np.testing.assert_allclose(model.predict(x, verbose=0), keras, rtol=RTOL, atol=ATOL)
    export_sequence_model(model, x, tmp_path)


def test_batchnorm_on_sequences_with_as_many_steps_as_channels(tmp_path):
    """Found by a review, comparing predict with onnxruntime: predict's compiled inference pass
    normalised a (batch, 4, 4) sequence over the steps (its batchnorm takes the channels first;
    with other sizes the shapes disagreed and the layer ran in Python, correctly)."""
    model = seeded([layers.Input(shape=(4, 4)), layers.BatchNormalization()])
    randomise_statistics(model)
    x = images((3, 4, 4))
    p = model.layers[0].params
    keras = (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]
    np.testing.assert_allclose(model.predict(x, verbose=0), keras, rtol=RTOL, atol=ATOL)
    export_sequence_model(model, x, tmp_path)


SEQUENCE_CASES = {
    "conv1d": lambda: [layers.Conv1D(4, 3)],
    "conv1d-same-strided-relu": lambda: [layers.Conv1D(4, 4, strides=2, padding="same", activation="relu")],
    "conv1d-causal-dilated-no-bias": lambda: [layers.Conv1D(3, 3, padding="causal", dilation_rate=2, use_bias=False)],
    "conv1d-softmax": lambda: [layers.Conv1D(4, 1, activation="softmax")],  # over the channels
    "max-pooling1d": lambda: [layers.MaxPooling1D(2)],
    "max-pooling1d-same": lambda: [layers.MaxPooling1D(3, strides=2, padding="same")],
    "average-pooling1d": lambda: [layers.AveragePooling1D(3, strides=1)],
    "average-pooling1d-same": lambda: [layers.AveragePooling1D(2, padding="same")],  # a window over the end
    "global-average-pooling1d": lambda: [layers.GlobalAveragePooling1D(), layers.Dense(2)],
    "global-average-pooling1d-keepdims": lambda: [layers.GlobalAveragePooling1D(keepdims=True)],
    "global-max-pooling1d": lambda: [layers.Conv1D(4, 3), layers.GlobalMaxPooling1D(), layers.Dense(2)],
    "global-max-pooling1d-keepdims": lambda: [layers.GlobalMaxPooling1D(keepdims=True)],
    "conv1d-explicit-padding": lambda: [layers.Conv1D(4, 3, strides=2, padding=1), layers.Conv1D(2, 2, padding=(0, 3))],
    # Dense on each step (Keras's Dense of a 3-D input): MatMul(+Add), since Gemm takes matrices only.
    "dense-per-step": lambda: [layers.Dense(5, activation="relu")],
    "dense-per-step-no-bias-softmax": lambda: [layers.Conv1D(4, 3), layers.Dense(3, use_bias=False,
                                                                                 activation="softmax")],
    "1d-cnn": lambda: [layers.Conv1D(6, 5, padding="same"), layers.BatchNormalization(), layers.ReLU(),
                       layers.MaxPooling1D(2), layers.Conv1D(8, 3, activation="relu"), layers.AveragePooling1D(2),
                       layers.Flatten(), layers.Dropout(0.5), layers.Dense(4, activation="softmax")],
    # A Pad, Slice and nearest Resize of the steps (axis 1, no Transpose). The Pad before a Conv
    # stays a ZeroPadding1D: in convforge's files it is not a Conv's padding.
    "zero-padding1d-conv1d": lambda: [layers.ZeroPadding1D((2, 1)), layers.Conv1D(4, 3)],
    "conv1d-cropping1d": lambda: [layers.Conv1D(4, 3), layers.Cropping1D((1, 3))],
    "upsampling1d-pooling": lambda: [layers.UpSampling1D(3), layers.MaxPooling1D(2)],
    "steps-layers-dense": lambda: [layers.ZeroPadding1D(1), layers.Cropping1D(2), layers.UpSampling1D(),
                                   layers.Flatten(), layers.Dense(2)],
    # DepthwiseConv1D: a grouped 1-D Conv (group = channels); SeparableConv1D: that, then a Conv of
    # kernel size 1 (back as DepthwiseConv1D + Conv1D); Conv1DTranspose: a 1-D ConvTranspose.
    "depthwise-conv1d": lambda: [layers.DepthwiseConv1D(3, depth_multiplier=2)],
    "depthwise-conv1d-same-strided-relu": lambda: [layers.DepthwiseConv1D(4, strides=2, padding="same",
                                                                          activation="relu")],
    "depthwise-conv1d-causal-dilated-no-bias": lambda: [layers.DepthwiseConv1D(3, padding="causal", dilation_rate=2,
                                                                               use_bias=False)],
    "separable-conv1d": lambda: [layers.SeparableConv1D(4, 3, depth_multiplier=2)],
    "separable-conv1d-same-strided-relu": lambda: [layers.SeparableConv1D(5, 3, strides=2, padding="same",
                                                                          activation="relu", use_bias=False)],
    "conv1d-transpose": lambda: [layers.Conv1DTranspose(4, 3)],
    "conv1d-transpose-same-strided-relu": lambda: [layers.Conv1DTranspose(4, 4, strides=2, padding="same",
                                                                          activation="relu")],
    "conv1d-transpose-stride-over-kernel": lambda: [layers.Conv1DTranspose(2, 2, strides=3, use_bias=False)],
    "conv1d-transpose-output-padding": lambda: [layers.Conv1DTranspose(2, 4, strides=3, padding="same",
                                                                       output_padding=2),
                                                layers.Conv1DTranspose(3, 3, strides=2, output_padding=1)],
    "1d-autoencoder": lambda: [layers.SeparableConv1D(6, 3, padding="same", activation="relu"), layers.MaxPooling1D(2),
                               layers.DepthwiseConv1D(3, padding="same"), layers.Conv1DTranspose(3, 2, strides=2)],
}


def _imported_kinds(kinds):
    """The layer kinds a model's file imports back as: a SeparableConv1D is two Convs, a
    DepthwiseConv1D and a Conv1D (as SeparableConv2D's come back as DepthwiseConv2D + Conv2D)."""
    return [k for kind in kinds for k in (["DepthwiseConv1D", "Conv1D"] if kind == "SeparableConv1D" else [kind])]


@pytest.mark.parametrize("make", SEQUENCE_CASES.values(), ids=SEQUENCE_CASES.keys())
def test_sequence_layers_export(make, tmp_path):
    """Found by a review: Conv1D, MaxPooling1D, AveragePooling1D and GlobalAveragePooling1D had no
    exporter, so no 1-D CNN (sound, text) could leave convforge. They are ONNX's 1-D Conv and
    pooling between two transposes (batch, steps, channels) <-> (batch, channels, steps)."""
    model = seeded([layers.Input(shape=(11, 3)), *make()])
    randomise_statistics(model)
    proto = export_sequence_model(model, images((4, 11, 3)), tmp_path)
    for n in (1, 7):  # the batch stays dynamic
        x = images((n, 11, 3), seed=n)
        np.testing.assert_allclose(run_ort(tmp_path / "sequences.onnx", x), model.predict(x, verbose=0), rtol=RTOL,
                                   atol=ATOL)
    kernels = [list(a.ints) for n in proto.graph.node for a in n.attribute if a.name == "kernel_shape"]
    assert all(len(k) == 1 for k in kernels), kernels  # ONNX's 1-D ops, not 2-D ones on height-1 images


def test_sequence_graph_and_a_pytorch_style_sequence_input(tmp_path):
    # Branches of Conv1D joined by Concatenate and Add on sequences import as a graph model.
    inp = layers.Input(shape=(12, 3))
    a = layers.Conv1D(4, 3, padding="same")(inp)
    b = layers.Conv1D(2, 5, padding="causal")(inp)
    y = layers.Concatenate()([a, b])
    y = layers.Add()([layers.Conv1D(6, 1)(y), y])
    model = convforge.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D()(y)))
    _, back = round_trip(model, images((3, 12, 3)), tmp_path)
    assert [type(layer).__name__ for layer in back.layers].count("Conv1D") == 3
    # PyTorch's Conv1d reads (batch, channels, steps) as it comes: a Conv1D with
    # data_format='channels_first' (it was refused, naming the shape).
    rng = np.random.default_rng(0)
    path = save_graph(tmp_path / "ncw.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1, 1])],
                      [numpy_helper.from_array(rng.standard_normal((4, 3, 3)).astype(np.float32), "w")],
                      input_shape=("n", 3, 10))
    model = convforge.load_model(path)
    conv = model.layers[0]
    assert (type(conv).__name__, conv.data_format, conv.padding, model.output_shape) == \
        ("Conv1D", "channels_first", "same", (None, 4, 10))
    x = images((2, 3, 10))
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)
    # input_layout is the layout of images: for a sequence it was silently ignored.
    with pytest.raises(ValueError, match=r"input_layout='channels_last' is the layout of image inputs and outputs; "
                                         r"the inputs of .* are \('batch', 3, 10\)"):
        convforge.load_model(path, input_layout="channels_last")


CHANNELS_FIRST_SEQUENCE_CASES = {
    "conv1d": lambda: [layers.Conv1D(4, 3, data_format="channels_first")],
    "conv1d-causal-relu": lambda: [layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu",
                                                 data_format="channels_first")],
    "conv1d-softmax-over-steps": lambda: [layers.Conv1D(4, 3, activation="softmax", data_format="channels_first")],
    "conv1d-pytorch-padding": lambda: [layers.Conv1D(4, 3, strides=2, padding=1, data_format="channels_first")],
    "pooling": lambda: [layers.MaxPooling1D(3, strides=2, padding="same", data_format="channels_first"),
                        layers.AveragePooling1D(2, padding="same", data_format="channels_first")],
    "batchnorm-relu": lambda: [layers.Conv1D(5, 3, data_format="channels_first"), layers.BatchNormalization(axis=1),
                               layers.ReLU()],
    "global-average": lambda: [layers.GlobalAveragePooling1D(data_format="channels_first"), layers.Dense(2)],
    "global-max-keepdims": lambda: [layers.GlobalMaxPooling1D(keepdims=True, data_format="channels_first")],
    "1d-cnn": lambda: [layers.Conv1D(6, 5, padding="same", data_format="channels_first"),
                       layers.BatchNormalization(axis=1), layers.ReLU(),
                       layers.MaxPooling1D(2, data_format="channels_first"),
                       layers.Conv1D(8, 3, activation="relu", data_format="channels_first"), layers.Flatten(),
                       layers.Dense(4, activation="softmax")],
    "zero-padding1d-conv1d": lambda: [layers.ZeroPadding1D((0, 2), data_format="channels_first"),
                                      layers.Conv1D(4, 3, data_format="channels_first")],
    "steps-layers": lambda: [layers.Conv1D(4, 3, data_format="channels_first"),
                             layers.Cropping1D((2, 1), data_format="channels_first"),
                             layers.UpSampling1D(2, data_format="channels_first"),
                             layers.ZeroPadding1D(1, data_format="channels_first"), layers.Flatten(), layers.Dense(2)],
    "depthwise-conv1d-pytorch-padding": lambda: [layers.DepthwiseConv1D(3, padding=1, depth_multiplier=2,
                                                                        data_format="channels_first")],
    "separable-conv1d": lambda: [layers.SeparableConv1D(4, 3, strides=2, padding="same", depth_multiplier=2,
                                                        activation="relu", data_format="channels_first")],
    "conv1d-transpose": lambda: [layers.Conv1DTranspose(4, 4, strides=2, padding="same",
                                                        data_format="channels_first"),
                                 layers.Conv1DTranspose(2, 3, strides=3, output_padding=1,
                                                        data_format="channels_first")],
}


@pytest.mark.parametrize("make", CHANNELS_FIRST_SEQUENCE_CASES.values(), ids=CHANNELS_FIRST_SEQUENCE_CASES.keys())
def test_channels_first_sequence_layers_round_trip(make, tmp_path):
    """(batch, channels, steps) sequences are ONNX's 1-D layout: the layers export with no
    Transpose, and import back as themselves, data_format and all."""
    model = seeded([layers.Input(shape=(3, 11)), *make()])
    randomise_statistics(model)
    proto = export_sequence_model(model, images((4, 3, 11)), tmp_path)
    assert "Transpose" not in [n.op_type for n in proto.graph.node]
    def layouts(m):  # the 1-D layers' data_format, BatchNormalization's axis
        return [(kind, la.data_format if kind.endswith("1D") else la.axis)
                for la in m.layers for kind in _imported_kinds([type(la).__name__])
                if kind.endswith("1D") or kind == "BatchNormalization"]
    assert layouts(convforge.load_model(tmp_path / "sequences.onnx")) == layouts(model)


def test_a_pytorch_conv1d_network_imports_and_predicts_like_pytorch(tmp_path):
    """PyTorch's 1-D CNN (sound, text) exported by torch.onnx: Conv1d with its padding (symmetric,
    'same', dilated), BatchNorm1d (folded by the exporter), MaxPool1d, AvgPool1d,
    AdaptiveMaxPool1d(1), Flatten, Linear; and one whose BatchNorm1d stays a node."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
                        nn.Conv1d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool1d(2),
                        nn.Conv1d(16, 16, 3, padding="same", dilation=2), nn.ReLU(),
                        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    path = tmp_path / "torch1d.onnx"
    export_torch(net, (torch.randn(2, 3, 40),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    model = convforge.load_model(path)
    assert all(la.data_format == "channels_first" for la in model.layers if type(la).__name__.endswith("1D"))
    x = images((5, 3, 40))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    # A BatchNormalization node of (batch, channels, steps), a zero Pad of the steps before a Conv
    # (PyTorch's F.pad), and the mean and maximum over the steps (x.mean(dim=2), x.amax(dim=2)).
    rng = np.random.default_rng(1)
    arr = lambda name, value: numpy_helper.from_array(np.asarray(value, np.float32), name)  # noqa: E731
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["bn"], name="bn", epsilon=1e-5),
        helper.make_node("Pad", ["bn", "p"], ["pad"], name="pad"),
        helper.make_node("Conv", ["pad", "w"], ["c"], name="conv"),
        helper.make_node("ReduceMean", ["c"], ["mean"], name="mean", axes=[2], keepdims=0),
        helper.make_node("ReduceMax", ["c"], ["max"], name="max", axes=[-1], keepdims=0),
        helper.make_node("Add", ["mean", "max"], ["y"], name="sum"),
    ]
    inits = [arr("g", rng.uniform(0.5, 2, 3)), arr("b", rng.standard_normal(3)), arr("m", rng.standard_normal(3)),
             arr("v", rng.uniform(0.5, 2, 3)), numpy_helper.from_array(np.array([0, 0, 2, 0, 0, 1], np.int64), "p"),
             arr("w", rng.standard_normal((4, 3, 3)))]
    path = save_graph(tmp_path / "ncl.onnx", nodes, inits, input_shape=("n", 3, 9), opset=17)
    model = convforge.load_model(path)
    kinds = [f"{type(la).__name__}:{getattr(la, 'data_format', getattr(la, 'axis', ''))}" for la in model.layers
             if type(la).__name__ != "InputLayer"]
    assert kinds == ["BatchNormalization:1", "Conv1D:channels_first", "GlobalAveragePooling1D:channels_first",
                     "GlobalMaxPooling1D:channels_first", "Add:"], kinds
    conv = next(la for la in model.layers if type(la).__name__ == "Conv1D")
    assert conv.padding == (2, 1)  # the Pad's margins, joined to the Conv's
    x = images((3, 3, 9))
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_a_pytorch_network_that_pads_crops_and_upsamples_steps_imports(tmp_path):
    """PyTorch's F.pad, x[:, :, a:-b] and nn.Upsample of (batch, channels, steps): a Pad read by
    a Conv joins its padding; one that is not (it was refused: "before a 1-D Conv only") is a
    ZeroPadding1D, the Slice a Cropping1D, the nearest Resize an UpSampling1D."""
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.conv2, self.up = nn.Conv1d(3, 4, 3), nn.Conv1d(4, 2, 2), nn.Upsample(scale_factor=3)

        def forward(self, x):
            y = self.up(torch.relu(self.conv(x)))[:, :, 2:-1]
            return F.pad(self.conv2(F.pad(y, (1, 0))), (2, 3))

    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path / "steps.onnx"
    export_torch(net, (torch.randn(2, 3, 10),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    model = convforge.load_model(path)
    steps = [la for la in model.layers if type(la).__name__ != "ReLU"]
    assert [type(la).__name__ for la in steps] == ["Conv1D", "UpSampling1D", "Cropping1D", "Conv1D", "ZeroPadding1D"]
    assert {la.data_format for la in steps} == {"channels_first"}
    # F.pad(y, (1, 0)) before a kernel of 2 is a causal Conv1D.
    assert (steps[1].size, steps[2].cropping, steps[3].padding, steps[4].padding) == (3, (2, 1), "causal", (2, 3))
    x = images((5, 3, 10))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)


ints64 = lambda name, value: numpy_helper.from_array(np.asarray(value, np.int64), name)  # noqa: E731


@pytest.mark.parametrize("nodes,inits,expected", [
    # Of (batch, steps, channels), axis 1: channels-last layers; onnxruntime is the oracle.
    ([helper.make_node("Pad", ["x", "p"], ["y"], name="n")], [ints64("p", [0, 2, 0, 0, 1, 0])],
     ("ZeroPadding1D", "channels_last", (2, 1))),
    ([helper.make_node("Pad", ["x", "p"], ["y"], name="n")], [ints64("p", [0, -1, 0, 0, -2, 0])],
     ("Cropping1D", "channels_last", (1, 2))),
    ([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="n")],
     [ints64("s", [3]), ints64("e", [-1]), ints64("a", [-2])], ("Cropping1D", "channels_last", (3, 1))),
    ([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="n", mode="nearest", nearest_mode="floor",
                       coordinate_transformation_mode="asymmetric")],
     [numpy_helper.from_array(np.array([1, 2, 1], np.float32), "sc")], ("UpSampling1D", "channels_last", 2)),
    # On the transposed (batch, channels, steps) view a 1-D op reads (Keras's exporter's pattern),
    # axis 2 is the steps of the sequence under it.
    ([helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 1]),
      helper.make_node("Pad", ["t", "p"], ["pad"], name="n"),
      helper.make_node("MaxPool", ["pad"], ["mp"], name="mp", kernel_shape=[2]),
      helper.make_node("Transpose", ["mp"], ["y"], name="back", perm=[0, 2, 1])],
     [ints64("p", [0, 0, 1, 0, 0, 3])], ("ZeroPadding1D", "channels_last", (1, 3))),
    ([helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 1]),
      helper.make_node("Resize", ["t", "", "", "sz"], ["r"], name="n", mode="nearest"),  # ONNX's default rounding
      helper.make_node("Transpose", ["r"], ["y"], name="back", perm=[0, 2, 1])],
     [ints64("sz", [2, 3, 36])], ("UpSampling1D", "channels_last", 3)),
], ids=["pad", "negative-pad", "slice", "resize", "pad-of-view", "resize-of-view"])
def test_pad_slice_and_resize_of_steps_import_as_1d_layers(nodes, inits, expected, tmp_path):
    path = save_graph(tmp_path / "m.onnx", nodes, inits, input_shape=("n", 12, 3))
    model = convforge.load_model(path)
    name, data_format, amount = expected
    kinds = [type(la).__name__ for la in model.layers]
    assert name in kinds and "Permute" not in kinds, kinds  # the views fold away
    layer = model.layers[kinds.index(name)]
    argument = {"ZeroPadding1D": "padding", "Cropping1D": "cropping", "UpSampling1D": "size"}[name]
    assert (type(layer).__name__, layer.data_format, getattr(layer, argument)) == expected
    x = images((2, 12, 3))
    np.testing.assert_array_equal(model.predict(x, verbose=0), run_ort(path, x))


@pytest.mark.parametrize("node,inits,message", [
    (helper.make_node("Pad", ["x", "p"], ["y"], name="n"), [ints64("p", [0, 1, 1, 0, 0, 0])],
     r"pads \[0, 1, 1, 0, 0, 0\] on axes \[1, 2\]: only one axis of a sequence, its steps, is supported"),
    (helper.make_node("Pad", ["x", "p"], ["y"], name="n"), [ints64("p", [0, 0, -1, 0, 0, 2])],
     r"pads \[0, 0, -1, 0, 0, 2\] mix padding and cropping"),
    (helper.make_node("Pad", ["x", "p"], ["y"], name="n", mode="reflect"), [ints64("p", [0, 0, 1, 0, 0, 1])],
     "attribute 'mode': only zero padding of a sequence"),
    (helper.make_node("Slice", ["x", "s", "e", "a"], ["y"], name="n"), [ints64("s", [1, 1]), ints64("e", [3, 4]),
                                                                        ints64("a", [1, 2])],
     r"a slice on axes \[1, 2\]: only one axis"),
    (helper.make_node("Resize", ["x", "", "sc"], ["y"], name="n", mode="nearest"),
     [numpy_helper.from_array(np.array([1, 2, 2], np.float32), "sc")], r"scales \[1, 2, 2\] on axes \[1, 2\]"),
    (helper.make_node("Resize", ["x", "", "sc"], ["y"], name="n", mode="linear"),
     [numpy_helper.from_array(np.array([1, 1, 2], np.float32), "sc")], "attribute 'mode': only mode 'nearest'"),
], ids=["pad-two-axes", "pad-and-crop", "reflect", "slice-two-axes", "resize-two-axes", "linear"])
def test_pad_slice_and_resize_of_a_sequence_that_1d_layers_cannot_do_are_refused(node, inits, message, tmp_path):
    path = save_graph(tmp_path / "m.onnx", [node], inits, input_shape=("n", 4, 6))
    with pytest.raises(ModelFileError, match=rf"node 'n' \({node.op_type}\).*{message}"):
        convforge.load_model(path)


def test_pytorch_depthwise_conv1d_and_conv_transpose1d_import(tmp_path):
    """PyTorch's depthwise Conv1d (groups = channels, a separable audio block's first half) and
    ConvTranspose1d(kernel 4, stride 2, padding 1) (a 1-D decoder's upsampling, Keras's 'same'
    output) import as channels-first DepthwiseConv1D and Conv1DTranspose (grouped 1-D Convs were
    refused, and a 1-D ConvTranspose was taken for an image's); other groups, and negative pads,
    are refused by name."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose1d(3, 4, 4, stride=2, padding=1), nn.ReLU(),
                        nn.Conv1d(4, 8, 3, groups=4, padding=1), nn.Conv1d(8, 2, 1)).eval()
    path = tmp_path / "torch1d.onnx"
    export_torch(net, (torch.randn(2, 3, 10),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    model = convforge.load_model(path)
    kinds = [(type(la).__name__, getattr(la, "data_format", None), getattr(la, "padding", None))
             for la in model.layers if type(la).__name__ != "InputLayer"]
    assert kinds == [("Conv1DTranspose", "channels_first", "same"), ("ReLU", None, None),
                     ("DepthwiseConv1D", "channels_first", "same"), ("Conv1D", "channels_first", "valid")], kinds
    assert model.layers[-2].depth_multiplier == 2
    x = images((3, 3, 10))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    grouped = helper.make_node("Conv", ["x", "w"], ["y"], name="halves", group=2)
    path = save_graph(tmp_path / "grouped.onnx", [grouped], [weights("w", (4, 2, 3))], input_shape=("n", 4, 9))
    with pytest.raises(ModelFileError, match=r"'halves' \(Conv\), attribute 'group': grouped 1-D convolution "
                                             r"\(group=2\) other than depthwise \(group = channels\)"):
        convforge.load_model(path)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="negative", strides=[2], pads=[-1, 1])
    path = save_graph(tmp_path / "negative.onnx", [node], [weights("w", (3, 2, 3))], input_shape=("n", 3, 9))
    with pytest.raises(ModelFileError, match=r"'negative' \(ConvTranspose\), attribute 'pads': pads \[-1, 1\] "
                                             r"with output_padding \[0\]: negative pads"):
        convforge.load_model(path)


def test_keras_style_1d_graphs_import(tmp_path):
    # Keras's exporter writes a Conv1D as Transpose, Conv without bias, Transpose back and an Add of
    # the bias; 'causal' pads the sequence before the transpose and a strided 'same' pads the
    # transposed one; its BatchNormalization is Sub/Mul/Add per channel, GlobalAveragePooling1D a
    # ReduceMean over the steps. (Graphs written here as it writes them; onnxruntime is the oracle.)
    rng = np.random.default_rng(0)
    arr = lambda name, value: numpy_helper.from_array(np.asarray(value, np.float32), name)  # noqa: E731
    ints = lambda name, value: numpy_helper.from_array(np.asarray(value, np.int64), name)  # noqa: E731

    def conv1d(prefix, x, w, b, stride, pad_before_transpose=None, pad_after_transpose=None):
        nodes, t = [], x
        if pad_before_transpose is not None:
            nodes.append(helper.make_node("Pad", [t, prefix + "p"], [prefix + "pad"], name=prefix + "pad"))
            t = prefix + "pad"
        nodes.append(helper.make_node("Transpose", [t], [prefix + "t"], name=prefix + "t", perm=[0, 2, 1]))
        t = prefix + "t"
        if pad_after_transpose is not None:
            nodes.append(helper.make_node("Pad", [t, prefix + "p"], [prefix + "pad"], name=prefix + "pad"))
            t = prefix + "pad"
        nodes += [helper.make_node("Conv", [t, w], [prefix + "c"], name=prefix + "conv", strides=[stride], pads=[0, 0]),
                  helper.make_node("Transpose", [prefix + "c"], [prefix + "back"], name=prefix + "back", perm=[0, 2, 1]),
                  helper.make_node("Add", [prefix + "back", b], [prefix + "out"], name=prefix + "bias")]
        pads = pad_before_transpose if pad_before_transpose is not None else pad_after_transpose
        return nodes, [ints(prefix + "p", pads)], prefix + "out"

    causal, inits_a, a = conv1d("a_", "x", "wa", "ba", 1, pad_before_transpose=[0, 2, 0, 0, 0, 0])
    strided, inits_b, b = conv1d("b_", a, "wb", "bb", 2, pad_after_transpose=[0, 0, 0, 0, 0, 1])
    nodes = causal + strided + [
        helper.make_node("Sub", [b, "mean"], ["s"], name="bn_sub"),
        helper.make_node("Mul", ["s", "scale"], ["m"], name="bn_mul"),
        helper.make_node("Add", ["m", "beta"], ["n"], name="bn_add"),
        helper.make_node("ReduceMean", ["n"], ["y"], name="gap", axes=[1], keepdims=0),
    ]
    inits = inits_a + inits_b + [
        arr("wa", rng.standard_normal((4, 3, 3))), arr("ba", rng.standard_normal(4)),
        arr("wb", rng.standard_normal((5, 4, 3))), arr("bb", rng.standard_normal(5)),
        arr("mean", rng.standard_normal(5)), arr("scale", rng.uniform(0.5, 2, 5)), arr("beta", rng.standard_normal(5))]
    path = save_graph(tmp_path / "keras1d.onnx", nodes, inits, input_shape=("n", 12, 3), opset=17)
    model = convforge.load_model(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv1D", "Conv1D", "BatchNormalization",
                                                                  "GlobalAveragePooling1D"]
    assert [model.layers[0].padding, model.layers[1].padding] == ["causal", "same"]
    x = rng.standard_normal((2, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_keras_style_global_max_pooling1d_imports(tmp_path):
    """Keras's exporter writes GlobalMaxPooling1D as a ReduceMax over the steps of (batch, steps,
    channels) (it was refused: "only the mean over the steps is supported")."""
    for keepdims in (0, 1):
        nodes = [helper.make_node("ReduceMax", ["x", "axes"], ["y"], name="gmp", keepdims=keepdims)]
        inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
        path = save_graph(tmp_path / f"gmp{keepdims}.onnx", nodes, inits, input_shape=("n", 12, 3), opset=18)
        model = convforge.load_model(path)
        layer = model.layers[-1]
        assert (type(layer).__name__, layer.data_format, layer.keepdims) == \
            ("GlobalMaxPooling1D", "channels_last", bool(keepdims))
        x = images((2, 12, 3))
        np.testing.assert_array_equal(model.predict(x, verbose=0), run_ort(path, x))


def test_a_softmax_of_a_sequence_over_the_steps_is_not_fused_into_its_dense(tmp_path):
    # Keras's Sequential([Input((6, 4)), Dense(3), Softmax(axis=1)]) exports MatMul, Add, Softmax
    # (axis 1: the steps); it was fused as Dense(activation='softmax'), over the units (0.42 off).
    # It imports as that: a Softmax(axis=1) layer after the Dense.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    for opset, attrs in ((17, {"axis": 1}), (12, {})):  # opset < 13's default axis is 1 as well
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                 helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
                 helper.make_node("Softmax", ["a"], ["y"], name="sm", **attrs)]
        inits = [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
                 numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")]
        path = save_graph(tmp_path / f"sm{opset}.onnx", [nodes[0], nodes[1], nodes[2]], inits, input_shape=("n", 6, 4),
                          opset=opset)
        if opset < 13:  # there it is one softmax over the (steps, units) block: no layer's
            with pytest.raises(ModelFileError, match=r"'sm' \(Softmax\)"):
                convforge.load_model(path)
            continue
        model = convforge.load_model(path)
        assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Softmax"] and model.layers[1].axis == 1
        np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)
    # Over the last axis it is the Dense's own softmax.
    nodes[2] = helper.make_node("Softmax", ["a"], ["y"], name="sm", axis=-1)
    path = save_graph(tmp_path / "last.onnx", nodes, inits, input_shape=("n", 6, 4))
    model = convforge.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape, make", [
    ((5,), lambda: [layers.Dense(3), layers.ReLU(max_value=2.0, negative_slope=0.1)]),
    ((4, 4, 2), lambda: [layers.Conv2D(3, 1), layers.ReLU(max_value=0.5, negative_slope=0.2), layers.Flatten()]),
], ids=["features", "images"])
def test_relu_with_slope_and_cap_round_trips(shape, make, tmp_path):
    # LeakyRelu, then Min with the max_value: the Min by a constant was refused at import.
    model = seeded([layers.Input(shape=shape), *make()])
    _, back = round_trip(model, (images((3, *shape)) - 0.5) * 10, tmp_path)
    relu = [layer for layer in back.layers if type(layer).__name__ == "ReLU"]
    assert len(relu) == 1 and relu[0].max_value == model.layers[1].max_value
    assert relu[0].negative_slope == pytest.approx(model.layers[1].negative_slope)


RESHAPE_CASES = {
    "features-to-sequence": ((12,), lambda: [layers.Reshape((3, 4)), layers.Conv1D(2, 2), layers.Flatten(),
                                             layers.Dense(2)]),
    "image-to-sequence": ((4, 4, 2), lambda: [layers.Reshape((8, 4)), layers.Conv1D(2, 3)]),
    "features-to-image": ((32,), lambda: [layers.Reshape((4, -1, 2)), layers.Conv2D(3, 1), layers.Flatten()]),
    "image-to-image": ((4, 4, 2), lambda: [layers.Conv2D(2, 1), layers.Reshape((2, 8, 2)), layers.Conv2D(3, 1)]),
    "sequence-to-image": ((8, 4), lambda: [layers.Reshape((4, 4, 2))]),
}


@pytest.mark.parametrize("shape, make", RESHAPE_CASES.values(), ids=RESHAPE_CASES.keys())
def test_reshape_round_trips(shape, make, tmp_path):
    # Exported in Keras's element order (an image read and written channels-last); the importer
    # took flattening reshapes only (issue 17: every exportable layer round-trips).
    model = seeded([layers.Input(shape=shape), *make()])
    _, back = round_trip(model, images((3, *shape)), tmp_path)
    assert "Reshape" in [type(layer).__name__ for layer in back.layers]


def test_a_channels_first_import_reads_a_reshaped_image_in_channels_last_order(tmp_path):
    # An image's channels-last view reshaped to a sequence, imported as a channels-first model:
    # the Reshape read the NCHW image in (c, h, w) order, a silent wrong answer (found by review).
    model = seeded([layers.Input(shape=(6, 6, 3)), layers.Conv2D(4, 3), layers.Reshape((16, 4)), layers.Conv1D(2, 3)])
    x = images((3, 6, 6, 3))
    path = tmp_path / "model.onnx"
    model.export(path, input_layout="channels_first")
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(run_ort(path, x_nchw), expected, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path, input_layout="channels_first")
    np.testing.assert_allclose(back.predict(x_nchw, verbose=0), expected, rtol=RTOL, atol=ATOL)


def test_pytorch_tokens_of_an_image_import(tmp_path):
    # A conv's feature map as (batch, pixels, channels) tokens (x.permute(0, 2, 3, 1).reshape(n,
    # h * w, c)), the first step of a vision transformer's patch embedding, then a Linear.
    torch = pytest.importorskip("torch")

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.linear = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.conv(x)
            n, c, height, width = h.shape
            return self.linear(h.permute(0, 2, 3, 1).reshape(n, height * width, c))

    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    path, expected = exported_torch(Tokens().eval(), x, tmp_path)
    for layout, data in (("channels_first", x.numpy()), ("channels_last", x.numpy().transpose(0, 2, 3, 1))):
        back = convforge.load_model(path, input_layout=layout)
        np.testing.assert_allclose(back.predict(np.ascontiguousarray(data), verbose=0), expected, rtol=RTOL, atol=ATOL)


def test_a_graph_output_left_transposed_is_refused_by_name(tmp_path):
    # A sequence transposed to (batch, channels, steps) by a Conv's view, returned as it is: a
    # bare KeyError before.
    node_t = helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 1])
    node_c = helper.make_node("Conv", ["t", "w"], ["y"], name="c")
    path = save_graph(tmp_path / "open.onnx", [node_t, node_c], [weights("w", (4, 3, 3))], input_shape=("n", 5, 3))
    with pytest.raises(ModelFileError, match=r"graph output 'y' is a sequence transposed"):
        convforge.load_model(path)


CONV_TRANSPOSE_CASES = [
    dict(filters=3, kernel_size=3),
    dict(filters=3, kernel_size=(3, 2), strides=2, padding="same", activation="relu"),
    dict(filters=2, kernel_size=4, strides=(2, 3), padding="same", use_bias=False),
    dict(filters=2, kernel_size=(1, 2), strides=3, padding="same"),  # kernel < stride: output_padding
    dict(filters=2, kernel_size=2, strides=3),
    dict(filters=2, kernel_size=3, strides=2, padding="same", output_padding=1),
    dict(filters=2, kernel_size=(2, 4), strides=(2, 3), output_padding=(1, 2)),
    dict(filters=2, kernel_size=4, strides=3, padding="same", output_padding=(0, 2)),
]


@pytest.mark.parametrize("config", CONV_TRANSPOSE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_transpose_round_trip(config, tmp_path):
    """Found by a review: Conv2DTranspose (a decoder's or a U-Net's upsampling) had no exporter.
    It is ONNX's ConvTranspose, with output_padding where Keras's 'same' output is larger than the
    pads can make it; a ConvTranspose whose pads give Keras's 'valid' or 'same' output imports
    back (others are a Conv2DTranspose and a Cropping2D: test_pytorch_decoder_conv_transpose_imports),
    an output_padding not less than the strides is refused by name."""
    model = seeded([layers.Input(shape=(5, 4, 2)), layers.Conv2DTranspose(**config)])
    randomise_statistics(model)
    _, back = round_trip(model, images((3, 5, 4, 2)), tmp_path)
    assert [type(layer).__name__ for layer in back.layers] == ["Conv2DTranspose"]
    assert back.output_shape == model.output_shape
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="wide_op", strides=[2, 2], pads=[1, 1, 1, 1],
                            output_padding=[2, 1])
    path = save_graph(tmp_path / "wide_op.onnx", [node], [weights("w", (2, 3, 3, 3))])
    with pytest.raises(ModelFileError, match=r"'wide_op' \(ConvTranspose\), attribute 'pads': pads \[1, 1, 1, 1\] "
                                             r"with output_padding \[2, 1\]: negative pads, or an output_padding"):
        convforge.load_model(path)


def test_conv_transpose_import_does_not_loop_over_the_strides(tmp_path):
    """Found while adding Conv1DTranspose: the importer tried every output_padding below the
    strides, a list of strides[0] * strides[1] options built first, so a file's strides of 3000
    ran for over a minute without an answer (2**31: forever). The output size fixes the one
    output_padding of each padding. (Those pads, once refused, are now a 'valid' Conv2DTranspose
    and a Cropping2D of the top rows: found without a loop, and nothing the size of its output
    is allocated at import.)"""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="wide", strides=[3000, 3000], pads=[2, 0, 0, 0])
    path = save_graph(tmp_path / "wide.onnx", [node], [weights("w", (2, 3, 3, 3))], input_shape=("n", 2, 2, 2))
    tracemalloc.start()
    try:
        model = convforge.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2DTranspose", "Cropping2D"]
    assert model.layers[1]._margins == (2, 0, 0, 0) and model.output_shape == (None, 3, 3001, 3003)


@pytest.mark.parametrize("kernel, padding, stride, output_padding", [(3, 1, 2, 1), (5, 2, 2, 1), (5, 1, 3, 2)])
def test_pytorch_decoder_conv_transpose_imports(kernel, padding, stride, output_padding, tmp_path):
    """Found by a review: PyTorch's ConvTranspose2d(3, stride=2, padding=1, output_padding=1), a
    decoder's "double the size" step (and kernel 5, padding 2), was refused: its pads are neither
    Keras's 'valid' nor its 'same' (Keras's 'same' gives 2H too, but crops the bottom row where
    PyTorch crops the top one). It is a 'valid' Conv2DTranspose (the ReLU after it fused) and a
    Cropping2D of the rows and columns the pads cut, in either input layout; ConvTranspose1d's
    the same with Cropping1D."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                        nn.ConvTranspose2d(4, 5, kernel, stride=stride, padding=padding, output_padding=output_padding),
                        nn.ReLU(), nn.Conv2d(5, 2, 1)).eval()
    x = images((2, 3, 5, 6))
    path, expected = exported_torch(net, torch.from_numpy(x), tmp_path)
    assert expected.shape[2:] == ((5 - 1) * stride + kernel - 2 * padding + output_padding,
                                  (6 - 1) * stride + kernel - 2 * padding + output_padding)
    np.testing.assert_allclose(run_ort(path, x), expected, rtol=RTOL, atol=ATOL)
    for layout in ("channels_first", "channels_last"):
        model = convforge.load_model(path, input_layout=layout)
        assert [type(la).__name__ for la in model.layers] == ["Conv2D", "Conv2DTranspose", "Cropping2D", "Conv2D"]
        assert model.layers[1].padding == "valid" and type(model.layers[1].activation).__name__ == "ReLU"
        x_in = x if layout == "channels_first" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = model.predict(x_in, verbose=0)
        got = got if layout == "channels_first" else got.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    net1 = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ConvTranspose1d(4, 2, kernel, stride=stride, padding=padding,
                                                                output_padding=output_padding)).eval()
    path, expected = exported_torch(net1, torch.from_numpy(x[:, :, 0]), tmp_path)
    model = convforge.load_model(path)
    assert [type(la).__name__ for la in model.layers] == ["Conv1D", "Conv1DTranspose", "Cropping1D"]
    np.testing.assert_allclose(model.predict(x[:, :, 0], verbose=0), expected, rtol=RTOL, atol=ATOL)


PERMUTE_CASES = {
    "swap-height-width": (lambda: [layers.Conv2D(3, 1), layers.Permute((2, 1, 3)), layers.Conv2D(2, 1)], (4, 5, 2)),
    "channels-to-height": (lambda: [layers.Permute((3, 1, 2)), layers.Flatten(), layers.Dense(3)], (4, 5, 2)),
    "channels-first-model": (lambda: [layers.Conv2D(3, 1, data_format="channels_first"), layers.Permute((1, 3, 2)),
                                      layers.Flatten()], (2, 4, 5)),
    "sequences": (lambda: [layers.Permute((2, 1)), layers.Conv1D(2, 2)], (6, 5)),
}


SOFTMAX_CASES = {
    "channels-last-axis-1": (lambda: [layers.Conv2D(3, 1), layers.Softmax(axis=1)], (4, 5, 2)),
    "channels-last-axis-2": (lambda: [layers.Conv2D(3, 1), layers.Softmax(axis=2)], (4, 5, 2)),
    "channels-last-log-axis-1": (lambda: [layers.Conv2D(3, 1), LogSoftmax(axis=-3)], (4, 5, 2)),
    "channels-first-default": (lambda: [layers.Conv2D(3, 1, data_format="channels_first"), layers.Softmax()],
                               (2, 4, 5)),
    "channels-first-height": (lambda: [layers.Conv2D(3, 1, data_format="channels_first"), layers.Softmax(axis=2)],
                              (2, 4, 5)),
    "channels-first-channels": (lambda: [layers.Conv2D(3, 1, data_format="channels_first", activation="relu"),
                                         layers.Softmax(axis=1)], (2, 4, 5)),
    "channels-first-activation": (lambda: [layers.Conv2D(3, 1, data_format="channels_first",
                                                         activation="softmax")], (2, 4, 5)),
    "sequence-over-steps": (lambda: [layers.Conv1D(4, 2), layers.Softmax(axis=1)], (6, 3)),
    "sequence-log-over-steps": (lambda: [layers.Conv1D(4, 2), LogSoftmax(axis=1)], (6, 3)),
    "features-log": (lambda: [layers.Dense(4), layers.Activation("log_softmax")], (5,)),
}


@pytest.mark.parametrize("make, shape", SOFTMAX_CASES.values(), ids=SOFTMAX_CASES.keys())
def test_softmax_axes_round_trip(make, shape, tmp_path):
    """A Softmax goes out over its axis of the NCHW tensors: on channels-first images Keras's default
    is the width, Softmax(axis=1) the channels. Found by a review: any other axis than the
    channels or the last was refused on the way back in (issue 17: every option round-trips)."""
    model = seeded([layers.Input(shape=shape), *make()])
    x = images((3, *shape))
    path = export_checked(model, x, tmp_path)
    back = convforge.load_model(path, input_layout=model._data_format() if len(shape) == 3 else None)
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    last, = [layer for layer in model.layers if isinstance(layer, (layers.Softmax, LogSoftmax))] or [None]
    if last is not None and last.axis not in (-1, len(shape)):
        came = back.layers[-1]
        assert type(came) is type(last) and came._internal_axis(len(shape) + 1) == last._internal_axis(len(shape) + 1)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [1, 2, 3, -2])
def test_pytorch_softmax_over_any_axis_of_an_image_imports(dim, log, tmp_path):
    """PyTorch's softmax/log_softmax over any axis of an NCHW image (a segmentation head's
    dim=1, an attention map's dim=-1) imports as the layer over that axis, in either layout."""
    torch = pytest.importorskip("torch")

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return torch.log_softmax(y, dim=dim) if log else torch.softmax(y, dim=dim)

    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 5)
    path, expected = exported_torch(Head().eval(), x, tmp_path)
    first = convforge.load_model(path, input_layout="channels_first")
    np.testing.assert_allclose(first.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    last = convforge.load_model(path, input_layout="channels_last")
    got = last.predict(x.numpy().transpose(0, 2, 3, 1), verbose=0)
    np.testing.assert_allclose(got, expected.transpose(0, 2, 3, 1), rtol=RTOL, atol=ATOL)


def test_a_softmax_over_the_batch_or_flattened_axes_names_the_node(tmp_path):
    # axis 0 (the batch), and opset 11's softmax over the flattened (H, W) block: no layer runs those.
    for axis, opset in ((0, 17), (2, 11)):
        path = save_graph(tmp_path / f"s{axis}.onnx", [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=axis)],
                          input_shape=[1, 2, 4, 5], output_shape=[1, 2, 4, 5], opset=opset)
        with pytest.raises(ModelFileError, match="sm.*Softmax.*axis"):
            convforge.load_model(path)


@pytest.mark.parametrize("make, shape", PERMUTE_CASES.values(), ids=PERMUTE_CASES.keys())
def test_permute_exports(make, shape, tmp_path):
    """Found by a review: Permute had no exporter. It is one Transpose of the axes as the user
    counts them (a channels-last image read as NHWC), composed with the layout changes around it."""
    model = seeded([layers.Input(shape=shape), *make()])
    x = images((3, *shape))
    path = export_checked(model, x, tmp_path)
    back = convforge.load_model(path, input_layout=model._data_format() if len(shape) == 3 else None)
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dims", list(itertools.permutations((1, 2, 3))), ids=lambda d: "".join(map(str, d)))
def test_permute_of_images_round_trips(dims, tmp_path):
    # Exported as one Transpose that the importer refused (issue 17: every exportable layer
    # round-trips). (2, 3, 1) is NCHW -> NHWC, the channels-last view of Keras's exporter, where
    # no conv reads it: it then comes back as that view (a Flatten of it reorders the Dense).
    model = seeded([layers.Conv2D(3, 3, padding="same", input_shape=(4, 5, 2)), layers.Permute(dims),
                    layers.Conv2D(2, 1), layers.Flatten(), layers.Dense(3)])
    _, back = round_trip(model, images((3, 4, 5, 2)), tmp_path)
    assert [type(layer).__name__ for layer in back.layers][:3] == ["Conv2D", "Permute", "Conv2D"]
    assert back.layers[1].dims == dims
    flat = seeded([layers.Conv2D(3, 3, input_shape=(4, 5, 2)), layers.Permute(dims), layers.Flatten(), layers.Dense(3)])
    round_trip(flat, images((3, 4, 5, 2)), tmp_path, exact=dims != (2, 3, 1))
    # As the last layer: the same output shape and values come back.
    last = seeded([layers.Conv2D(3, 3, input_shape=(4, 5, 2)), layers.Permute(dims)])
    _, back = round_trip(last, images((3, 4, 5, 2)), tmp_path)
    assert back.output_shape == last.output_shape


def test_keras_exported_permute_imports(tmp_path):
    """Keras's exporter writes Permute as a Transpose of its channels-last view (refused: "a
    channels-last (transposed) image"), and Permute((3, 1, 2)) as the last layer as the Transpose
    to NCHW that also ends every conv (it came back as the conv's channels-last output: a shape
    that differed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        nets = {
            "inside": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3), keras.layers.Permute((2, 1, 3)),
                                        keras.layers.Conv2D(2, 1)]),
            "last": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3), keras.layers.Permute((3, 1, 2))]),
            "last-swap": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3),
                                           keras.layers.Permute((2, 1, 3))]),
            # Per-element layers after the last Permute: the output is still the permuted image
            # (it came back as the conv's channels-last image, (2, 3, 4, 4) for (2, 4, 3, 4)).
            "last-then-scale": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3),
                                                 keras.layers.Permute((3, 1, 2)), keras.layers.Rescaling(2.0, 0.5),
                                                 keras.layers.Activation("sigmoid")]),
            "last-then-relu": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3),
                                                keras.layers.Permute((3, 1, 2)), keras.layers.ReLU(max_value=1.0)]),
            # The input read by a Transpose other than to NCHW: the file is taken as NCHW, its
            # last Transpose to NHWC a Permute (it was dropped: the output came back transposed).
            "first": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Permute((2, 1, 3)),
                                       keras.layers.Conv2D(2, 1)]),
        }
        x = images((2, 5, 6, 3))
        expected = predict_and_export_keras(nets, x, tmp_path)
    for name, want in expected.items():
        model = convforge.load_model(tmp_path / f"{name}.onnx")
        assert "Permute" in [type(la).__name__ for la in model.layers], name
        got = model.predict(x, verbose=0)
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_conv1d_activation_and_a_relu_layer_round_trip(tmp_path):
    """A channels-last Conv1D's activation is written after its Transpose back and comes back as a
    layer of its own, which took the automatic name 're_lu' that the file's next ReLU layer has:
    the import failed ("a layer named 're_lu' is already in this model")."""
    model = seeded([layers.Conv1D(3, 2, strides=2, padding="causal", activation="relu", input_shape=(24, 3)),
                    layers.AveragePooling1D(2), layers.ReLU(), layers.Conv1D(2, 2, activation="relu")])
    _, back = round_trip(model, images((2, 24, 3)), tmp_path)
    assert [la.name for la in back.layers][:4] == ["conv1d", "re_lu_1", "average_pooling1d", "re_lu"]


def test_nchw_graph_ending_in_a_transpose_to_nhwc_returns_nhwc(tmp_path):
    """PyTorch's conv(x).permute(0, 2, 3, 1) as the output of an NCHW graph: the model is
    channels-first and returns its images as they are, so the Transpose is a Permute((2, 3, 1)).
    It was taken for convforge's exit transpose and dropped: (2, 3, 4, 5) for the file's
    (2, 4, 5, 3), silently."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 2, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1], name="nhwc")]
    path = save_graph(tmp_path / "nhwc.onnx", nodes, [w], input_shape=("n", 2, 4, 5))
    model = convforge.load_model(path)
    x = images((2, 2, 4, 5))
    got = model.predict(x, verbose=0)
    assert got.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_keras_flatten_read_by_other_than_a_dense_keeps_keras_order(tmp_path):
    """A channels-last flatten became convforge's (c, h, w)-order Flatten, its order made good only
    in the Dense reading it: as the output, or read by an activation or a merge first, the values
    came out in another order than Keras's, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        inp = keras.Input((6, 6, 3))
        c = keras.layers.Conv2D(4, 3)(inp)
        d = keras.layers.Conv2D(4, 1)(c)
        both = keras.layers.Concatenate()([keras.layers.Flatten()(c), keras.layers.Flatten()(d)])
        nets = {
            "output": keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()]),
            "relu-dense": keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                            keras.layers.ReLU(), keras.layers.Dense(2)]),
            "concatenate-dense": keras.Model(inp, keras.layers.Dense(3)(both)),
        }
        x = images((2, 6, 6, 3))
        expected = predict_and_export_keras(nets, x, tmp_path)
    for name, want in expected.items():
        model = convforge.load_model(tmp_path / f"{name}.onnx")
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_flatten_of_a_channels_last_view_in_an_nchw_graph(tmp_path):
    """PyTorch's torch.flatten(x.permute(0, 2, 3, 1), 1) read by a ReLU: (h, w, c) order in a
    channels-first model too."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 2, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Transpose", ["c"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["nhwc"], ["f"], axis=1),
             helper.make_node("Relu", ["f"], ["y"])]
    path = save_graph(tmp_path / "flat.onnx", nodes, [w], input_shape=("n", 2, 4, 5))
    x = images((2, 2, 4, 5))
    np.testing.assert_allclose(convforge.load_model(path).predict(x, verbose=0), run_ort(path, x), rtol=RTOL,
                               atol=ATOL)


def test_nchw_round_trip_through_a_channels_last_view_as_the_graph_output(tmp_path):
    """A PyTorch-style NCHW graph that permutes to NHWC, applies an activation and permutes back as
    its output: the model is channels-first, so that NCHW output is the conv's own (Keras's
    Permute((3, 1, 2)) reading applies to channels-last models only). It was refused ("a
    channels-last (transposed) image") once the Transpose back reached a graph output."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 2, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Transpose", ["c"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["nhwc"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=[0, 3, 1, 2], name="back")]
    path = save_graph(tmp_path / "back.onnx", nodes, [w], input_shape=("n", 2, 6, 6))
    model = convforge.load_model(path)
    x = images((2, 2, 6, 6))
    assert model.output_shape == (None, 3, 6, 6)
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_separable_conv2d_round_trip(tmp_path):
    # Comes back as DepthwiseConv2D + a 1x1 Conv2D: the same two convolutions.
    model = seeded([layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu",
                                           input_shape=(9, 8, 3))])
    randomise_statistics(model)
    _, back = round_trip(model, images((3, 9, 8, 3)), tmp_path, exact=False)
    assert [type(layer).__name__ for layer in back.layers] == ["DepthwiseConv2D", "Conv2D"]


def test_pytorch_batchnorm_depthwise_padding_global_pool_import(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ZeroPad2d((1, 0, 2, 1)), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 6), nn.BatchNorm1d(6),
    )
    for module in net.modules():  # statistics that matter
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.rand(4, 3, 10, 9)
    path = tmp_path / "net.onnx"
    export_torch(net, (x,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    with torch.no_grad():
        expected = net(x).numpy()
    model = convforge.load_model(path)
    names = [type(layer).__name__ for layer in model.layers]
    assert "DepthwiseConv2D" in names and "BatchNormalization" in names and "ZeroPadding2D" in names, names
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=1e-4, atol=1e-5)


needs_graphs = pytest.mark.skipif(not hasattr(convforge, "Model"), reason="this convforge has no graph models")


def residual_model():
    """The README's graph: residual blocks, a projection shortcut, Concatenate, and the other merges."""

    def residual(x, filters, stride=1):
        h = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        h = layers.Conv2D(filters, 3, padding="same")(h)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride)(x)
        return layers.ReLU()(layers.Add()([h, x]))

    convforge.seed(2)
    inputs = convforge.Input(shape=(12, 10, 3))
    h = residual(layers.Conv2D(8, 3, padding="same", activation="relu")(inputs), 8)
    h = residual(h, 12, stride=2)
    a, b = layers.Conv2D(6, 1)(h), layers.Conv2D(6, 3, padding="same")(h)
    merged = layers.Average()([layers.Multiply()([a, b]), layers.Subtract()([a, b]), layers.Add()([a, b, a]),
                               layers.Maximum()([a, b]), layers.Minimum()([b, a, b])])
    h = layers.Concatenate()([merged, layers.Conv2D(4, 1, activation="tanh")(h)])
    outputs = layers.Dense(5, activation="softmax")(layers.Flatten()(h))
    return convforge.Model(inputs, outputs)


@needs_graphs
def test_graph_model_round_trip(tmp_path):
    model = residual_model()
    proto, back = round_trip(model, images((3, 12, 10, 3)), tmp_path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Add", "Sub", "Mul", "Mean", "Max", "Min", "Concat"} <= ops
    assert type(back).__name__ == "Functional" and back.count_params() == model.count_params()


@needs_graphs
def test_resnet_example_round_trip(tmp_path):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "train_resnet.py")
    spec = importlib.util.spec_from_file_location("train_resnet", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    convforge.seed(4)
    model = example.resnet(widths=(8, 12), input_shape=(16, 16, 1))
    randomise_statistics(model)
    proto, back = round_trip(model, images((3, 16, 16, 1)), tmp_path)
    assert {"BatchNormalization", "GlobalAveragePool", "Add"} <= {n.op_type for n in proto.graph.node}
    assert [layer.name for layer in back.layers[1:]] == [layer.name for layer in model.layers[1:]]  # past Input


@needs_graphs
def test_pytorch_residual_block_imports_as_graph_model(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.c1, self.c2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Linear(8 * 6 * 6 * 2, 4)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            y = torch.relu(self.c2(torch.relu(self.c1(x))) + x)
            return self.head(torch.flatten(torch.cat([y, x], dim=1), 1))

    torch.manual_seed(0)
    net = Block().eval()
    x = torch.rand(2, 3, 6, 6)
    path = tmp_path / "block.onnx"
    export_torch(net, (x,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    with torch.no_grad():
        expected = net(x).numpy()
    model = convforge.load_model(path)  # a graph model takes channels-last images
    assert model.input_shape == (None, 6, 6, 3)
    np.testing.assert_allclose(model.predict(x.numpy().transpose(0, 2, 3, 1), verbose=0), expected, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ModelFileError, match="channels-last input only"):
        convforge.load_model(path, input_layout="channels_first")


def two_in_two_out():
    """An image and a vector in; class probabilities and a regression out."""
    convforge.seed(5)
    image = convforge.Input(shape=(8, 8, 2), name="image")
    meta = convforge.Input(shape=(3,), name="meta")
    h = layers.GlobalAveragePooling2D()(layers.Conv2D(6, 3, padding="same", activation="relu")(image))
    h = layers.Concatenate()([h, layers.Dense(4, activation="relu")(meta)])
    classes = layers.Dense(4, activation="softmax", name="classes")(h)
    score = layers.Dense(1, name="score")(h)
    return convforge.Model([image, meta], [classes, score])


@needs_graphs
def test_several_inputs_and_outputs_round_trip(tmp_path):
    model = two_in_two_out()
    rng = np.random.default_rng(6)
    x = [rng.standard_normal((5, 8, 8, 2)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)]
    expected = model.predict(x, verbose=0)
    path = tmp_path / "two.onnx"
    model.export(path)
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run(None, dict(zip([i.name for i in session.get_inputs()], x)))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path)
    assert [tuple(t.shape) for t in back.inputs] == [(None, 8, 8, 2), (None, 3)]
    assert [tuple(t.shape) for t in back.outputs] == [(None, 4), (None, 1)]
    for g, e in zip(back.predict(x, verbose=0), expected):
        np.testing.assert_array_equal(g, e)
    assert back.count_params() == model.count_params()
    # One output of a graph whose other output is the image tensor itself (an output also read
    # by a layer): both come back, the feature map channels-last.
    convforge.seed(7)
    image = convforge.Input(shape=(6, 6, 2))
    fmap = layers.Conv2D(3, 3, activation="relu")(image)
    model = convforge.Model(image, [fmap, layers.Dense(2)(layers.Flatten()(fmap))])
    model.export(path)
    back = convforge.load_model(path)
    for g, e in zip(back.predict(x[0][:, :6, :6], verbose=0), model.predict(x[0][:, :6, :6], verbose=0)):
        np.testing.assert_array_equal(g, e)


@needs_graphs
def test_pytorch_two_input_model_imports_and_predicts_like_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.meta = nn.Linear(3, 5)
            self.head = nn.Linear(4 * 5 * 5 + 5, 2)

        def forward(self, image, meta):
            h = torch.flatten(torch.relu(self.conv(image)), 1)
            return self.head(torch.cat([h, torch.relu(self.meta(meta))], dim=1)), torch.sigmoid(self.meta(meta))

    torch.manual_seed(0)
    net = TwoInputs().eval()
    image, meta = torch.rand(3, 2, 5, 5), torch.rand(3, 3)
    path = tmp_path / "two_inputs.onnx"
    export_torch(net, (image, meta), path, input_names=["image", "meta"], output_names=["logits", "gate"],
                 dynamic_axes={"image": {0: "n"}, "meta": {0: "n"}})
    with torch.no_grad():
        expected = [t.numpy() for t in net(image, meta)]
    model = convforge.load_model(path)  # a graph model takes channels-last images
    assert [tuple(t.shape) for t in model.inputs] == [(None, 5, 5, 2), (None, 3)]
    got = model.predict([image.numpy().transpose(0, 2, 3, 1), meta.numpy()], verbose=0)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def lenet(**kw):
    return seeded(
        [
            layers.Conv2D(6, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="tanh"),
            layers.Dense(10, activation="softmax"),
        ],
        **kw,
    )


@pytest.mark.parametrize("opset", range(13, 22))
def test_every_opset_round_trips(opset, tmp_path):
    proto, _ = round_trip(lenet(), images((2, 28, 28, 1)), tmp_path, opset=opset)
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", opset)}


def test_graph_layout_metadata_and_dynamic_batch(tmp_path):
    model = lenet(name="lenet5")
    path = tmp_path / "lenet.onnx"
    model.export(path)
    proto = onnx.load(path)
    assert proto.producer_name == "convforge" and proto.producer_version == convforge.__version__
    assert proto.graph.name == "lenet5"
    (entry,) = [n for n in proto.graph.node if n.op_type == "Transpose"]  # one transpose, at the entry
    assert entry.input[0] == proto.graph.input[0].name
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [28, 28, 1]
    assert [n.op_type for n in proto.graph.node if n.op_type != "Transpose"] == [
        "Conv", "Relu", "MaxPool", "Conv", "Relu", "AveragePool", "Flatten", "Gemm", "Relu", "Gemm", "Tanh", "Gemm",
        "Softmax",
    ]
    for n in (1, 7):
        x = images((n, 28, 28, 1), seed=n)
        np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path)
    assert back.name == "lenet5" and [layer.name for layer in back.layers] == [
        layer.name for layer in model.layers if not isinstance(layer, layers.Dropout)
    ]


def test_a_generator_of_nchw_images_from_features_or_sequences_returns_them_as_the_file(tmp_path):
    """A channels-first model of flat or sequence input and image output (a GAN's generator)
    exports NCHW images, but came back as a channels-last model returning them NHWC (its
    Reshape's image permuted to a channels-last view), and input_layout was refused for its
    non-image input. An NCHW image output now makes a channels-first model; input_layout says
    the model's data_format; a channels-last model's file (its exit Transpose) stays one."""
    generator = seeded([layers.Input((48,)), layers.Reshape((3, 4, 4)),
                        layers.Conv2D(2, 3, data_format="channels_first")])
    _, back = round_trip(generator, images((2, 48)), tmp_path)
    assert back._data_format() == "channels_first" and back.output_shape == (None, 2, 2, 2)
    from_steps = seeded([layers.Input((6, 8)), layers.Conv1D(8, 1), layers.Reshape((3, 4, 4)),
                         layers.Conv2DTranspose(3, 3, strides=2, padding="same", data_format="channels_first",
                                                activation="tanh")])
    round_trip(from_steps, images((2, 6, 8)), tmp_path)
    x = images((2, 48))
    nchw = generator.predict(x, verbose=0)
    path = tmp_path / "model.onnx"
    generator.export(path)
    for layout, want in ((None, nchw), ("channels_first", nchw), ("channels_last", nchw.transpose(0, 2, 3, 1))):
        model = convforge.load_model(path, input_layout=layout)
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL, err_msg=str(layout))
    channels_last = seeded([layers.Input((48,)), layers.Reshape((4, 4, 3)), layers.Conv2D(2, 3)])
    _, back = round_trip(channels_last, x, tmp_path)  # written to path: its image output ends in the exit Transpose
    assert back._data_format() == "channels_last"
    nhwc = channels_last.predict(x, verbose=0)
    for layout in ("channels_last", "channels_first"):  # the file's NHWC output either way
        model = convforge.load_model(path, input_layout=layout)
        assert model._data_format() == layout
        np.testing.assert_allclose(model.predict(x, verbose=0), nhwc, rtol=RTOL, atol=ATOL, err_msg=layout)
    # PyTorch's generator: Linear, x.view(-1, C, H, W), ConvTranspose2d; NCHW out, as PyTorch's.
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.up = nn.Linear(8, 32), nn.ConvTranspose2d(2, 3, 4, 2, 1)

        def forward(self, z):
            return torch.tanh(self.up(torch.relu(self.fc(z)).view(-1, 2, 4, 4)))

    torch.manual_seed(0)
    z = torch.randn(3, 8)
    path, expected = exported_torch(Generator().eval(), z, tmp_path)
    model = convforge.load_model(path)
    assert model.output_shape == (None, 3, 8, 8)
    np.testing.assert_allclose(model.predict(z.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)


def test_input_layouts(tmp_path):
    x = images((3, 10, 8, 2))
    model = seeded([layers.Conv2D(3, 3, padding="same", input_shape=(10, 8, 2)), layers.MaxPooling2D(2)])
    proto, back = round_trip(model, x, tmp_path, input_layout="channels_first")
    assert "Transpose" not in {n.op_type for n in proto.graph.node}
    assert back.input_shape == (None, 10, 8, 2)
    nchw = seeded([layers.Conv2D(3, 3, input_shape=(2, 10, 8), data_format="channels_first"), layers.Flatten(),
                   layers.Dense(4)])
    round_trip(nchw, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), tmp_path)
    round_trip(nchw, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), tmp_path, input_layout="channels_last")


def test_one_channel_images_without_channel_axis(tmp_path):
    model = seeded([layers.Conv2D(2, 3, input_shape=(8, 8)), layers.Flatten(), layers.Dense(3)])
    x = images((4, 8, 8))
    path = tmp_path / "m.onnx"
    model.export(path)
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(convforge.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))


def test_reshape_exports_in_keras_order(tmp_path):
    model = seeded([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), layers.Reshape((-1,)), layers.Dense(2)])
    x = images((2, 6, 6, 2))
    path = tmp_path / "m.onnx"
    model.export(path)
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    # It comes back as Flatten (convforge's order) and a Dense whose kernel rows are permuted.
    back = convforge.load_model(path)
    assert [type(layer).__name__ for layer in back.layers] == ["Conv2D", "Flatten", "Dense"]
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_float64_model_exports_float32(tmp_path):
    model = lenet(dtype="float64")
    x = images((2, 28, 28, 1)).astype(np.float64)
    path = tmp_path / "m.onnx"
    model.export(path)
    assert {t.data_type for t in onnx.load(path).graph.initializer} == {TensorProto.FLOAT}
    np.testing.assert_allclose(run_ort(path, x.astype(np.float32)), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_layer_without_exporter_is_named_and_registration_plugs_it_in(tmp_path):
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.add_weight("alpha", (input_shape[0], 1, 1), initializer="ones")

        def forward(self, x, training=False):
            return x * self.params["alpha"]

    model = seeded([layers.Conv2D(3, 3, input_shape=(6, 6, 1)), Scale(name="my_scale"), layers.Flatten()])
    with pytest.raises(ValueError, match=r"layer 'my_scale' \(Scale\).*register_exporter"):
        model.export(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()

    def export_scale(ctx, layer, inputs):
        return ctx.node("Mul", [inputs[0], ctx.initializer("alpha", layer.params["alpha"])])

    register_exporter(Scale, export_scale)
    model.layers[1].params["alpha"][...] = np.array([1.0, -2.0, 0.5]).reshape(3, 1, 1)
    model.export(tmp_path / "m.onnx")
    x = images((2, 6, 6, 1))
    np.testing.assert_allclose(run_ort(tmp_path / "m.onnx", x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


def test_a_layer_its_exporter_refuses_is_named(tmp_path):
    """Found by a review: an exporter's refusal (a ReLU's negative_slope or threshold, as a layer or
    as a Dense's activation) did not say which layer it was, in a model of many ReLUs."""
    for refused in (layers.ReLU(threshold=0.2, name="thresholded"),
                    layers.Dense(2, activation=layers.ReLU(threshold=0.5), name="dense_thresholded")):
        model = seeded([layers.Input(shape=(4,)), layers.Dense(3), layers.ReLU(), refused])
        with pytest.raises(ValueError, match=rf"cannot export layer '{refused.name}' \({type(refused).__name__}\) to "
                                             "ONNX: cannot export a ReLU with a threshold"):
            model.export(tmp_path / "m.onnx")
        assert not (tmp_path / "m.onnx").exists()


def test_export_takes_keras_arguments(tmp_path, capsys):
    """Found by a review: Keras's model.export(path, format="onnx", verbose=False) and its
    opset_version= raised a bare TypeError (unexpected keyword argument)."""
    model = lenet()
    path = tmp_path / "m.onnx"
    model.export(path, "onnx", False, opset_version=15)
    assert {o.version for o in onnx.load(path).opset_import} == {15} and capsys.readouterr().out == ""
    model.export(path, format="onnx", verbose=True, input_signature=None)
    assert capsys.readouterr().out == f"Saved artifact at '{path}'.\n"
    with pytest.raises(TypeError, match="opset and opset_version .* give one"):
        model.export(path, opset=15, opset_version=15)
    with pytest.raises(ValueError, match="opset must be from 13 to 21; got 12"):
        model.export(path, opset_version=12)
    with pytest.raises(ValueError, match="input_signature must be None"):
        model.export(path, format="onnx", input_signature=[np.zeros((1, 28, 28, 1), np.float32)])


def test_export_argument_errors(tmp_path):
    model = lenet()
    with pytest.raises(ValueError, match="format must be 'onnx'"):
        model.export(tmp_path / "m", format="tf_saved_model")
    with pytest.raises(ValueError, match="opset must be from 13 to 21; got 12"):
        model.export(tmp_path / "m.onnx", opset=12)
    with pytest.raises(TypeError, match="opset must be an int"):
        model.export(tmp_path / "m.onnx", opset=17.0)
    with pytest.raises(ValueError, match="input_layout must be 'channels_last' or 'channels_first'; got 'nhwc'"):
        model.export(tmp_path / "m.onnx", input_layout="nhwc")
    with pytest.raises(ValueError, match="not built"):
        convforge.Sequential([layers.Dense(2)]).export(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="input_layout is for ONNX files"):
        convforge.load_model(tmp_path / "m.npz", input_layout="channels_last")


# ---------------------------------------------------------------------------
# Models from PyTorch's exporter
# ---------------------------------------------------------------------------


def torch_lenet(flatten: str):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 6, 5, padding=2)
            self.s2 = nn.MaxPool2d(2)
            self.c3 = nn.Conv2d(6, 16, 5)
            self.s4 = nn.AvgPool2d(2, ceil_mode=True)
            self.f5, self.f6, self.out = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = self.s2(torch.relu(self.c1(x)))
            x = self.s4(torch.tanh(self.c3(x)))
            x = x.view(-1, 400) if flatten == "view" else torch.flatten(x, 1)
            x = torch.sigmoid(self.f6(torch.relu(self.f5(x))))
            return torch.softmax(self.out(x), dim=1)

    torch.manual_seed(0)
    return torch, LeNet5().eval()


@pytest.mark.parametrize("flatten", ["view", "flatten"])
def test_pytorch_lenet5_imports_and_predicts_like_pytorch(flatten, tmp_path):
    torch, net = torch_lenet(flatten)
    x = torch.rand(5, 1, 28, 28)
    path = tmp_path / "lenet_torch.onnx"
    export_torch(net, (x,), path, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    with torch.no_grad():
        expected = net(x).numpy()
    model = convforge.load_model(path)  # NCHW, as PyTorch takes it
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "AveragePooling2D", "Flatten", "Dense", "Dense", "Dense"
    ]
    assert model.layers[0].activation.activation_name == "relu"
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=1e-5, atol=1e-6)
    keras_style = convforge.load_model(path, input_layout="channels_last")
    assert keras_style.input_shape == (None, 28, 28, 1)
    np.testing.assert_allclose(
        keras_style.predict(x.numpy().transpose(0, 2, 3, 1), verbose=0), expected, rtol=1e-5, atol=1e-6
    )
    # ... and it can go on training in convforge.
    keras_style.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    keras_style.fit(x.numpy().transpose(0, 2, 3, 1), np.arange(5) % 10, epochs=1, verbose=0)


@pytest.mark.parametrize("entry, sample, channels", [
    ("view", (28, 28), 1),        # MNIST as (batch, 28, 28), x.view(-1, 1, 28, 28) in forward
    ("reshape", (784,), 1),       # flat pixels, x.reshape(-1, 1, 28, 28)
    ("view", (3 * 8 * 8,), 3),    # flat colour pixels, x.view(x.size(0), 3, 8, 8): (c, h, w) order
    ("reshape", (12, 16), 3),
])
def test_pytorch_reshape_to_an_image_before_the_first_conv_imports(entry, sample, channels, tmp_path):
    """The reshape to NCHW that a PyTorch model makes of its flat or (height, width) input was taken
    for Keras's channels-last Reshape, and the Conv after it refused the "channels-last image"."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    side = 28 if channels == 1 else 8

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(channels, 4, 3, padding=1)
            self.fc = nn.Linear(4 * (side // 2) ** 2, 5)

        def forward(self, x):
            image = (x.view(-1, channels, side, side) if entry == "view"
                     else x.reshape(x.shape[0], channels, side, side))
            return self.fc(torch.flatten(torch.max_pool2d(torch.relu(self.conv(image)), 2), 1))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(3, *sample)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    assert model.input_shape == (None, *sample)
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    # Several channels need their (c, h, w) order moved to the layers' channels-last view: the
    # same values in any other order would fail the comparison above.
    kinds = [type(la).__name__ for la in model.layers]
    entry_layers = ["Reshape", "Conv2D"] if channels == 1 else ["Reshape", "Permute", "Conv2D"]
    assert kinds[: len(entry_layers)] == entry_layers, kinds
    round_trip(model, x.numpy(), tmp_path)


def test_a_reshape_of_an_nchw_image_to_a_sequence_imports(tmp_path):
    """A channels-first model's Reshape of an image to a sequence is a Reshape of the NCHW tensor,
    (c, h, w) order, read by a channels-first Conv1D as it is: it exported, but the import refused
    it ("reshape to [0, 2, 16] of a ('batch', 2, 4, 4) tensor"). So is PyTorch's x.flatten(2) of
    a feature map before a Conv1d, whichever layout the model takes."""
    x = images((2, 3, 4, 4))
    for reshape, conv1d in (((2, 16), layers.Conv1D(3, 2, data_format="channels_first")),
                            ((16, 2), layers.Conv1D(3, 2))):
        model = seeded([layers.Input((3, 4, 4)), layers.Conv2D(2, 1, data_format="channels_first"),
                        layers.Reshape(reshape), conv1d])
        _, back = round_trip(model, x, tmp_path)
        assert [type(la).__name__ for la in back.layers] == ["Conv2D", "Reshape", "Conv1D"]
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.conv1d = nn.Conv2d(3, 4, 3), nn.Conv1d(4, 2, 3)

        def forward(self, x):
            return self.conv1d(torch.relu(self.conv(x)).flatten(2))

    torch.manual_seed(0)
    path, expected = exported_torch(Net().eval(), torch.from_numpy(images((2, 3, 6, 5))), tmp_path)
    for layout in ("channels_first", "channels_last"):
        model = convforge.load_model(path, input_layout=layout)
        x_in = images((2, 3, 6, 5)) if layout == "channels_first" else np.ascontiguousarray(
            images((2, 3, 6, 5)).transpose(0, 2, 3, 1))
        np.testing.assert_allclose(model.predict(x_in, verbose=0), expected, rtol=RTOL, atol=ATOL, err_msg=layout)


@pytest.mark.parametrize("target", [(1, 16, 16), (2, 16, 8)])
def test_pytorch_reshape_of_an_image_to_another_image_in_a_graph(target, tmp_path):
    """Found by the second reviewer: a feature map reshaped to another NCHW image before a conv,
    in a graph model (channels-last at the API): the Reshape read the (h, w, c) view where the
    file reshapes (c, h, w), and predict was off by ~1.7 (the file had been refused before)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(target[0], 2, 3)

        def forward(self, x):
            a = self.c1(x)
            b = self.c2(a.reshape(a.shape[0], *target))
            return torch.flatten(b, 1), b  # two outputs: a graph model

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3, 8, 8)
    path, (flat, image) = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    got_flat, got_image = model.predict(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), verbose=0)
    np.testing.assert_allclose(got_flat, flat, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got_image, image.transpose(0, 2, 3, 1), rtol=RTOL, atol=ATOL)


def test_pytorch_graph_of_an_unsqueezed_input_imports(tmp_path):
    """A graph (two outputs) whose (batch, height, width) input PyTorch's x.unsqueeze(1) gives a
    channel: a Sequential took it at its entry, the graph model's Conv2D refused (batch, 28, 28)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 3, 5), nn.Linear(3 * 8 * 8, 4)

        def forward(self, x):
            maps = torch.relu(self.conv(x.unsqueeze(1)))
            return self.fc(torch.flatten(maps, 1)), maps

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 12, 12)
    path, (logits, maps) = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    assert model.input_shape == (None, 12, 12)
    got_logits, got_maps = model.predict(x.numpy(), verbose=0)
    np.testing.assert_allclose(got_logits, logits, rtol=RTOL, atol=ATOL)
    # A graph model returns its images channels-last.
    np.testing.assert_allclose(got_maps, maps.transpose(0, 2, 3, 1), rtol=RTOL, atol=ATOL)


def test_pytorch_mnist_example_with_log_softmax_imports(tmp_path):
    """pytorch/examples' MNIST network ends in F.log_softmax: LogSoftmax was not an op convforge
    imported. It is Keras's Activation('log_softmax') now, and exports back as LogSoftmax."""
    torch = pytest.importorskip("torch")
    nn, functional = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, 1), nn.Conv2d(8, 16, 3, 1)
            self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
            self.fc1, self.fc2 = nn.Linear(16 * 6 * 6, 32), nn.Linear(32, 10)

        def forward(self, x):
            x = functional.max_pool2d(functional.relu(self.conv2(functional.relu(self.conv1(x)))), 2)
            x = functional.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))
            return functional.log_softmax(self.fc2(self.dropout2(x)), dim=1)

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(4, 1, 16, 16)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    last = model.layers[-1]
    assert type(last).__name__ == "Activation" and last.activation.activation_name == "log_softmax"
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    proto, _ = round_trip(model, x.numpy(), tmp_path)
    assert [n.op_type for n in proto.graph.node][-1] == "LogSoftmax"


def test_pytorch_silu_and_padded_average_import(tmp_path):
    """PyTorch's nn.SiLU is Mul(x, Sigmoid(x)): a Multiply of two tensors, so the import made a
    graph model, which takes channels-last input, and predict refused the file's NCHW images.
    AvgPool2d(3, 1, padding=1) (Inception's pooling branch) counts the padding's zeros by default
    (count_include_pad=True), which the import refused."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(), nn.AvgPool2d(3, 1, padding=1),
                        nn.AvgPool2d(2, 2, padding=1), nn.Conv2d(8, 4, 1), nn.SiLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 5)).eval()
    x = torch.randn(3, 3, 16, 16)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    assert isinstance(model, convforge.Sequential) and model.input_shape == (None, 3, 16, 16)
    kinds = [type(la).__name__ for la in model.layers]
    assert kinds.count("Swish") == 2 and kinds.count("ZeroPadding2D") == 2, kinds
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), run_ort(path, x.numpy()), rtol=RTOL, atol=ATOL)


def test_pytorch_resnet_stem_max_pool_imports_and_round_trips(tmp_path):
    # torchvision's ResNet stem: Conv2d(3, 64, 7, 2, 3), BN, ReLU, MaxPool2d(3, 2, padding=1).
    # On an even size the pool's windows start one row and column before the image, which Keras's
    # 'same' (padding at the bottom/right) does not have: it was refused, so no torchvision-style
    # ResNet imported. MaxPooling2D's explicit padding has those windows; MaxPool1d's too.
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(8, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).eval()
    x = torch.randn(3, 3, 32, 32)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    pools = [la for la in model.layers if type(la).__name__ == "MaxPooling2D"]
    assert [p._explicit_padding() for p in pools] == [(1, 1), (1, 1)]
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    # Exported back: the same windows in onnxruntime, and imported again.
    (tmp_path / "back").mkdir()
    round_trip(model, x.numpy(), tmp_path / "back")
    net1 = nn.Sequential(nn.Conv1d(2, 3, 3), nn.MaxPool1d(3, 2, 1)).eval()
    s = torch.randn(2, 2, 10)
    path, expected = exported_torch(net1, s, tmp_path)
    model = convforge.load_model(path)
    assert [la.padding for la in model.layers if type(la).__name__ == "MaxPooling1D"] == [1]
    np.testing.assert_allclose(model.predict(s.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)


def test_explicit_max_pooling_round_trips(tmp_path):
    model = seeded([layers.Input(shape=(8, 9, 2)), layers.MaxPooling2D(3, 2, padding=(1, 0)), layers.Conv2D(3, 1)])
    round_trip(model, images((2, 8, 9, 2)), tmp_path)
    model = seeded([layers.Input(shape=(9, 2)), layers.MaxPooling1D(3, 2, padding=1), layers.Conv1D(3, 1)])
    round_trip(model, images((2, 9, 2)), tmp_path)


def test_pytorch_ceil_mode_average_without_padding_imports(tmp_path):
    # AvgPool2d(2, ceil_mode=True) on an odd size: count_include_pad=1 (PyTorch's default) counts
    # only pads, and there are none; its last windows average the input's values alone, as Keras's
    # 'same' pooling does. It was refused as "averages that count the padding".
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AvgPool2d(2, ceil_mode=True)).eval()
    x = torch.randn(2, 3, 9, 9)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)


def test_messages_show_the_batch_and_a_1d_pooling_s_own_pads(tmp_path):
    # A reshape's dynamic batch was shown as the importer's placeholder (-1099511627776), and a
    # 1-D pooling's pads in the 2-D form the importer checks them in.
    torch = pytest.importorskip("torch")
    shuffle = type("Shuffle", (torch.nn.Module,), {
        "forward": lambda self, x: x.view(x.shape[0], 2, 2, 4, 4).transpose(1, 2).reshape(x.shape[0], 4, 4, 4)})
    path, _ = exported_torch(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), shuffle()).eval(),
                             torch.randn(2, 3, 4, 4), tmp_path)
    with pytest.raises(ModelFileError, match=r"reshape to \[batch, 2, 2, 4, 4\]"):
        convforge.load_model(path)
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 1), torch.nn.AvgPool1d(3, 2, 1)).eval()
    path, _ = exported_torch(net, torch.randn(2, 2, 8), tmp_path)
    with pytest.raises(ModelFileError, match=r"pads \[1, 1\] with ceil_mode=0"):
        convforge.load_model(path)


@pytest.mark.parametrize("opset", [13, 17])
def test_pytorch_mobilenet_v3_and_selu_activations_import(opset, tmp_path):
    """nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.Mish and nn.Softsign were refused (HardSwish,
    HardSigmoid, Selu, Abs not imported; Hardswish before opset 14 and Mish before 18 are
    formulas: x * HardSigmoid(x), x * tanh(softplus(x))). Each is Keras's activation of that name."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Hardswish(), nn.Conv2d(8, 8, 1), nn.Hardsigmoid(),
                        nn.Conv2d(8, 8, 1), nn.SELU(), nn.Conv2d(8, 8, 1), nn.Mish(), nn.Conv2d(8, 4, 1),
                        nn.Softsign(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = 3 * torch.randn(3, 3, 8, 8)  # past the hard activations' corners at -3 and 3
    path, expected = exported_torch(net, x, tmp_path, opset_version=opset)
    model = convforge.load_model(path)
    assert isinstance(model, convforge.Sequential)
    names = [la.activation_name for la in model.layers if hasattr(la, "activation_name")]
    assert names == ["hard_silu", "hard_sigmoid", "selu", "mish", "softsign"], names
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    round_trip(model, x.numpy(), tmp_path, opset=opset)


def test_hard_sigmoid_and_selu_other_constants_are_refused(tmp_path):
    # ONNX's HardSigmoid default slope 0.2 is Keras 2's, not Keras 3's 1/6.
    for node, attribute in ((helper.make_node("HardSigmoid", ["x"], ["y"], name="h"), "alpha"),
                            (helper.make_node("Selu", ["x"], ["y"], name="s", gamma=2.0), "gamma")):
        path = save_graph(tmp_path / "m.onnx", [node], input_shape=("n", 5))
        with pytest.raises(ModelFileError, match=rf"node '{node.name}' \({node.op_type}\), attribute '{attribute}'"):
            convforge.load_model(path)


def keras_on_torch():
    """Keras 3 on the torch backend (its ONNX export runs torch's exporter), seeded; else skip."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, its ONNX export here needs torch")
    keras.utils.set_random_seed(0)
    return keras


def test_keras_exported_upsampling_and_1d_layers_import(tmp_path):
    """Keras's exporter writes UpSampling2D as np.repeat along height then width (Unsqueeze, Expand,
    Reshape on the channels-last view, the Expand's target behind Where/Equal shape arithmetic) and
    GlobalMaxPooling1D as a ReduceMax over the steps: both were refused ("Unsqueeze is only supported
    on constants", "only the mean over the steps")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        net = keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                keras.layers.UpSampling2D((2, 3)), keras.layers.Conv2D(3, 1),
                                keras.layers.UpSampling2D(2), keras.layers.Conv2D(2, 3)])
        x = images((2, 5, 6, 3))
        expected = np.asarray(net.predict(x, verbose=0))
        net.export(tmp_path / "up.onnx", format="onnx", verbose=False)
        seq = keras.Sequential([keras.Input((12, 3)), keras.layers.Conv1D(4, 3, activation="relu"),
                                keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(2)])
        x_seq = images((3, 12, 3))
        expected_seq = np.asarray(seq.predict(x_seq, verbose=0))
        seq.export(tmp_path / "seq.onnx", format="onnx", verbose=False)
    model = convforge.load_model(tmp_path / "up.onnx")
    kinds = [(type(la).__name__, getattr(la, "size", None)) for la in model.layers]
    assert kinds == [("Conv2D", None), ("UpSampling2D", (2, 3)), ("Conv2D", None), ("UpSampling2D", (2, 2)),
                     ("Conv2D", None)], kinds  # one layer each, as in Keras
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    model = convforge.load_model(tmp_path / "seq.onnx")
    assert [type(la).__name__ for la in model.layers] == ["Conv1D", "ReLU", "GlobalMaxPooling1D", "Dense"]
    np.testing.assert_allclose(model.predict(x_seq, verbose=0), expected_seq, rtol=RTOL, atol=ATOL)


def test_keras_exported_channels_first_1d_layers_import(tmp_path):
    """Keras's exporter writes a channels-first Conv1D as the Conv and an Add of a (1, filters, 1)
    bias, and a BatchNormalization(axis=1) as Sub/Mul/Add of (1, channels, 1) constants, with no
    Transpose: both were refused ("a constant of shape (1, 4, 1) ... only one value per
    channel"). The bias joins the Conv1D, the affine is a BatchNormalization(axis=1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        fmt = {"data_format": "channels_first"}
        net = keras.Sequential([keras.Input((3, 16)), keras.layers.Conv1D(4, 3, strides=2, padding="same", **fmt),
                                keras.layers.BatchNormalization(axis=1), keras.layers.ReLU(),
                                keras.layers.Conv1D(5, 3, padding="causal", **fmt),
                                keras.layers.GlobalMaxPooling1D(**fmt), keras.layers.Dense(2)])
        bn = net.layers[1]
        bn.set_weights([np.random.default_rng(i).uniform(0.5, 1.5, w.shape) for i, w in enumerate(bn.get_weights())])
        x = images((2, 3, 16))
        expected = np.asarray(net.predict(x, verbose=0))
        net.export(tmp_path / "cf.onnx", format="onnx", verbose=False)
    model = convforge.load_model(tmp_path / "cf.onnx")
    kinds = [(type(la).__name__, getattr(la, "data_format", None) or getattr(la, "axis", None)) for la in model.layers]
    assert kinds == [("Conv1D", "channels_first"), ("BatchNormalization", 1), ("ReLU", None),
                     ("Conv1D", "channels_first"), ("GlobalMaxPooling1D", "channels_first"), ("Dense", None)], kinds
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_a_per_channel_constant_of_channels_first_sequences_imports(tmp_path):
    """A (channels, 1) constant on (batch, channels, steps) scales or shifts each channel (axis 1),
    and a (steps,) one each step as before (both shapes are 4 here, so the axis is the shape's)."""
    for shape in ((4, 1), (1, 4, 1), (4,)):
        c = numpy_helper.from_array(np.arange(1.0, 5.0, dtype=np.float32).reshape(shape), "c")
        nodes = [helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
        path = save_graph(tmp_path / "affine.onnx", nodes, [c], input_shape=("n", 4, 4))
        x = images((2, 4, 4))
        model = convforge.load_model(path)
        np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL,
                                   err_msg=str(shape))


def test_repeats_of_nchw_images_and_their_refusals(tmp_path):
    """The same Unsqueeze -> Expand -> Reshape of an NCHW image (no view) is UpSampling2D too (one
    axis: one layer); a repeat of the channels, an Unsqueeze read by something else, or an Expand
    that repeats more than the new axis are refused, naming the node."""
    def graph(name, axis, expand, reshape, shape=("n", 2, 3, 4)):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                 helper.make_node("Unsqueeze", ["c", "axes"], ["u"], name="unsq"),
                 helper.make_node("Expand", ["u", "target"], ["e"], name="expand"),
                 helper.make_node("Reshape", ["e", "shape"], ["y"], name="merge")]
        ints = lambda n, v: numpy_helper.from_array(np.array(v, np.int64), n)  # noqa: E731
        inits = [numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 2, 1, 1)).astype(np.float32),
                                         "w"), ints("axes", [axis]), ints("target", expand), ints("shape", reshape)]
        return save_graph(tmp_path / f"{name}.onnx", nodes, inits, input_shape=shape)
    path = graph("width", 4, [1, 1, 1, 1, 3], [-1, 2, 3, 12])  # NCHW, a new axis after the width
    model = convforge.load_model(path)
    assert [getattr(la, "size", None) for la in model.layers if type(la).__name__ == "UpSampling2D"] == [(1, 3)]
    x = images((2, 2, 3, 4))
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ModelFileError, match=r"node 'unsq' \(Unsqueeze\).*repeats no height or width"):
        convforge.load_model(graph("channels", 2, [1, 1, 2, 1, 1], [-1, 4, 3, 4]))
    with pytest.raises(ModelFileError, match=r"node 'expand' \(Expand\).*is not a repeat of the new axis alone"):
        convforge.load_model(graph("two-axes", 4, [1, 1, 2, 1, 3], [-1, 2, 3, 12]))  # the height doubled too
    with pytest.raises(ModelFileError, match=r"node 'merge' \(Reshape\).*does not merge the repeated axis"):
        convforge.load_model(graph("tile", 4, [1, 1, 1, 1, 3], [-1, 2, 9, 4]))


def test_repeats_of_sequences_and_their_refusals(tmp_path):
    """Unsqueeze -> Expand -> Reshape repeating axis 2 of (batch, channels, steps) is an
    UpSampling1D of channels-first sequences (axis 1: channels-last, Keras's); a new axis before
    both axes repeats none and is refused, naming the node."""
    def graph(name, axis, expand, reshape):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                 helper.make_node("Unsqueeze", ["c", "axes"], ["u"], name="unsq"),
                 helper.make_node("Expand", ["u", "target"], ["e"], name="expand"),
                 helper.make_node("Reshape", ["e", "shape"], ["y"], name="merge")]
        inits = [numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 3, 2)).astype(np.float32), "w"),
                 ints64("axes", [axis]), ints64("target", expand), ints64("shape", reshape)]
        return save_graph(tmp_path / f"{name}.onnx", nodes, inits, input_shape=("n", 3, 6))
    path = graph("steps", -1, [1, 1, 1, 4], [0, 2, 20])  # the 5 steps of the Conv's output, 4 times each
    model = convforge.load_model(path)
    layer = model.layers[-1]
    assert (type(layer).__name__, layer.size, layer.data_format) == ("UpSampling1D", 4, "channels_first")
    x = images((2, 3, 6))
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ModelFileError, match=r"node 'unsq' \(Unsqueeze\).*new axis at 1 of a \('batch', 2, 5\) "
                                             r"sequence repeats no axis"):
        convforge.load_model(graph("before", 1, [1, 3, 1, 1], [0, 6, 5]))


def test_keras_exported_softmax_over_height_or_width_imports(tmp_path):
    # Keras's exporter runs an image's softmax on its NHWC view: over the height or the width it
    # was refused ("over other axes than the channels").
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        x = images((2, 5, 6, 3))
        nets = {f"axis{axis}": keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                                 keras.layers.Softmax(axis=axis)]) for axis in (1, 2, -1)}
        expected = predict_and_export_keras(nets, x, tmp_path)
    for name, want in expected.items():
        model = convforge.load_model(tmp_path / f"{name}.onnx")
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL, err_msg=name)


def predict_and_export_keras(nets: dict, x, tmp_path) -> dict:
    """Each Keras model's predict of ``x``, by name, and its export to ``tmp_path / f"{name}.onnx"``."""
    expected = {}
    for name, net in nets.items():
        expected[name] = np.asarray(net.predict(x, verbose=0))
        net.export(tmp_path / f"{name}.onnx", format="onnx", verbose=False)
    return expected


def test_keras_exported_model_imports_and_predicts_like_keras(tmp_path):
    # Keras's exporter (torch backend) wraps each conv/pool in NHWC <-> NCHW transposes, adds the
    # bias after the transpose, casts everything to float and flattens in (h, w, c) order through
    # Shape/Gather/Unsqueeze/Concat/Reshape: the importer folds all of it back into the layers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        net = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 5, activation="tanh"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(84, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ])
        x = images((4, 28, 28, 1))
        expected = np.asarray(net.predict(x, verbose=0))
        net.export(tmp_path / "keras.onnx", format="onnx", verbose=False)
        # A graph: the input read by two transposes, merged channels-last views, an image output.
        i = keras.Input((10, 9, 3))
        y = keras.layers.Add()([keras.layers.Conv2D(4, 3, padding="same", activation="relu")(i),
                                keras.layers.Conv2D(4, 1)(i)])
        graph = keras.Model(i, keras.layers.MaxPooling2D(2)(y))
        x_graph = images((2, 10, 9, 3))
        expected_graph = np.asarray(graph.predict(x_graph, verbose=0))
        graph.export(tmp_path / "graph.onnx", format="onnx", verbose=False)
        # Two inputs, two outputs.
        a, b = keras.Input((8, 8, 2)), keras.Input((3,))
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, padding="same", activation="relu")(a))
        h = keras.layers.Concatenate()([h, keras.layers.Dense(4)(b)])
        two = keras.Model([a, b], [keras.layers.Dense(3, activation="softmax")(h), keras.layers.Dense(1)(h)])
        x_two = [images((4, 8, 8, 2)), images((4, 3), seed=1)]
        expected_two = [np.asarray(t) for t in two.predict(x_two, verbose=0)]
        two.export(tmp_path / "two.onnx", format="onnx", verbose=False)
    model = convforge.load_model(tmp_path / "keras.onnx")
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "AveragePooling2D", "Flatten", "Dense", "Dense"
    ]
    assert model.count_params() == net.count_params()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    if hasattr(convforge, "Model"):
        model = convforge.load_model(tmp_path / "graph.onnx")
        np.testing.assert_allclose(model.predict(x_graph, verbose=0), expected_graph, rtol=1e-5, atol=1e-6)
        model = convforge.load_model(tmp_path / "two.onnx")
        for got, expected in zip(model.predict(x_two, verbose=0), expected_two):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_keras_exported_1d_padding_cropping_and_upsampling_import(tmp_path):
    """Keras's exporter writes ZeroPadding1D and Cropping1D as a Pad and a Slice of (batch, steps,
    channels): the Pad before its Conv1D's transpose joins the Conv1D's padding; the other (it
    was refused: "before a 1-D Conv only") is a ZeroPadding1D, the Slice a Cropping1D. Its
    UpSampling1D is np.repeat of the steps (Unsqueeze, Expand, Reshape), as its UpSampling2D's
    repeats: an UpSampling1D."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        net = keras.Sequential([keras.Input((12, 3)), keras.layers.ZeroPadding1D((2, 1)),
                                keras.layers.Conv1D(4, 3, activation="relu"), keras.layers.Cropping1D((1, 2)),
                                keras.layers.UpSampling1D(3), keras.layers.MaxPooling1D(2),
                                keras.layers.ZeroPadding1D(1), keras.layers.GlobalAveragePooling1D()])
        x = images((3, 12, 3))
        expected = np.asarray(net.predict(x, verbose=0))
        net.export(tmp_path / "keras1d.onnx", format="onnx", verbose=False)
    model = convforge.load_model(tmp_path / "keras1d.onnx")
    kinds = [type(layer).__name__ for layer in model.layers if type(layer).__name__ != "ReLU"]
    assert kinds == ["Conv1D", "Cropping1D", "UpSampling1D", "MaxPooling1D", "ZeroPadding1D",
                     "GlobalAveragePooling1D"], kinds
    assert (model.layers[0].padding, model.layers[0].data_format) == ((2, 1), "channels_last")
    assert {getattr(la, "size", 3) for la in model.layers} == {3}
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_keras_exported_batchnorm_global_pooling_and_stride_2_conv_import(tmp_path):
    """Keras's exporter writes BatchNormalization as Sub(mean), Mul(scale), Add(beta) on the
    channels-last view, global pooling as ReduceMean/ReduceMax over height and width, a stride-2
    'same' conv's pads from Shape() of constants, 'same' max pooling as an edge Pad, a depthwise
    conv's bias reshaped by Shape() of the input, ZeroPadding2D and Cropping2D as Pad and Slice of
    the channels-last view: they import as those layers."""
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        cases = {}
        # An edge Pad, then MaxPool; a bias reshaped by Shape() of the input; Pad and Slice of
        # the channels-last view.
        others = {
            "max_pool_same": [keras.layers.Conv2D(4, 1), keras.layers.MaxPooling2D(3, strides=2, padding="same")],
            "depthwise": [keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")],
            "pad_crop": [keras.layers.Conv2D(2, 1), keras.layers.ZeroPadding2D(((1, 2), (0, 1))),
                         keras.layers.Cropping2D(((2, 0), (1, 1)))],
        }
        for name, middle in others.items():
            net = keras.Sequential([keras.Input((9, 8, 3)), *middle, keras.layers.Flatten(), keras.layers.Dense(2)])
            x = images((3, 9, 8, 3))
            cases[name] = (x, np.asarray(net.predict(x, verbose=0)))
            net.export(tmp_path / f"{name}.onnx", format="onnx", verbose=False)
        for pool in ("avg", "max", "avg_keepdims"):
            pooling = {"avg": keras.layers.GlobalAveragePooling2D(), "max": keras.layers.GlobalMaxPooling2D(),
                       "avg_keepdims": keras.layers.GlobalAveragePooling2D(keepdims=True)}[pool]
            net = keras.Sequential([keras.Input((9, 8, 3)), keras.layers.Conv2D(4, 3, strides=2, padding="same"),
                                    keras.layers.BatchNormalization(), keras.layers.ReLU(), pooling,
                                    keras.layers.Flatten(), keras.layers.Dense(2)])
            net.layers[1].set_weights([rng.uniform(0.5, 1.5, 4), rng.standard_normal(4), rng.standard_normal(4),
                                       rng.uniform(0.5, 2.0, 4)])
            x = images((3, 9, 8, 3))
            cases[pool] = (x, np.asarray(net.predict(x, verbose=0)))
            net.export(tmp_path / f"{pool}.onnx", format="onnx", verbose=False)
    for pool, (x, expected) in cases.items():
        model = convforge.load_model(tmp_path / f"{pool}.onnx")
        names = [type(layer).__name__ for layer in model.layers]
        if pool in others:
            want = {"max_pool_same": ["Conv2D", "MaxPooling2D"], "depthwise": ["DepthwiseConv2D"],
                    "pad_crop": ["Conv2D", "ZeroPadding2D", "Cropping2D"]}[pool]
            assert names[: len(want)] == want, names
            assert pool != "max_pool_same" or model.layers[1].padding == "same"
            np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
            continue
        assert names[1:4] == ["Conv2D", "BatchNormalization", "ReLU"] or names[:3] == [
            "Conv2D", "BatchNormalization", "ReLU"], names
        assert ("GlobalMaxPooling2D" if pool == "max" else "GlobalAveragePooling2D") in names
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_keras_exported_average_imports_as_one_average_layer(tmp_path):
    """Found by a review: Keras's exporter writes ``layers.Average()([a, b, c])`` as
    ``Div(Add(Add(a, b), c), 3)``, refused at the Div. The chain of Adds, each the next one's only
    reader, ending in a Div by the count of its terms is one Average layer (of images, on the
    channels-last views; of features); PyTorch's ``(a + b) / 2`` of NCHW images too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        a = keras.Input((5, 6, 3))
        branches = [keras.layers.Conv2D(4, 3, padding="same")(a), keras.layers.Conv2D(4, 1)(a),
                    keras.layers.Conv2D(4, 1, activation="relu")(a)]
        images_net = keras.Model(a, keras.layers.Conv2D(2, 1)(keras.layers.Average()(branches)))
        f = keras.Input((8,))
        features_net = keras.Model(f, keras.layers.Average()([keras.layers.Dense(3)(f), keras.layers.Dense(3)(f)]))
        x, features = images((2, 5, 6, 3)), images((2, 8), seed=1)
        expected = predict_and_export_keras({"images": images_net}, x, tmp_path)
        expected.update(predict_and_export_keras({"features": features_net}, features, tmp_path))
    ops = [n.op_type for n in onnx.load(tmp_path / "images.onnx").graph.node]
    assert ops.count("Div") == 1 and ops.count("Add") >= 2
    # A graph model takes channels-last images only (input_layout='channels_first' is refused for
    # any graph: "the graph is not a chain").
    model = convforge.load_model(tmp_path / "images.onnx")
    names = [type(la).__name__ for la in model.layers]
    assert names.count("Average") == 1 and "Add" not in names, names
    np.testing.assert_allclose(model.predict(x, verbose=0), expected["images"], rtol=1e-5, atol=1e-5)
    model = convforge.load_model(tmp_path / "features.onnx")
    assert [type(la).__name__ for la in model.layers][-1] == "Average"
    np.testing.assert_allclose(model.predict(features, verbose=0), expected["features"], rtol=1e-5, atol=1e-5)

    torch = pytest.importorskip("torch")

    class Mean2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.left, self.right = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 4, 1)

        def forward(self, t):
            return (self.left(t) + self.right(t)) / 2

    torch.manual_seed(0)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    path, want = exported_torch(Mean2().eval(), torch.from_numpy(nchw), tmp_path)
    model = convforge.load_model(path)
    assert [type(la).__name__ for la in model.layers][-1] == "Average"
    np.testing.assert_allclose(model.predict(x, verbose=0).transpose(0, 3, 1, 2), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "scalar"])
def test_division_by_constants_imports_as_an_affine(per_channel, tmp_path):
    """Found by a review: PyTorch's forward normalisation ``(x - mean) / std`` (ImageNet's per-channel
    constants, or scalars) and a Div of an output by a constant were refused (Div was not imported);
    Keras's Normalization layer exports as Sub and Div of the channels-last view. A Div by a
    per-channel or scalar constant is the affine Sub/Mul/Add by such constants already import as,
    x * (1 / c) (an ulp from x / c), and joins the affine before it: one BatchNormalization, in
    either input layout. A constant divided by a tensor, and a divisor of 0, are refused by name."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            if per_channel:
                self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
            else:
                self.mean, self.std = 0.5, 0.25
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv((x - self.mean) / self.std) / 7.0

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((2, 3, 6, 7)).astype(np.float32)
    path, expected = exported_torch(Normalised().eval(), torch.from_numpy(x), tmp_path)
    assert [n.op_type for n in onnx.load(path).graph.node].count("Div") == 2
    for layout in ("channels_first", "channels_last"):
        model = convforge.load_model(path, input_layout=layout)
        assert [type(la).__name__ for la in model.layers] == ["BatchNormalization", "Conv2D", "BatchNormalization"]
        x_in = x if layout == "channels_first" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = model.predict(x_in, verbose=0)
        got = got if layout == "channels_first" else got.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        mean, variance = ([0.4, 0.5, 0.6], [0.04, 0.09, 0.01]) if per_channel else (0.5, 0.04)
        net = keras.Sequential([keras.Input((6, 7, 3)), keras.layers.Normalization(mean=mean, variance=variance),
                                keras.layers.Conv2D(2, 3)])
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        expected = predict_and_export_keras({"keras": net}, x_nhwc, tmp_path)["keras"]
    for layout in ("channels_last", "channels_first"):  # the output is NHWC, as the file's
        model = convforge.load_model(tmp_path / "keras.onnx", input_layout=layout)
        assert [type(la).__name__ for la in model.layers][:2] == ["BatchNormalization", "Conv2D"]
        got = model.predict(x_nhwc if layout == "channels_last" else x, verbose=0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    zero = [numpy_helper.from_array(np.float32(0.0), "zero")]
    for name, inputs, message in (("over_x", ["zero", "x"], "only a computed tensor divided by a constant"),
                                  ("by_zero", ["x", "zero"], "a divisor of 0")):
        path = save_graph(tmp_path / f"{name}.onnx", [helper.make_node("Div", inputs, ["y"], name=name)], zero)
        with pytest.raises(ModelFileError, match=rf"node '{name}' \(Div\): {message}"):
            convforge.load_model(path)


def test_keras_exported_elementwise_first_layer_reads_a_channels_last_input(tmp_path):
    """Keras's exporter applies an elementwise first layer (ReLU, an activation, Rescaling's Mul and
    Add) to the NHWC graph input, before its Transpose to NCHW: the input is a channels-last view
    all the same. It was taken as NCHW, so input_layout='channels_last' made a model of
    (height, channels, width) input, or (height = width = channels) silently wrong answers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        firsts = {"relu": keras.layers.ReLU(), "silu": keras.layers.Activation("silu"),
                  "rescaling": keras.layers.Rescaling(0.5, offset=-0.25),
                  "two": [keras.layers.Rescaling(2.0), keras.layers.LeakyReLU(0.2)]}
        nets = {name: keras.Sequential([keras.Input((4, 4, 4)), *(first if isinstance(first, list) else [first]),
                                        keras.layers.Conv2D(3, 3), keras.layers.Flatten(), keras.layers.Dense(2)])
                for name, first in firsts.items()}
        x = images((2, 4, 4, 4))  # height = width = channels: a transposed input still fits
        expected = predict_and_export_keras(nets, x, tmp_path)
    for name in nets:
        for layout in (None, "channels_last", "channels_first"):
            model = convforge.load_model(tmp_path / f"{name}.onnx", input_layout=layout)
            x_in = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "channels_first" else x
            np.testing.assert_allclose(model.predict(x_in, verbose=0), expected[name], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}, input_layout={layout}")


def test_keras_exported_padding_cropping_or_batchnorm_first_imports(tmp_path):
    """Keras's exporter writes a first ZeroPadding2D, Cropping2D or BatchNormalization as a Pad,
    Slice or Sub/Mul/Add of the NHWC graph input, before its Transpose to NCHW (a ResNet's stem:
    ZeroPadding2D(3), then a 7x7 stride-2 Conv2D). Taken as NCHW, the input's Pad was refused
    as "padding the batch or channel axis"; the input is a channels-last view."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        la = keras.layers
        firsts = {"resnet_stem": [la.ZeroPadding2D(3), la.Conv2D(4, 7, strides=2, use_bias=False),
                                  la.BatchNormalization(), la.ReLU(), la.ZeroPadding2D(1), la.MaxPooling2D(3, 2)],
                  "crop": [la.Cropping2D(((2, 1), (0, 3))), la.Conv2D(4, 3)],
                  "batchnorm": [la.BatchNormalization(), la.Conv2D(4, 3, strides=2)]}
        nets = {name: keras.Sequential([keras.Input((12, 12, 3)), *first, la.GlobalAveragePooling2D(), la.Dense(2)])
                for name, first in firsts.items()}
        nets["batchnorm"].layers[0].set_weights([np.linspace(0.5, 1.5, 3), np.linspace(-1, 1, 3),
                                                 np.linspace(-0.5, 0.5, 3), np.linspace(0.5, 2.0, 3)])
        x = images((2, 12, 12, 3))
        expected = predict_and_export_keras(nets, x, tmp_path)
    kinds = {"resnet_stem": "ZeroPadding2D", "crop": "Cropping2D", "batchnorm": "BatchNormalization"}
    for name in nets:
        for layout in (None, "channels_first"):
            model = convforge.load_model(tmp_path / f"{name}.onnx", input_layout=layout)
            assert type(model.layers[0]).__name__ == kinds[name], model.layers
            x_in = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "channels_first" else x
            np.testing.assert_allclose(model.predict(x_in, verbose=0), expected[name], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}, input_layout={layout}")


def test_per_channel_affines_and_reductions_import_on_nchw_tensors(tmp_path):
    """The same ops on an NCHW tensor (no Keras views): Sub, Mul and Add of per-channel
    constants join into one BatchNormalization; ReduceMean over (2, 3) keepdims is global pooling;
    a constant that is not per channel, or a reduction over the channels, is refused by name."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    per_channel = [numpy_helper.from_array(rng.standard_normal((1, 3, 1, 1)).astype(np.float32), n)
                   for n in ("m", "s", "b")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Sub", ["r", "m"], ["t1"], name="sub"),
             helper.make_node("Mul", ["t1", "s"], ["t2"], name="mul"),
             helper.make_node("Add", ["b", "t2"], ["t3"], name="add"),
             helper.make_node("ReduceMean", ["t3"], ["y"], name="mean", axes=[2, 3], keepdims=1)]
    path = save_graph(tmp_path / "affine.onnx", nodes, per_channel, input_shape=("n", 3, 5, 5), opset=13)
    model = convforge.load_model(path, input_layout="channels_last")
    assert [type(layer).__name__ for layer in model.layers][-2:] == ["BatchNormalization", "GlobalAveragePooling2D"]
    got = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL)
    bad = numpy_helper.from_array(rng.standard_normal((1, 3, 5, 1)).astype(np.float32), "m")
    path = save_graph(tmp_path / "bad.onnx", [helper.make_node("Sub", ["x", "m"], ["y"], name="sub")], [bad],
                      input_shape=("n", 3, 5, 5))
    with pytest.raises(ModelFileError, match=r"node 'sub' \(Sub\): a constant of shape \(1, 3, 5, 1\)"):
        convforge.load_model(path)
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    path = save_graph(tmp_path / "edge.onnx", [helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode="edge")],
                      [pads], input_shape=("n", 3, 5, 5))
    with pytest.raises(ModelFileError, match=r"node 'pad' \(Pad\), attribute 'mode': edge padding is supported before"):
        convforge.load_model(path)
    path = save_graph(tmp_path / "wide.onnx", [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="edge"),
                                               helper.make_node("MaxPool", ["p"], ["y"], name="pool", kernel_shape=[1, 1])],
                      [pads], input_shape=("n", 3, 5, 5))
    with pytest.raises(ModelFileError, match=r"only margins narrower than the window"):
        convforge.load_model(path)
    path = save_graph(tmp_path / "chan.onnx", [helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[1])],
                      input_shape=("n", 3, 5, 5), opset=13)
    with pytest.raises(ModelFileError, match=r"node 'mean' \(ReduceMean\), attribute 'axes': a reduction over axes"):
        convforge.load_model(path)


# ---------------------------------------------------------------------------
# Unsupported ops and attributes: ModelFileError naming node, op and attribute
# ---------------------------------------------------------------------------


def save_graph(path, nodes, initializers=(), input_shape=("n", 2, 6, 6), output_shape=None, opset=17, **graph_kw):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        initializer=list(initializers),
        **graph_kw,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def weights(name, shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


@pytest.mark.parametrize(
    "node, inits, message",
    [
        (helper.make_node("Conv", ["x", "w"], ["y"], name="c1", group=4), [weights("w", (4, 1, 3, 3))],
         r"node 'c1' \(Conv\), attribute 'group'"),
        (helper.make_node("Conv", ["x", "w"], ["y"], name="c2", foo=1), [weights("w", (4, 2, 3, 3))],
         r"node 'c2' \(Conv\), attribute 'foo': this attribute is not supported"),
        (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], storage_order=1), [],
         r"node 'p' \(MaxPool\), attribute 'storage_order'"),
        (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[3, 3], pads=[2, 0, 0, 0]), [],
         r"node 'p' \(MaxPool\), attribute 'pads'"),
        # (with ceil_mode=0 the counted zeros are a ZeroPadding2D: test_pytorch_silu_and_padded_average_import)
        (helper.make_node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[3, 3], strides=[2, 2],
                          pads=[0, 0, 1, 1], ceil_mode=1, count_include_pad=1), [],
         r"node 'p' \(AveragePool\), attribute 'count_include_pad'"),
        (helper.make_node("LRN", ["x"], ["y"], name="norm", size=3), [],
         r"node 'norm' \(LRN\): the op 'LRN' is not supported \(local response normalization, AlexNet's "
         r"nn\.LocalResponseNorm\); convforge imports .*Conv"),
        (helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example"), [],
         r"node 'r' \(Relu\): operators of domain 'com.example'"),
        (helper.make_node("Conv", ["x", "x"], ["y"], name="c3"), [],
         r"node 'c3' \(Conv\): input 1 \(weights W, 'x'\) is computed in the graph"),
    ],
    ids=["group", "unknown-attribute", "storage-order", "pool-pads", "count-include-pad", "op", "domain",
         "computed-weights"],
)
def test_unsupported_op_or_attribute_names_node_op_attribute(node, inits, message, tmp_path):
    path = save_graph(tmp_path / "m.onnx", [node], inits)
    with pytest.raises(ModelFileError, match=message):
        convforge.load_model(path)


@pytest.mark.parametrize("pads,message", [
    ([0, 2, 1, 0, 0, 2, 1, 0], r"channels padded together with height or width .*channel pads \(2, 2\), "
                               r"height/width pads \(1, 1, 0, 0\)"),
    ([0, -1, 0, 0, 0, 0, 0, 0], r"a crop of the channels \(negative pads\)"),
    ([1, 0, 0, 0, 0, 0, 0, 0], r"padding the batch axis \(1, 0\)"),
])
def test_a_refused_pad_says_what_it_found(tmp_path, pads, message):
    # Every one of these was "padding the batch axis, or the channel axis other than with zeros
    # alone", which neither of the first two does.
    path = save_graph(tmp_path / "pad.onnx", [helper.make_node("Pad", ["x", "p"], ["y"], name="pad")],
                      [numpy_helper.from_array(np.array(pads, np.int64), "p")])
    with pytest.raises(ModelFileError, match=r"node 'pad' \(Pad\): " + message):
        convforge.load_model(path)


def test_attributes_without_a_typed_default_are_read_not_a_type_error(tmp_path):
    # A Resize with opset 18's axes attribute raised "TypeError: no ONNX attribute type is known
    # for the default None" before its refusal could name it.
    scales = numpy_helper.from_array(np.array([2.0, 2.0], np.float32), "s")
    path = save_graph(tmp_path / "axes.onnx", [helper.make_node("Resize", ["x", "", "s"], ["y"], name="up",
                                                                mode="nearest", axes=[2, 3])], [scales], opset=19)
    with pytest.raises(ModelFileError, match=r"node 'up' \(Resize\), attribute 'axes': only scales or sizes of all"):
        convforge.load_model(path)


def test_nchw_chains_with_batchnorm_softmax_or_a_fixed_batch_import_as_onnxruntime_runs_them(tmp_path):
    """Found by a review: a BatchNormalization in a channels-first chain (PyTorch's Conv -> ReLU ->
    BatchNorm2d, which its exporter does not fold) raised an uncaught NotImplementedError; a chain
    whose layers take any layout (ReLU -> Softmax over channels) ran its NCHW images as NHWC, the
    softmax over the width, silently; PyTorch's x.view(x.size(0), -1) exported without dynamic axes
    (Reshape to (1, -1) of a file whose batch is 1) was refused."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    bn = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
          (("s", rng.uniform(0.5, 1.5, 4)), ("b", rng.standard_normal(4)), ("m", rng.standard_normal(4)),
           ("v", rng.uniform(0.5, 2.0, 4)))]
    path = save_graph(tmp_path / "bn.onnx", [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], name="bn", epsilon=1e-3),
    ], [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w"), *bn])
    model = convforge.load_model(path)
    assert model.input_shape == (None, 2, 6, 6)
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)
    # No layer saying channels-first: the model takes channels-last images (as graph models do).
    path = save_graph(tmp_path / "softmax.onnx", [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                                   helper.make_node("Softmax", ["r"], ["y"], name="sm", axis=1)])
    model = convforge.load_model(path)
    assert model.input_shape == (None, 6, 6, 2)
    got = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ModelFileError, match="no layer of the chain says its images are channels-first"):
        convforge.load_model(path, input_layout="channels_first")
    path = save_graph(tmp_path / "view.onnx", [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "shape"], ["f"], name="view"),
        helper.make_node("Gemm", ["f", "g"], ["y"], name="fc", transB=1),
    ], [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((5, 64)).astype(np.float32), "g")], input_shape=(1, 2, 6, 6))
    model = convforge.load_model(path)
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), run_ort(path, x[:1]), rtol=RTOL, atol=ATOL)
    assert model.predict(x, verbose=0).shape == (3, 5)  # any batch, as x.view(x.size(0), -1) meant
    path = save_graph(tmp_path / "view2.onnx", [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "shape"], ["y"], name="view"),
    ], [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([2, -1], np.int64), "shape")], input_shape=(1, 2, 6, 6))
    with pytest.raises(ModelFileError, match=r"reshape to \[2, -1\] .* only \(batch, -1\) flattening"):
        convforge.load_model(path)


def test_a_long_chain_imports_with_one_build(tmp_path, monkeypatch):
    """A hostile file of 20,000 ReLU nodes in a chain (600 KB) took minutes: the Sequential was
    built after every layer and each add scanned the layers before it. Its constructor now builds
    once (counted here, not timed; ~1 s on a 2-vCPU host)."""
    n = 20000
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(n)]
    nodes[0].input[0] = "x"
    nodes[-1].output[0] = "y"
    path = save_graph(tmp_path / "deep.onnx", nodes, input_shape=("n", 8))
    builds = []
    build = convforge.Sequential.build
    monkeypatch.setattr(convforge.Sequential, "build", lambda self, *a: (builds.append(1), build(self, *a))[1])
    model = convforge.load_model(path)
    assert len(model.layers) == n and len({layer.name for layer in model.layers}) == n
    assert len(builds) == 1
    np.testing.assert_array_equal(model.predict(-np.ones((2, 8), np.float32), verbose=0), 0)


def test_shape_of_a_constant_folds_keras_stride_2_same_conv(tmp_path):
    """Keras's exporter writes a stride-2 'same' conv's pads with Shape() of constants."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    path = save_graph(tmp_path / "shape.onnx", [
        helper.make_node("Shape", ["k"], ["ks"], name="shape", start=-2),
        helper.make_node("Sub", ["ks", "one"], ["extra"], name="sub"),
        helper.make_node("Concat", ["zeros", "extra"], ["pads"], name="cat", axis=0),
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
        helper.make_node("Conv", ["p", "w"], ["y"], name="conv", strides=[2, 2]),
    ], [numpy_helper.from_array(np.zeros((1, 1, 2, 2), np.float32), "k"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.zeros(6, np.int64), "zeros"),
        numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")], input_shape=("n", 2, 7, 7))
    model = convforge.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_relu_with_max_value_is_clip_both_ways(tmp_path):
    """ReLU(6.0) (MobileNet's ReLU6) exports as Clip(0, 6); Clip(x, 0, m) (PyTorch's ReLU6)
    imports as ReLU(max_value=m); the ReLU arguments ONNX has no op for are refused by name."""
    x = images((3, 6, 6, 2))
    model = seeded([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), layers.ReLU(0.5)])
    proto, back = round_trip(model, x, tmp_path)
    assert "Clip" in [node.op_type for node in proto.graph.node]
    assert [type(layer).__name__ for layer in back.layers] == ["Conv2D", "ReLU"] and back.layers[1].max_value == 0.5
    with pytest.raises(ValueError, match="cannot export a ReLU with a threshold"):
        seeded([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), layers.ReLU(threshold=0.1)]).export(tmp_path / "t.onnx")
    bound = [numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", 6.0), ("neg", -1.0))]
    path = save_graph(tmp_path / "clip.onnx", [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="six")], bound)
    x = np.random.default_rng(2).uniform(-9, 9, (2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(convforge.load_model(path, input_layout="channels_last").predict(
        np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0).transpose(0, 3, 1, 2), run_ort(path, x))
    path = save_graph(tmp_path / "clip2.onnx", [helper.make_node("Clip", ["x", "neg", "hi"], ["y"], name="c")], bound)
    with pytest.raises(ModelFileError, match=r"node 'c' \(Clip\): only Clip\(x, 0\) and Clip\(x, 0, max\)"):
        convforge.load_model(path)


@pytest.mark.parametrize("opset", [9, 17])
def test_pytorch_clamp_at_zero_imports_as_relu(opset, tmp_path):
    """Found by a review: PyTorch's ``torch.clamp(x, min=0)`` (a Clip with a min and no max: an
    empty input from opset 11, the attribute alone before) and ``clamp(x, 0, inf)`` were refused;
    both are a ReLU, in either input layout. A clamp at another min stays refused by name: no
    convforge layer raises values to a bound (ReLU's threshold zeroes them)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Clamped(nn.Module):
        def __init__(self, low=0.0):
            super().__init__()
            self.low = low
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            x = torch.clamp(self.conv1(x), min=self.low)
            return torch.clamp(self.conv2(x), min=self.low, max=float("inf"))

    torch.manual_seed(0)
    x = images((2, 3, 5, 6))
    path, expected = exported_torch(Clamped().eval(), torch.from_numpy(x), tmp_path, opset_version=opset)
    assert sum(n.op_type == "Clip" for n in onnx.load(path).graph.node) == 2
    for layout in ("channels_first", "channels_last"):
        model = convforge.load_model(path, input_layout=layout)
        relus = [la for la in model.layers if type(la).__name__ == "ReLU"]
        assert len(relus) == 2 and all(la.max_value is None for la in relus)
        x_in = x if layout == "channels_first" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = model.predict(x_in, verbose=0)
        got = got if layout == "channels_first" else got.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    path, _ = exported_torch(Clamped(0.5).eval(), torch.from_numpy(x), tmp_path, opset_version=opset)
    with pytest.raises(ModelFileError, match=r"\(Clip\): only Clip\(x, 0\) and Clip\(x, 0, max\) .*got min 0.5"):
        convforge.load_model(path)
    # An infinite initializer is read as a Clip's bound only: anywhere else it is still refused.
    bound = [numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", np.inf))]
    clip = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="open")
    path = save_graph(tmp_path / "open.onnx", [clip], bound)
    x = images((2, 2, 6, 6))
    model = convforge.load_model(path)  # no layer says NCHW: a channels-last model
    assert [type(la).__name__ for la in model.layers][-1] == "ReLU"
    np.testing.assert_array_equal(model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0),
                                  run_ort(path, x).transpose(0, 2, 3, 1))
    clip = helper.make_node("Clip", ["x", "lo", "hi"], ["c"], name="open")
    path = save_graph(tmp_path / "inf.onnx", [clip, helper.make_node("Add", ["c", "hi"], ["y"], name="plus")], bound)
    with pytest.raises(ModelFileError, match=r"initializer 'hi' holds NaN or infinite values"):
        convforge.load_model(path)


@pytest.mark.parametrize("max_value", [None, 0.5])
def test_relu_with_negative_slope_is_leaky_relu(max_value, tmp_path):
    """Found by a review: ReLU(negative_slope=s) (Keras's leaky ReLU) was refused, though it is
    ONNX's LeakyRelu; with max_value it is LeakyRelu then Min (the clip acts above 0 only)."""
    x = images((3, 6, 6, 2)) * 2
    make = lambda: layers.ReLU(max_value=max_value, negative_slope=0.3)  # noqa: E731
    model = seeded([layers.Conv2D(3, 3, input_shape=(6, 6, 2)), make(), layers.Flatten(),
                    layers.Dense(4, activation=make())])
    path = tmp_path / "m.onnx"
    model.export(path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node].count("LeakyRelu") == 2
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    if max_value is None:  # imports back as LeakyReLU layers: the same values
        np.testing.assert_allclose(convforge.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0),
                                   rtol=RTOL, atol=ATOL)


def test_onnx_pads_that_match_keras_same_pooling_import(tmp_path):
    # PyTorch's MaxPool2d(3, 2, padding=1) on 7x7 has Keras's 'same' windows (on 6x6 it has not:
    # refused, as the pool-pads case above shows).
    node = helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    path = save_graph(tmp_path / "m.onnx", [node], input_shape=("n", 2, 7, 7))
    x = images((2, 2, 7, 7))
    model = convforge.load_model(path)
    assert model.layers[0].padding == "same"
    np.testing.assert_allclose(model.predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------
# Hostile files: ModelFileError, no large allocation, no file named inside opened
# ---------------------------------------------------------------------------


def load_small(path, limit=8 * 2**20):
    """load_model(path) must raise ModelFileError allocating less than ``limit`` bytes (Python and NumPy)."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as info:
            convforge.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"{peak} bytes allocated to refuse {path}"
    return str(info.value)


def test_truncated_files(tmp_path):
    lenet().export(tmp_path / "good.onnx")
    data = (tmp_path / "good.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    for size in sorted({0, 1, 2, 7, 100, len(data) // 3, len(data) // 2, len(data) - 50, len(data) - 1}):
        path.write_bytes(data[:size])
        load_small(path)


def test_garbage_and_non_onnx_files(tmp_path):
    path = tmp_path / "m.onnx"
    for content in (b"\x00" * 64, os.urandom(4096), b"PK\x03\x04 not onnx", b"\x0a\x05hello"):
        path.write_bytes(content)
        load_small(path)


def forged_tensor(dims, raw):
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, raw_data=raw)
    tensor.dims.extend(dims)  # helper.make_tensor would refuse the lie
    return tensor


def test_huge_declared_tensor(tmp_path):
    huge = forged_tensor([2**20, 2**20, 3, 3], b"\x00" * 16)
    path = save_graph(tmp_path / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [huge])
    assert "declares 9895604649984 elements" in load_small(path)
    lying = forged_tensor([4, 2, 3, 3], b"\x00" * 16)
    path = save_graph(tmp_path / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [lying])
    assert "holds 16 bytes" in load_small(path)


def test_huge_declared_input(tmp_path):
    node = helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2])
    path = save_graph(tmp_path / "m.onnx", [node], input_shape=("n", 3, 2**30, 2**30))
    assert "too many" in load_small(path)


def test_cycle_and_dangling_names(tmp_path):
    cycle = [
        helper.make_node("Relu", ["x", "b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Relu", ["b"], ["y"], name="third"),
    ]
    assert "cycle" in load_small(save_graph(tmp_path / "m.onnx", cycle))
    dangling = [helper.make_node("Relu", ["nowhere"], ["y"], name="r")]
    assert "made by no node" in load_small(save_graph(tmp_path / "m.onnx", dangling))
    twice = [helper.make_node("Relu", ["x"], ["y"], name="r1"), helper.make_node("Relu", ["x"], ["y"], name="r2")]
    assert "also made elsewhere" in load_small(save_graph(tmp_path / "m.onnx", twice))


def test_external_data_is_never_opened(tmp_path, monkeypatch):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((4, 2, 3, 3), np.float32).tobytes())
    tensor = forged_tensor([4, 2, 3, 3], b"")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", str(secret)
    path = save_graph(tmp_path / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [tensor])
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    message = load_small(path)
    assert "external file" in message and str(secret) not in opened


def test_no_graph_or_no_opset(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString())
    assert "no graph nodes" in load_small(path)
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    assert "opset 3" in load_small(save_graph(path, [node], opset=3))


def test_graph_inputs_and_outputs_are_bounded_and_distinct(tmp_path):
    path = tmp_path / "io.onnx"
    relu = helper.make_node("Relu", ["x"], ["y"], name="r")
    many = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["n", 3]) for i in range(65)]
    proto = helper.make_model(helper.make_graph(
        [relu], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]), *many],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]))
    path.write_bytes(proto.SerializeToString())
    assert "66 inputs and 1 outputs: convforge imports at most 64" in load_small(path)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    proto = helper.make_model(helper.make_graph(
        [relu], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])], [out, out]))
    path.write_bytes(proto.SerializeToString())
    assert "lists an output twice" in load_small(path)
    # Two inputs, one of them read by nothing: the model would need both.
    proto = helper.make_model(helper.make_graph(
        [relu], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3]) for n in "xz"], [out]))
    path.write_bytes(proto.SerializeToString())
    assert "not connected to any output" in load_small(path)


def test_damaged_bytes_raise_model_file_error_or_load(tmp_path):
    # Flipped bytes anywhere in a valid file: either a model that loads, or ModelFileError --
    # never another exception (an int() of a string attribute, an IndexError, ...).
    lenet().export(tmp_path / "good.onnx")
    data = bytearray((tmp_path / "good.onnx").read_bytes())
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.onnx"
    # The first ~2 kB hold the graph structure (nodes, attributes); the rest is mostly weights.
    for position in rng.integers(0, min(len(data), 2500), 300):
        damaged = bytearray(data)
        damaged[position] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        try:
            convforge.load_model(path)
        except ModelFileError:
            pass


def test_folded_constants_are_bounded(tmp_path):
    # ConstantOfShape would make 2**40 values from a 5-byte shape: refused before anything is made.
    shape = numpy_helper.from_array(np.array([2**40], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="cos"),
             helper.make_node("Reshape", ["x", "big"], ["y"], name="r")]
    assert "too large" in load_small(save_graph(tmp_path / "m.onnx", nodes, [shape]))
    # Many small ones add up to a budget per file.
    small = numpy_helper.from_array(np.array([4000], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], [f"c{i}"], name=f"cos{i}") for i in range(300)]
    nodes.append(helper.make_node("Concat", [f"c{i}" for i in range(300)], ["cat"], name="cat", axis=0))
    nodes.append(helper.make_node("Reshape", ["x", "cat"], ["y"], name="r"))
    assert "exceed" in load_small(save_graph(tmp_path / "m.onnx", nodes, [small]))


def test_embedding_round_trips_and_imports_from_pytorch_and_keras(tmp_path):
    """Embedding exports as Cast (the model's float ids to int64) + Gather of its rows, and imports
    back; PyTorch's nn.Embedding (an int64 graph input read by a Gather; F.relu and amax on the
    transposed sequence after its Conv1d) and Keras's exporter (its ids cast to int and wrapped as
    Python wraps negative indexes, Where(ids < 0, ids + rows, ids)) import as Embedding too."""
    ids = np.random.default_rng(0).integers(0, 30, (5, 16))
    model = seeded([layers.Input((16,)), layers.Embedding(30, 6), layers.Conv1D(4, 3, activation="relu"),
                    layers.GlobalMaxPooling1D(), layers.Dense(3, activation="softmax")])
    path = tmp_path / "text.onnx"
    model.export(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    expected = model.predict(ids, verbose=0)
    np.testing.assert_allclose(run_ort(path, ids.astype(np.float32)), expected, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path)
    assert [type(la).__name__ for la in back.layers] == ["Embedding", "Conv1D", "ReLU", "GlobalMaxPooling1D",
                                                          "Dense"]
    np.testing.assert_array_equal(back.predict(ids, verbose=0), expected)

    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.conv, self.out = torch.nn.Embedding(30, 6), torch.nn.Conv1d(6, 4, 3), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.out(torch.amax(torch.relu(self.conv(self.embed(x).transpose(1, 2))), dim=2))

    torch.manual_seed(0)
    net = Net().eval()
    export_torch(net, (torch.tensor(ids),), tmp_path / "torch.onnx", input_names=["ids"],
                 dynamic_axes={"ids": {0: "n"}})
    imported = convforge.load_model(tmp_path / "torch.onnx")
    assert [type(la).__name__ for la in imported.layers] == ["Embedding", "Conv1D", "ReLU", "GlobalMaxPooling1D",
                                                              "Dense"]
    with torch.no_grad():
        np.testing.assert_allclose(imported.predict(ids, verbose=0), net(torch.tensor(ids)).numpy(), rtol=RTOL,
                                   atol=ATOL)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        k = keras.Sequential([keras.Input((16,)), keras.layers.Embedding(30, 6), keras.layers.Conv1D(4, 3),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
        want = np.asarray(k.predict(ids, verbose=0))
        k.export(tmp_path / "keras.onnx", format="onnx", verbose=False)
    from_keras = convforge.load_model(tmp_path / "keras.onnx")
    assert [type(la).__name__ for la in from_keras.layers][:2] == ["Embedding", "Conv1D"]
    np.testing.assert_allclose(from_keras.predict(ids, verbose=0), want, rtol=RTOL, atol=ATOL)


def test_gathers_that_are_no_embedding_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "table")
    ids = numpy_helper.from_array(np.array([0, 2], np.int64), "ids")
    cases = [
        # Rows of a computed tensor picked by constant indices.
        ([helper.make_node("Gather", ["x", "ids"], ["y"], name="g")], [ids], ("n", 4),
         r"node 'g' \(Gather\): is only supported on constants \(shape arithmetic\) and as an embedding"),
        # Columns of a constant matrix.
        ([helper.make_node("Cast", ["x"], ["i"], name="c", to=7),
          helper.make_node("Gather", ["table", "i"], ["y"], name="g", axis=1)], [table], ("n", 4),
         r"node 'g' \(Gather\), attribute 'axis': a gather along axis 1"),
        # Integer casts of computed values read by anything but a Gather.
        ([helper.make_node("Cast", ["x"], ["i"], name="c", to=7),
          helper.make_node("Cast", ["i"], ["y"], name="back", to=1)], [], ("n", 4),
         r"node 'c' \(Cast\), attribute 'to': a cast of computed values to element type 7"),
    ]
    for k, (nodes, inits, shape, message) in enumerate(cases):
        with pytest.raises(ModelFileError, match=message):
            convforge.load_model(save_graph(tmp_path / f"g{k}.onnx", nodes, inits, input_shape=shape))
    # An integer graph input read by anything but a Gather of a constant.
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.INT64, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "int_input.onnx")
    with pytest.raises(ModelFileError, match=r"not a float tensor \(element type 7\), nor the token ids of an embedding"):
        convforge.load_model(tmp_path / "int_input.onnx")


def test_mutated_files_load_or_raise_model_file_error(tmp_path):
    """Random bytes changed in exported files (an image CNN with BatchNormalization and Permute, a
    1-D text model with Embedding, a channels-first sequence model): load_model gives a model
    (whose predict runs or refuses the input with a ValueError) or a ModelFileError, nothing else.
    FUZZ_SEED picks other mutations (as test_hardening's fuzz of .npz files)."""
    import random

    sources = []
    for name, model, shape in (
        ("cnn", seeded([layers.Input((8, 8, 2)), layers.Conv2D(3, 3, padding="same"), layers.BatchNormalization(),
                        layers.ReLU(), layers.Permute((2, 1, 3)), layers.MaxPooling2D(2), layers.Flatten(),
                        layers.Dense(3, activation="softmax")]), (8, 8, 2)),
        ("text", seeded([layers.Input((10,)), layers.Embedding(20, 4), layers.Conv1D(3, 3, padding="causal"),
                         layers.GlobalMaxPooling1D(), layers.Dense(2)]), (10,)),
        ("ncl", seeded([layers.Input((3, 12)), layers.Conv1D(4, 3, padding=1, data_format="channels_first"),
                        layers.BatchNormalization(axis=1), layers.AveragePooling1D(2, data_format="channels_first"),
                        layers.Flatten(), layers.Dense(2)]), (3, 12)),
    ):
        path = tmp_path / f"{name}.onnx"
        model.export(path)
        sources.append(path.read_bytes())
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "0")))
    outcomes, failures = {}, []
    for example in range(150):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.choice((1, 2, 4, 8))):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / "mutated.onnx"
        path.write_bytes(bytes(data))
        try:
            model = convforge.load_model(path)
            x = np.random.default_rng(0).integers(0, 2, (2, *model.input_shape[1:])).astype(np.float32)
            try:
                model.predict(x, verbose=0)
            except ValueError:
                pass
            outcome = "loaded"
        except ModelFileError:
            outcome = "ModelFileError"
        except Exception as err:  # noqa: BLE001 - the point: anything else is a failure, named
            outcome = type(err).__name__
            failures.append(f"example {example}: {outcome}: {err}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not failures, "\n".join(failures[:10])
    assert outcomes.get("ModelFileError", 0) > 30 and outcomes.get("loaded", 0) > 10, outcomes


def test_keras_exported_strided_same_max_pooling1d_imports(tmp_path):
    """Keras's exporter writes a strided 'same' MaxPooling1D as an edge Pad of the transposed
    sequence before the MaxPool (refused: "only zero padding of a sequence"): where each margin is
    narrower than the window the maximum is the same, so the margins join the pooling's pads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        nets = {"same2": keras.Sequential([keras.Input((9, 4)), keras.layers.MaxPooling1D(2, padding="same")]),
                "conv-same2": keras.Sequential([keras.Input((10, 3)), keras.layers.Conv1D(4, 2, activation="relu"),
                                                keras.layers.MaxPooling1D(2, padding="same")])}
        x = {"same2": images((2, 9, 4)), "conv-same2": images((2, 10, 3))}
        expected = {name: predict_and_export_keras({name: net}, x[name], tmp_path)[name] for name, net in nets.items()}
    for name, want in expected.items():
        model = convforge.load_model(tmp_path / f"{name}.onnx")
        pool = model.layers[-1]
        assert (type(pool).__name__, pool.padding, pool.strides) == ("MaxPooling1D", "same", 2), name
        np.testing.assert_allclose(model.predict(x[name], verbose=0), want, rtol=RTOL, atol=ATOL, err_msg=name)
    # A margin as wide as the window would repeat a border value into a window without it.
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 1]),
             helper.make_node("Pad", ["t", "p"], ["pad"], name="edge", mode="edge"),
             helper.make_node("MaxPool", ["pad"], ["y"], name="mp", kernel_shape=[2], strides=[2])]
    path = save_graph(tmp_path / "wide.onnx", nodes, [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 2], np.int64),
                                                                              "p")], input_shape=("n", 9, 4))
    with pytest.raises(ModelFileError, match=r"'edge' \(Pad\), attribute 'mode': edge padding \[\(9, 0, 2\)\] .* only "
                                             r"margins narrower than the window"):
        convforge.load_model(path)


def test_keras_exported_same_average_pooling_imports(tmp_path):
    """Keras's exporter writes a 'same' AveragePooling1D/2D as an edge Pad before an AveragePool
    (refused: "edge padding ... before a MaxPool only"). With a window of 2 each window reaching
    the margin holds one input value, repeated: the average is Keras's, which leaves the margin out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        nets = {"avg1d": (keras.Sequential([keras.Input((9, 4)), keras.layers.AveragePooling1D(2, padding="same")]),
                          images((2, 9, 4))),
                "avg1d-s1": (keras.Sequential([keras.Input((9, 4)),
                                               keras.layers.AveragePooling1D(2, strides=1, padding="same")]),
                             images((2, 9, 4))),
                "avg2d": (keras.Sequential([keras.Input((7, 9, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                            keras.layers.AveragePooling2D(2, padding="same"), keras.layers.Flatten(),
                                            keras.layers.Dense(2)]), images((2, 7, 9, 3)))}
        expected = {name: predict_and_export_keras({name: net}, x, tmp_path)[name] for name, (net, x) in nets.items()}
    for name, want in expected.items():
        model = convforge.load_model(tmp_path / f"{name}.onnx")
        pools = [la for la in model.layers if "AveragePooling" in type(la).__name__]
        assert [la.padding for la in pools] == ["same"], name
        np.testing.assert_allclose(model.predict(nets[name][1], verbose=0), want, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("rank", [1, 2])
def test_edge_pad_before_average_pool_imports_only_where_it_averages_as_keras(rank, tmp_path):
    """Every small window, stride and pair of margins: the import either refuses the edge Pad (a
    border value would count in an average, or Keras has no such windows) or predicts as
    onnxruntime runs the file."""
    size, channels = 7, 2
    shape = ("n", size, channels) if rank == 1 else ("n", channels, size, size - 1)
    x = images((2, *shape[1:]))
    imported = refused = 0
    for kernel, stride, before, after in itertools.product(range(1, 5), range(1, 4), range(3), range(3)):
        if rank == 1:  # on the transposed sequence, as Keras's exporter pads it
            pads = [0, 0, before, 0, 0, after]
            nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 1]),
                     helper.make_node("Pad", ["t", "p"], ["pad"], name="edge", mode="edge"),
                     helper.make_node("AveragePool", ["pad"], ["a"], name="avg", kernel_shape=[kernel],
                                      strides=[stride]),
                     helper.make_node("Transpose", ["a"], ["y"], name="back", perm=[0, 2, 1])]
        else:  # the same margins on both axes of an NCHW image
            pads = [0, 0, before, before, 0, 0, after, after]
            nodes = [helper.make_node("Pad", ["x", "p"], ["pad"], name="edge", mode="edge"),
                     helper.make_node("AveragePool", ["pad"], ["y"], name="avg", kernel_shape=[kernel, kernel],
                                      strides=[stride, stride])]
        path = save_graph(tmp_path / "m.onnx", nodes, [numpy_helper.from_array(np.array(pads, np.int64), "p")],
                          input_shape=shape)
        try:
            model = convforge.load_model(path)
        except ModelFileError as err:
            assert "'edge' (Pad)" in str(err) or "'avg' (AveragePool)" in str(err), str(err)
            refused += 1
            continue
        imported += 1
        got = model.predict(x, verbose=0)
        np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL,
                                   err_msg=f"kernel {kernel} stride {stride} margins {before, after}")
    assert imported >= 10 and refused >= 10, (imported, refused)  # both outcomes were exercised


def test_a_pad_before_a_same_conv1d_counts_in_its_same_padding(tmp_path):
    """Found by the second reviewer (reading the code): a zero Pad joined into a Conv with
    auto_pad='SAME_UPPER' and stride 2 had SAME computed on the unpadded length, a step short of
    the file's output (6 steps where onnxruntime gives 7)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Pad", ["x", "p"], ["pad"], name="pad"),
             helper.make_node("Conv", ["pad", "w"], ["y"], name="conv", auto_pad="SAME_UPPER", strides=[2])]
    inits = [numpy_helper.from_array(np.array([0, 0, 2, 0, 0, 1], np.int64), "p"),
             numpy_helper.from_array(rng.standard_normal((4, 3, 3)).astype(np.float32), "w")]
    path = save_graph(tmp_path / "same.onnx", nodes, inits, input_shape=("n", 3, 10))
    model = convforge.load_model(path)
    x = images((2, 3, 10))
    expected = run_ort(path, x)
    assert expected.shape == (2, 4, 7) and model.output_shape == (None, 4, 7)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)


def test_a_pytorch_unsqueezed_grayscale_input_stays_nchw(tmp_path):
    """Found by the second reviewer: PyTorch's conv(x.unsqueeze(1)) of (batch, height, width)
    images imported as a channels-last model, so an image output came back (batch, h, w, channels)
    where the file gives (batch, channels, h, w). At axis 1 the file's images are NCHW: a
    channels-first model now. (convforge's own files of (height, width) input stay channels-last.)"""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(1, 3, 3), head

        def forward(self, x):
            y = self.conv(x.unsqueeze(1))
            return y if self.head is None else self.head(torch.flatten(torch.relu(y), 1))

    torch.manual_seed(0)
    x = images((3, 6, 7))
    for head, shape in ((None, (3, 3, 4, 5)), (torch.nn.Linear(3 * 4 * 5, 2), (3, 2))):
        net = Net(head).eval()
        path = tmp_path / "gray.onnx"
        export_torch(net, (torch.randn(2, 6, 7),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}})
        model = convforge.load_model(path)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = model.predict(x, verbose=0)
        assert got.shape == expected.shape == shape
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    own = seeded([layers.Input((6, 7)), layers.Conv2D(3, 3)])  # convforge's own (height, width) model
    _, back = round_trip(own, images((2, 6, 7)), tmp_path)
    assert back._data_format() == "channels_last" and back.output_shape == (None, 4, 5, 3)


def test_keras_exported_1d_depthwise_separable_and_transposed_convolutions_import(tmp_path):
    """Keras's exporter writes a strided 'same' Conv1DTranspose as a ConvTranspose whose crop is
    computed with Mod and Neg (refused: "the op 'Mod' is not supported"; they fold now), then a
    Slice: Conv1DTranspose + Cropping1D, the same numbers. Its SeparableConv1D and DepthwiseConv1D
    import too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras = keras_on_torch()
        nets = {
            "transpose-same": keras.Sequential([keras.Input((9, 4)),
                                                keras.layers.Conv1DTranspose(4, 3, strides=2, padding="same")]),
            "separable": keras.Sequential([keras.Input((9, 4)), keras.layers.SeparableConv1D(5, 3, padding="same"),
                                           keras.layers.DepthwiseConv1D(3, activation="relu")]),
        }
        x = images((2, 9, 4))
        expected = predict_and_export_keras(nets, x, tmp_path)
    for name, want in expected.items():
        model = convforge.load_model(tmp_path / f"{name}.onnx")
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL, err_msg=name)
    assert [type(la).__name__ for la in convforge.load_model(tmp_path / "transpose-same.onnx").layers][:2] == \
        ["Conv1DTranspose", "Cropping1D"]


# ---- PReLU, LayerNormalization and broadcasting merges


@pytest.mark.parametrize("shape, shared", [((6, 6, 2), [1, 2]), ((6, 6, 2), None), ((6, 6, 2), [3]), ((5, 4), [1]),
                                           ((7,), None)])
def test_prelu_round_trip(shape, shared, tmp_path):
    stack = [layers.Input(shape)] + ([layers.Conv2D(3, 3)] if len(shape) == 3 else [])
    stack += [layers.PReLU(alpha_initializer="random_normal", shared_axes=shared), layers.Flatten(), layers.Dense(2)]
    model = seeded(stack)
    _, back = round_trip(model, np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32), tmp_path)
    prelu = next(layer for layer in back.layers if isinstance(layer, layers.PReLU))
    original = next(layer for layer in model.layers if isinstance(layer, layers.PReLU))
    np.testing.assert_array_equal(prelu.get_weights()[0], original.get_weights()[0])


@pytest.mark.parametrize("channels", [3, 1])
def test_pytorch_prelu_imports(channels, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    prelu = torch.nn.PReLU(channels)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), prelu, torch.nn.Flatten(), torch.nn.Linear(48, 2)).eval()
    with torch.no_grad():
        prelu.weight.copy_(torch.randn(prelu.weight.shape))
    x = torch.randn(4, 2, 6, 6)
    path, want = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path, input_layout="channels_first")
    layer = next(layer for layer in model.layers if isinstance(layer, layers.PReLU))
    # Channels-first images (input_layout): axis 1 is the channels, 2 and 3 height and width.
    assert layer.shared_axes == ([2, 3] if channels == 3 else [1, 2, 3])
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape, axis", [((6, 6, 2), -1), ((6, 6, 2), [1, 2, 3]), ((6, 6, 2), [2, 3]), ((7, 3), -1),
                                         ((9,), -1)])
def test_layer_normalization_round_trip(shape, axis, tmp_path):
    stack = [layers.Input(shape)] + ([layers.Conv2D(3, 3)] if len(shape) == 3 else [])
    stack += [layers.LayerNormalization(axis=axis, gamma_initializer="random_normal", beta_initializer="random_normal"),
              layers.Flatten(), layers.Dense(2)]
    model = seeded(stack)
    round_trip(model, np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32), tmp_path)
    with pytest.raises(ValueError, match=r"^cannot export layer '[a-z_0-9]+' \(LayerNormalization\) to ONNX: not at opset 13: .* opset 17 or later"):
        model.export(tmp_path / "old.onnx", opset=13)
    if len(shape) == 3:
        # Exported for NCHW input, imported as a channels-first model: the normalisation of the
        # channels-last view (a Transpose around it) was refused, though every exported layer
        # should import back (found by review).
        x = np.random.default_rng(1).standard_normal((4, *shape)).astype(np.float32)
        model.export(tmp_path / "nchw.onnx", input_layout="channels_first")
        back = convforge.load_model(tmp_path / "nchw.onnx", input_layout="channels_first")
        x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        np.testing.assert_allclose(back.predict(x_nchw, verbose=0), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("normalized", ["features", "chw", "hw"])
def test_pytorch_layer_norm_imports(normalized, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    if normalized == "features":
        norm = nn.LayerNorm(6)
        net, x = nn.Sequential(nn.Linear(5, 6), norm, nn.Linear(6, 2)), torch.randn(3, 5)
    else:
        norm = nn.LayerNorm([3, 4, 4] if normalized == "chw" else [4, 4])
        net, x = nn.Sequential(nn.Conv2d(2, 3, 3), norm, nn.Flatten(), nn.Linear(48, 2)), torch.randn(3, 2, 6, 6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(norm.weight.shape))
        norm.bias.copy_(torch.randn(norm.bias.shape))
    path, want = exported_torch(net.eval(), x, tmp_path, opset_version=17)
    model = convforge.load_model(path, input_layout="channels_first") if x.ndim == 4 else convforge.load_model(path)
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("second", [(1, 1, 4), (4,), (6, 6, 1)])
def test_broadcasting_merge_round_trip(second, tmp_path):
    convforge.seed(10)
    x = convforge.Input((6, 6, 2))
    h = layers.Conv2D(4, 3, padding="same")(x)
    if second == (6, 6, 1):
        other = layers.Conv2D(1, 1, activation="sigmoid")(h)
    else:
        other = layers.Dense(4, activation="sigmoid")(layers.GlobalAveragePooling2D()(h))
        other = layers.Reshape(second)(other) if len(second) == 3 else other
    model = convforge.Model(x, layers.Flatten()(layers.Multiply()([h, other])))
    round_trip(model, np.random.default_rng(0).standard_normal((3, 6, 6, 2)).astype(np.float32), tmp_path)


def test_pytorch_squeeze_and_excitation_imports(tmp_path):
    torch = pytest.importorskip("torch")

    class SqueezeExcite(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc1, self.fc2 = torch.nn.Linear(4, 2), torch.nn.Linear(2, 4)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(h.mean((2, 3))))))
            return (h * s.view(-1, 4, 1, 1)).flatten(1)

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    path, want = exported_torch(SqueezeExcite().eval(), x, tmp_path)
    model = convforge.load_model(path)  # channels-last input (a graph model)
    got = model.predict(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), verbose=0)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ---- grouped convolution


@pytest.mark.parametrize("groups, strides, padding", [(2, 1, "same"), (4, 2, "valid"), (8, 1, "valid")])
def test_grouped_conv2d_round_trip(groups, strides, padding, tmp_path):
    model = seeded([layers.Input((9, 9, 8)),
                    layers.Conv2D(16, 3, strides=strides, padding=padding, groups=groups, activation="relu",
                                  bias_initializer="random_normal"),
                    layers.Flatten(), layers.Dense(2)])
    proto, back = round_trip(model, np.random.default_rng(0).standard_normal((3, 9, 9, 8)).astype(np.float32), tmp_path)
    conv = next(node for node in proto.graph.node if node.op_type == "Conv")
    assert next(a.i for a in conv.attribute if a.name == "group") == groups
    if groups == 8:  # one group per channel: the same convolution as a DepthwiseConv2D (depth multiplier 2)
        assert type(back.layers[0]) is layers.DepthwiseConv2D
    else:
        assert back.layers[0].groups == groups


def test_pytorch_grouped_conv_imports(tmp_path):
    # ResNeXt's 3x3 of 32 groups, at a toy size: 8 groups of 2 channels.
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=8), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16 * 36, 2)).eval()
    x = torch.randn(2, 3, 6, 6)
    path, want = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path, input_layout="channels_first")
    assert [layer.groups for layer in model.layers if isinstance(layer, layers.Conv2D)] == [1, 8]
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), want, rtol=RTOL, atol=ATOL)


def test_a_broadcast_that_needs_a_transpose_is_refused_once_by_name(tmp_path):
    # The message said "cannot export layer 'add' (Add) to ONNX: " twice (found by review).
    image, steps = convforge.Input(shape=(5, 5, 4)), convforge.Input(shape=(5, 4))
    model = convforge.Model([image, steps], layers.Add(name="add")([image, steps]))
    with pytest.raises(ValueError, match=r"^cannot export layer 'add' \(Add\) to ONNX: its input 1 of shape "
                                         r"\(None, 5, 4\) broadcasts") as caught:
        model.export(tmp_path / "m.onnx")
    assert str(caught.value).count("cannot export") == 1


@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("squeeze", ["all", "last-twice", "three-then-two"])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_pytorch_squeezes_after_global_pooling_import(squeeze, pool, opset, tmp_path):
    # AdaptiveAvgPool2d(1) then x.squeeze() or x.squeeze(-1).squeeze(-1) (a classifier head a
    # review found in student models): Squeeze was refused unless one node took both axes. Before
    # opset 13 a Squeeze's axes are an attribute: reading it raised inside the first version of
    # the chain reader, which then refused what it took before (found by a second review).
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.linear = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)
            self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)

        def forward(self, x):
            h = self.pool(self.conv(x))
            h = {"all": lambda t: t.squeeze(), "last-twice": lambda t: t.squeeze(-1).squeeze(-1),
                 "three-then-two": lambda t: t.squeeze(3).squeeze(2)}[squeeze](h)
            return self.linear(h)

    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 8)
    path, expected = exported_torch(Head().eval(), x, tmp_path, opset_version=opset)
    model = convforge.load_model(path)
    # AdaptiveMaxPool2d(1) exports as a MaxPool of the whole image: a Flatten takes its squeezes.
    kinds = [type(la).__name__ for la in model.layers]
    assert kinds[1:] == (["GlobalAveragePooling2D", "Dense"] if pool == "avg" else ["MaxPooling2D", "Flatten", "Dense"])
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("norm", ["group", "group-1", "instance-affine", "instance", "group-no-affine"])
@pytest.mark.parametrize("dims", [2, 1])
def test_pytorch_group_and_instance_norm_import(norm, dims, tmp_path):
    # nn.GroupNorm exports as Reshape(batch, groups, -1) -> InstanceNormalization -> Reshape back ->
    # Mul -> Add; nn.InstanceNorm2d/1d as the InstanceNormalization alone. Both were refused.
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    instance = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm1d
    made = {"group": lambda: nn.GroupNorm(2, 4), "group-1": lambda: nn.GroupNorm(1, 4, eps=1e-3),
            "instance-affine": lambda: instance(4, affine=True), "instance": lambda: instance(4),
            "group-no-affine": lambda: nn.GroupNorm(4, 4, affine=False)}[norm]()
    with torch.no_grad():
        for p in made.parameters():
            p.copy_(torch.randn(p.shape))
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    net = nn.Sequential(conv(3, 4, 3), made, nn.ReLU(), conv(4, 2, 1)).eval()
    x = torch.randn(3, 3, *((8, 8) if dims == 2 else (9,)))
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    assert [type(la).__name__ for la in model.layers][1] == "GroupNormalization"
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    if dims == 2:
        back = convforge.load_model(path, input_layout="channels_last")
        got = back.predict(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), verbose=0)
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("shape, groups", [((6, 6, 4), 2), ((6, 6, 4), -1), ((7, 4), 2), ((8,), 4)])
def test_group_normalization_round_trips(shape, groups, opset, tmp_path):
    model = seeded([layers.Input(shape), layers.GroupNormalization(groups, gamma_initializer="random_normal",
                                                                   beta_initializer="random_normal"), layers.ReLU()])
    round_trip(model, images((3, *shape)), tmp_path, exact=False, opset=opset)


@pytest.mark.parametrize("how", [dict(scale_factor=2), dict(scale_factor=(2, 3)), dict(size=(12, 12))])
def test_pytorch_bilinear_upsample_imports_and_bilinear_upsampling_round_trips(how, tmp_path):
    # A U-Net decoder's nn.Upsample(mode='bilinear') (align_corners=False, PyTorch's default) is
    # Keras's UpSampling2D(interpolation='bilinear'); the linear Resize was refused.
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(mode="bilinear", **how), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(2, 3, 8, 8)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)
    assert model.layers[1].get_config()["interpolation"] == "bilinear"
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    (tmp_path / "back").mkdir()
    mine = seeded([layers.Input(shape=(5, 6, 2)), layers.UpSampling2D((2, 3), interpolation="bilinear"),
                   layers.Conv2D(2, 1)])
    proto, back = round_trip(mine, images((3, 5, 6, 2)), tmp_path / "back")
    assert [n.op_type for n in proto.graph.node].count("Resize") == 1
    assert back.layers[0].interpolation == "bilinear"


@pytest.mark.parametrize("opset", [11, 13])
def test_a_squeeze_of_everything_in_a_file_of_batch_one_is_refused(opset, tmp_path):
    # x.squeeze() of a file whose batch is fixed at 1 drops the batch too: no layer does that
    # (it was imported, keeping the batch; found by a second review).
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d(1))

        def forward(self, t):
            return self.head(t).squeeze()

    path = tmp_path / "fixed.onnx"
    export_torch(Squeezed().eval(), (torch.randn(1, 3, 8, 8),), path, input_names=["x"], opset_version=opset)
    with pytest.raises(ModelFileError, match=r"Squeeze"):
        convforge.load_model(path)


def test_pytorch_cifar_resnet_option_a_shortcut_imports(tmp_path):
    # CIFAR ResNets' parameter-free shortcut (He et al.'s option A, as popular CIFAR-10
    # implementations write it): F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p)). The strided Slice
    # and the Pad of the channel axis were refused; they import as a 1x1 max pooling of stride 2
    # and the zero channels added through a (channels, pixels) view (exact).
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(4, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)

        def forward(self, x):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(out + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2), "constant", 0))

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Block()).eval()
    randomise_torch_batchnorm = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in randomise_torch_batchnorm:
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 3, 8, 8)
    path, expected = exported_torch(net, x, tmp_path)
    model = convforge.load_model(path)  # a graph (the Add): channels-last
    got = model.predict(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), verbose=0)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=RTOL, atol=ATOL)

    class Chain(nn.Module):  # a crop with its steps, and uneven zero channels, in a chain
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, t):
            return F.pad(self.conv(t)[:, :, 1::2, ::3], (0, 0, 0, 0, 1, 3))

    x = torch.randn(2, 3, 9, 8)
    path, expected = exported_torch(Chain().eval(), x, tmp_path)
    np.testing.assert_allclose(convforge.load_model(path).predict(x.numpy(), verbose=0), expected, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path, input_layout="channels_last")
    got = back.predict(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)), verbose=0)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=RTOL, atol=ATOL)


def test_a_strided_slice_of_the_batch_is_refused(tmp_path):
    # x[::2] of the batch: the strided-slice import recorded the step and ignored it (every
    # sample kept, a silent wrong answer; found on a second read).
    inits = [numpy_helper.from_array(np.array(v, np.int64), n)
             for n, v in (("starts", [0]), ("ends", [2**63 - 1]), ("axes", [0]), ("steps", [2]))]
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"], name="s")
    path = save_graph(tmp_path / "m.onnx", [node], inits)
    with pytest.raises(ModelFileError, match=r"node 's' \(Slice\).*slicing the batch axis is not supported"):
        convforge.load_model(path)


@pytest.mark.parametrize("shape, kwargs, reimports", [
    ((6, 6, 3), {}, True), ((6, 6, 3), {"axis": None}, True), ((7,), {"invert": True}, True), ((5, 4), {}, True),
    ((6, 6, 3), {"mean": [1, 2, 3], "variance": [1, 4, 9]}, True), ((6, 6, 3), {"axis": (1, 2)}, False),
])
def test_normalization_exports_as_sub_and_div(tmp_path, shape, kwargs, reimports):
    # Keras's Normalization: (x - mean) / std as Sub and Div by constants that broadcast against the
    # NCHW graph; re-imported as the per-channel affine (one BatchNormalization) where the statistics
    # are per channel or one value (a (1, 1, 1, 1) constant was refused as "not one value").
    rng = np.random.default_rng(0)
    x = (rng.random((8, *shape)) * 5).astype(np.float32)
    norm = layers.Normalization(**kwargs)
    if "mean" not in kwargs:
        norm.adapt(x)
    tail = [layers.Conv2D(2, 3)] if len(shape) == 3 else [layers.Dense(2)] if len(shape) == 1 else []
    model = convforge.Sequential([convforge.Input(shape), norm, *tail])
    path = tmp_path / "norm.onnx"
    model.export(path, format="onnx")
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(run_ort(path, x), expected, rtol=RTOL, atol=ATOL)
    if reimports:
        np.testing.assert_allclose(convforge.load_model(path).predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    else:  # statistics per pixel position: a constant the importer refuses, by its shape
        with pytest.raises(ModelFileError, match=r"a constant of shape \(1, 1, 6, 6\)"):
            convforge.load_model(path)


def test_an_nchw_file_imported_channels_last_warns_how_to_feed_it(tmp_path):
    """A review: an NCHW file whose model is channels-last (a graph, or a chain of layers that say no
    layout) took onnxruntime's NCHW arrays without a word where C = H = W, and gave another answer
    (a Softmax over the channels ran over the width: 0.44 off). The shapes cannot tell, so the
    import warns, naming the transpose; input_layout='channels_last' says it is expected."""
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    path = save_graph(tmp_path / "cube.onnx", [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)],
                      input_shape=("N", 3, 3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not the module's filter: this one must be seen
        with pytest.raises(UserWarning, match=r"'x' \(batch, 3, 3, 3\) is NCHW, but its convforge model takes "
                                              r"channels-last images .* x.transpose\(0, 2, 3, 1\)"):
            convforge.load_model(path)
        model = convforge.load_model(path, input_layout="channels_last")  # expected: no warning
    got = model.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), verbose=0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL)
    # A chain with a layer that says channels-first stays NCHW, as the file: no warning.
    path = save_graph(tmp_path / "conv.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                      [numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")], input_shape=("N", 3, 3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert convforge.load_model(path).input_shape == (None, 3, 3, 3)


@pytest.mark.parametrize("make", [lambda: layers.activations.CELU(alpha=0.5), layers.activations.Exponential,
                                  layers.activations.SoftShrink, layers.activations.Squareplus],
                         ids=["CELU", "Exponential", "SoftShrink", "Squareplus"])
def test_activation_layers_of_an_imported_file_export_again(make, tmp_path):
    """An ONNX file's Celu or Exp comes in as a standalone activation layer: it exports again (no
    exporter was registered for those classes), and onnxruntime agrees."""
    model = seeded([layers.Dense(5, input_shape=(4,)), make(), layers.Dense(3)])
    path = tmp_path / "model.onnx"
    model.export(path)
    x = images((6, 4))
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("axis", [-1, [1, 2, 3], [1, 2]], ids=["channels", "image", "rows"])
def test_unit_normalization_exports(axis, opset, tmp_path):
    """ReduceL2 over the layer's axes of the NCHW tensor (axes an attribute before opset 18, an
    input from it), floored at 1e-12 as Keras's; an all-zero pixel stays 0."""
    model = seeded([layers.Conv2D(4, 3, input_shape=(6, 6, 2)), layers.UnitNormalization(axis), layers.Flatten(),
                    layers.Dense(3)])
    path = tmp_path / "model.onnx"
    model.export(path, opset=opset)
    x = images((3, 6, 6, 2))
    x[0] = 0
    np.testing.assert_allclose(run_ort(path, x), model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path)  # and read back as the layer, its axes as the user counts them
    read = [layer.axis for layer in back.layers if type(layer).__name__ == "UnitNormalization"]
    assert read == [3 if axis == -1 else axis]  # the channels, counted from the front
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("normalize", [False, True], ids=["dot", "cosine"])
def test_dot_exports(normalize, opset, tmp_path):
    """Dot as Einsum (after ReduceL2 / Max / Div with normalize): two embeddings' score (batch, 1),
    and attention scores of two Conv1D sequences (batch, steps, steps)."""
    convforge.seed(3)
    a, b = convforge.Input((6,)), convforge.Input((10, 2))
    score = layers.Dot(1, normalize=normalize)([layers.Dense(4)(a), layers.Dense(4)(a)])
    seq = layers.Conv1D(4, 3, padding="same")(b)
    attention = layers.Dot(2, normalize=normalize)([seq, layers.Conv1D(4, 1)(b)])
    model = convforge.Model([a, b], [score, layers.Flatten()(attention)])
    path = tmp_path / "model.onnx"
    model.export(path, opset=opset)
    xs = [images((3, 6)), images((3, 10, 2))]
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})
    for g, want in zip(got, model.predict(xs, verbose=0)):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=ATOL)
    back = convforge.load_model(path)  # read back as Dot layers, normalize included
    assert sorted((layer.axes, layer.normalize) for layer in back.layers if type(layer).__name__ == "Dot") == \
        [([1, 1], normalize), ([2, 2], normalize)]
    for g, want in zip(back.predict(xs, verbose=0), model.predict(xs, verbose=0)):
        np.testing.assert_array_equal(g, want)


def test_einsum_and_reduce_l2_other_than_convforge_writes_them_are_refused_by_name(tmp_path):
    from onnx import TensorProto, helper

    def saved(nodes, inputs, output, name):
        graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)])
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    vec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("a", "b")]
    outer = saved([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bi,bj->bij")], vec, "y", "outer.onnx")
    with pytest.raises(convforge.saving.ModelFileError, match=r"Einsum 'bi,bj->bij': only a dot product along one"):
        convforge.load_model(outer)
    norm = saved([helper.make_node("ReduceL2", ["a"], ["y"], axes=[1], keepdims=1)], vec[:1], "y", "norm.onnx")
    with pytest.raises(convforge.saving.ModelFileError, match=r"ReduceL2 is read only as x / max\(ReduceL2"):
        convforge.load_model(norm)
    bare = saved([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bi,bi->b")], vec, "y", "bare.onnx")
    with pytest.raises(convforge.saving.ModelFileError, match=r"makes \(batch,\); convforge's Dot makes \(batch, 1\)"):
        convforge.load_model(bare)


def test_unit_normalization_of_a_channels_first_model_reads_back_on_its_axes(tmp_path):
    """Found by a review: read into a channels-first model, the graph's NCHW axes were remapped as
    for a channels-last one (axis 1 read as 3): silently wrong predictions."""
    model = seeded([layers.Conv2D(4, 3, data_format="channels_first", input_shape=(4, 6, 6)),
                    layers.UnitNormalization(axis=1)])
    path = tmp_path / "cf.onnx"
    model.export(path)
    back = convforge.load_model(path)
    assert back.layers[-1].axis == 1
    x = images((3, 4, 6, 6))
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


# ---------------------------------------------------------------------------
# Found by a review against onnxruntime (stop 40): each of these was a wrong answer, a bare
# Python error, or a refusal of a file the spec allows
# ---------------------------------------------------------------------------


def save_model(path, nodes, inits, input_shape, output_shape=None, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_matmul_plus_a_constant_per_step_is_not_taken_for_a_bias_per_unit(tmp_path):
    # (steps, 1) is one value per step, spread over the units; with steps == units it was
    # folded into the Dense as one bias per unit, off by up to 30.
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((5, 4)).astype(np.float32)
    per_step = (np.arange(4, dtype=np.float32) * 10).reshape(4, 1)
    nodes = [helper.make_node("MatMul", ["x", "K"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, [numpy_helper.from_array(kernel, "K"),
                                                   numpy_helper.from_array(per_step, "b")], ("n", 4, 5))
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    want = run_ort(path, x)
    np.testing.assert_allclose(want, x @ kernel + per_step, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(convforge.load_model(path).predict(x, verbose=0), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", [(1, 3), (1, 1), (3,), ()])
def test_gemm_bias_of_one_row_imports(shape, tmp_path):
    # tf2onnx and older exporters write a Dense bias as C of shape (1, N): refused until stop 40.
    rng = np.random.default_rng(1)
    b, c = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="fc", beta=0.5)
    path = save_model(tmp_path / "m.onnx", [node], [numpy_helper.from_array(b, "B"), numpy_helper.from_array(c, "C")],
                      ("n", 5))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(convforge.load_model(path).predict(x, verbose=0), run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_gemm_bias_per_row_is_refused_by_name(tmp_path):
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="fc")
    path = save_model(tmp_path / "m.onnx", [node], [weights("B", (5, 3)), weights("C", (4, 3))], (4, 5))
    with pytest.raises(ModelFileError, match=r"node 'fc' \(Gemm\): bias of shape \(4, 3\) is not one value per unit"):
        convforge.load_model(path)


def test_folded_integer_division_truncates_toward_zero(tmp_path):
    # A Slice's start computed as Div(-7, 2): ONNX's integer Div truncates (-3), where NumPy's
    # floor_divide gave -4, and the crop kept a row too many.
    i64 = lambda v: numpy_helper.from_array(np.array(v, np.int64))  # noqa: E731
    inits = [numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "W")]
    for name, value in (("n7", [-7]), ("two", [2]), ("end", [2**62]), ("axis", [2])):
        tensor = i64(value)
        tensor.name = name
        inits.append(tensor)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Div", ["n7", "two"], ["start"]),
             helper.make_node("Slice", ["c", "start", "end", "axis"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, inits, ("n", 2, 6, 6))
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6)).astype(np.float32)
    want = run_ort(path, x)
    assert want.shape == (2, 3, 3, 6)
    got = convforge.load_model(path, input_layout="channels_first").predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("extra, value", [(["", "", "s"], np.array([1, 3, 6 * 2**30, 6], np.int64)),
                                          (["", "s"], np.array([1, 1, 2**20, 2**20], np.float32))],
                         ids=["sizes", "scales"])
def test_a_resize_to_a_huge_output_is_refused_before_any_allocation(extra, value, tmp_path):
    # A 201-byte file made load_model ask for 48 GiB (MemoryError) before the output's bound.
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Resize", ["c", *extra], ["y"], name="up")]
    path = save_model(tmp_path / "m.onnx", nodes, [weights("W", (3, 2, 1, 1)), numpy_helper.from_array(value, "s")],
                      ("n", 2, 6, 6))
    load_small(path)  # warm: the first load imports modules, which tracemalloc would count
    assert "values per sample, too many" in load_small(path, limit=2**20)


@pytest.mark.parametrize("make, inits, message", [
    # A Transpose after a Conv whose one attribute is not perm: an IndexError
    (lambda: [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
              helper.make_node("Transpose", ["c"], ["y"], name="t", foo=1)],
     [weights("W", (3, 2, 1, 1))], r"node 't' \(Transpose\), attribute 'foo'"),
    # Weights with an empty axis: the layer's own ValueError, naming neither the file nor the node
    (lambda: [helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], [weights("W", (0, 2, 1, 1))],
     r"node 'conv' \(Conv\): weights of shape \(0, 2, 1, 1\) hold no filter or no tap"),
    (lambda: [helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], [weights("W", (3, 2, 0, 1))],
     r"node 'conv' \(Conv\): weights of shape \(3, 2, 0, 1\) hold no filter or no tap"),
    # A Scale that does not broadcast to the normalised axes: NumPy's broadcast error
    (lambda: [helper.make_node("LayerNormalization", ["x", "S"], ["y"], name="ln", axis=2)], [weights("S", (36,))],
     r"node 'ln' \(LayerNormalization\): Scale / B of shapes \[\(36,\)\]; expected \(6, 6\)"),
    # Messages that named the wrong thing
    (lambda: [helper.make_node("Transpose", ["x"], ["y"], name="t")], [],
     r"a transpose \[3, 2, 1, 0\] \(no perm: all axes reversed\)"),
    (lambda: [helper.make_node("BatchNormalization", ["x", "S", "S", "S", "S"], ["y"], name="bn", epsilon=0.0)],
     [weights("S", (2,))], r"attribute 'epsilon': epsilon 0.0 is out of range: expected 0 < epsilon < 1$"),
    (lambda: [helper.make_node("Relu", ["x"], ["z"], name="r")], [],
     r"the graph output 'y' is made by no node and is no initializer"),
], ids=["transpose-attribute", "no-filter", "no-tap", "layer-norm-scale", "no-perm", "epsilon", "no-producer"])
def test_import_errors_name_the_node_and_what_is_wrong(make, inits, message, tmp_path):
    path = save_model(tmp_path / "m.onnx", make(), inits, ("n", 2, 6, 6))
    with pytest.raises(ModelFileError, match=message):
        convforge.load_model(path)


def test_opset_9_slice_is_refused_with_what_to_do(tmp_path):
    node = helper.make_node("Slice", ["x"], ["y"], name="s", starts=[1], ends=[5], axes=[2])
    path = save_model(tmp_path / "m.onnx", [node], [], ("n", 2, 6, 6), opset=9)
    with pytest.raises(ModelFileError, match=r"node 's' \(Slice\), attribute '\w+': opset 9's Slice .* opset 10 or "
                                             r"later"):
        convforge.load_model(path)


@pytest.mark.parametrize("scale_shape", [(6,), (1, 6), (6, 1), (6, 6)])
def test_layer_normalization_scale_broadcast_to_the_normalised_axes(scale_shape, tmp_path):
    rng = np.random.default_rng(4)
    scale = rng.standard_normal(scale_shape).astype(np.float32)
    bias = rng.standard_normal((6,)).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "S", "B"], ["y"], name="ln", axis=2)
    path = save_model(tmp_path / "m.onnx", [node], [numpy_helper.from_array(scale, "S"),
                                                    numpy_helper.from_array(bias, "B")], ("n", 3, 6, 6))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    got = convforge.load_model(path).predict(x.transpose(0, 2, 3, 1), verbose=0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale_shape", [(1, 6, 6), (1, 1, 6, 6), (1, 6, 1)])
def test_layer_normalization_scale_with_leading_axes_of_one(scale_shape, tmp_path):
    # Leading axes of 1 line up with the axes not normalised (batch, channels): ONNX broadcasts
    # them, onnxruntime takes them; they were refused as "Scale / B of shapes".
    rng = np.random.default_rng(7)
    scale = rng.standard_normal(scale_shape).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "S"], ["y"], name="ln", axis=2)
    path = save_model(tmp_path / "m.onnx", [node], [numpy_helper.from_array(scale, "S")], ("n", 3, 6, 6))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    got = convforge.load_model(path).predict(x.transpose(0, 2, 3, 1), verbose=0).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=1e-4, atol=1e-4)


def test_layer_normalization_of_features_with_a_scale_of_1_by_n(tmp_path):
    rng = np.random.default_rng(8)
    scale, bias = rng.standard_normal((1, 6)).astype(np.float32), rng.standard_normal((1, 6)).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "S", "B"], ["y"], name="ln", axis=-1)
    path = save_model(tmp_path / "m.onnx", [node], [numpy_helper.from_array(scale, "S"),
                                                    numpy_helper.from_array(bias, "B")], ("n", 6))
    x = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(convforge.load_model(path).predict(x, verbose=0), run_ort(path, x), rtol=1e-4, atol=1e-4)


def test_layer_normalization_scale_per_channel_of_an_image_is_refused(tmp_path):
    # (3, 6, 6) scales each channel's rows differently: not a LayerNormalization's weights over
    # its (6, 6) axes, so refused by name rather than imported wrong.
    node = helper.make_node("LayerNormalization", ["x", "S"], ["y"], name="ln", axis=2)
    scale = np.random.default_rng(9).standard_normal((3, 6, 6)).astype(np.float32)
    path = save_model(tmp_path / "m.onnx", [node], [numpy_helper.from_array(scale, "S")], ("n", 3, 6, 6))
    with pytest.raises(ModelFileError, match=r"node 'ln' \(LayerNormalization\): Scale / B of shapes \[\(3, 6, 6\)\]"):
        convforge.load_model(path)


@pytest.mark.parametrize("training", [False, True])
def test_dropout_with_a_boolean_training_mode(training, tmp_path):
    # The spec's training_mode is a BOOL; every BOOL tensor was refused as an element type.
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Dropout", ["c", "r", "t"], ["y"], name="drop")]
    inits = [numpy_helper.from_array(np.random.default_rng(5).standard_normal((3, 2, 1, 1)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array(0.3, np.float32), "r"), numpy_helper.from_array(np.array(training), "t")]
    path = save_model(tmp_path / "m.onnx", nodes, inits, ("n", 2, 6, 6))
    if training:
        with pytest.raises(ModelFileError, match=r"node 'drop' \(Dropout\).*training"):
            convforge.load_model(path)
        return
    x = np.random.default_rng(6).standard_normal((2, 2, 6, 6)).astype(np.float32)
    got = convforge.load_model(path, input_layout="channels_first").predict(x, verbose=0)
    np.testing.assert_allclose(got, run_ort(path, x), rtol=RTOL, atol=ATOL)


def test_leaky_relu_with_a_negative_alpha_is_a_model_file_error(tmp_path):
    # A bare ValueError from the layer, naming neither the file nor the node.
    node = helper.make_node("LeakyRelu", ["x"], ["y"], name="lr", alpha=-0.3)
    path = save_model(tmp_path / "m.onnx", [node], [], ("n", 6))
    with pytest.raises(ModelFileError, match=r"node 'lr' \(LeakyRelu\), attribute 'alpha': a negative slope -0\.3"):
        convforge.load_model(path)


@pytest.mark.parametrize("between", [[], ["Relu"], ["Sigmoid", "Relu"]])
def test_a_flatten_chain_of_an_nchw_image_imports_channels_last_and_says_so(between, tmp_path):
    # PyTorch's MNIST MLP, nn.Sequential(nn.Flatten(), nn.Linear(...)) on (batch, 3, 7, 9) images:
    # the importer's own Flatten counted as a channels-first layer, so the chain was taken as a
    # channels-first Sequential -- which reads its input as NHWC: the features were scrambled,
    # silently (off by ~2 with |output| ~1). Now it is the documented channels-last model, with
    # the warning that says to transpose.
    rng = np.random.default_rng(10)
    nodes, last = [], "x"
    for i, op in enumerate(between):
        nodes.append(helper.make_node(op, [last], [f"a{i}"]))
        last = f"a{i}"
    nodes += [helper.make_node("Flatten", [last], ["f"], axis=1), helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 189)).astype(np.float32) * 0.1, "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")]
    path = save_model(tmp_path / "mlp.onnx", nodes, inits, ("n", 3, 7, 9))
    with pytest.warns(UserWarning, match=r"is NCHW, but its convforge model takes channels-last images"):
        model = convforge.load_model(path)
    assert model.input_shape == (None, 7, 9, 3)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x.transpose(0, 2, 3, 1), verbose=0), run_ort(path, x), rtol=1e-5, atol=1e-5)


def test_a_resize_refused_for_its_sizes_shows_the_batch_as_batch(tmp_path):
    # The message showed the importer's stand-in for the batch: sizes [-1099511627776, 3, 10, 18].
    torch = pytest.importorskip("torch")
    path, _ = exported_torch(torch.nn.Upsample(size=(10, 18)), torch.randn(2, 3, 7, 9), tmp_path, opset_version=17)
    with pytest.raises(ModelFileError, match=r"sizes \[batch, 3, 10, 18\] are not whole multiples of the input's "
                                             r"\('batch', 3, 7, 9\)"):
        convforge.load_model(path)
