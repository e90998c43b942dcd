"""The functional API: convforge.Input, layers called on symbolic tensors, convforge.Model(inputs, outputs).

Shapes, parameter counts and layer order are compared with numbers printed by Keras 3.15.1
(KERAS_BACKEND=torch) for the same graphs; gradients are checked numerically in float64, and each
check is shown to fail when the backward pass it guards is broken.
"""

import json
import re
import zipfile

import numpy as np
import pytest

import convforge
from convforge import callbacks, layers
from convforge.gradcheck import check_model_gradients
from convforge.layers import merging
from convforge.models import functional


def inception_block():
    x = convforge.Input((16, 16, 8), name="x")
    b1 = layers.Conv2D(6, 1, activation="relu", name="b1")(x)
    b2 = layers.Conv2D(4, 1, activation="relu", name="b2a")(x)
    b2 = layers.Conv2D(8, 3, padding="same", activation="relu", name="b2b")(b2)
    b3 = layers.MaxPooling2D(3, strides=1, padding="same", name="b3a")(x)
    b3 = layers.Conv2D(2, 1, name="b3b")(b3)
    c = layers.Concatenate(name="cat")([b1, b2, b3])
    return convforge.Model(x, layers.Dense(10, name="out")(layers.Flatten(name="flat")(c)), name="inception")


def residual_block(dtype="float32", filters=8, classes=3):
    x = convforge.Input((12, 12, 3), name="x", dtype=dtype)
    h = layers.Conv2D(filters, 3, padding="same", activation="relu", name="c1")(x)
    h = layers.Conv2D(2 * filters, 3, strides=2, padding="same", name="c2")(h)
    s = layers.Conv2D(2 * filters, 1, strides=2, name="proj")(x)
    a = layers.ReLU(name="relu")(layers.Add(name="add")([h, s]))
    y = layers.Dense(classes, activation="softmax", name="out")(layers.Flatten(name="flat")(a))
    return convforge.Model(x, y, name="resnet")


def siamese(dtype="float32"):
    a = convforge.Input((10, 10, 2), name="a", dtype=dtype)
    b = convforge.Input((10, 10, 2), name="b", dtype=dtype)
    conv = layers.Conv2D(3, 3, name="shared")
    m = layers.Multiply(name="mul")([conv(a), conv(b)])
    v = layers.Average(name="avg")([conv(a), m])
    return convforge.Model([a, b], layers.Dense(4, name="out")(layers.Flatten(name="flat")(v)), name="siamese")


# (layer name, output shape, params) per layer and the total, from Keras 3.15.1's
# model.layers / l.output.shape / l.count_params() for the same graphs (KERAS_BACKEND=torch).
KERAS = {
    "inception": (41374, [("x", (None, 16, 16, 8), 0), ("b2a", (None, 16, 16, 4), 36), ("b3a", (None, 16, 16, 8), 0),
                          ("b1", (None, 16, 16, 6), 54), ("b2b", (None, 16, 16, 8), 296),
                          ("b3b", (None, 16, 16, 2), 18), ("cat", (None, 16, 16, 16), 0), ("flat", (None, 4096), 0),
                          ("out", (None, 10), 40970)]),
    "resnet": (3187, [("x", (None, 12, 12, 3), 0), ("c1", (None, 12, 12, 8), 224), ("c2", (None, 6, 6, 16), 1168),
                      ("proj", (None, 6, 6, 16), 64), ("add", (None, 6, 6, 16), 0), ("relu", (None, 6, 6, 16), 0),
                      ("flat", (None, 576), 0), ("out", (None, 3), 1731)]),
    "siamese": (829, [("a", (None, 10, 10, 2), 0), ("b", (None, 10, 10, 2), 0), ("shared", (None, 8, 8, 3), 57),
                      ("mul", (None, 8, 8, 3), 0), ("avg", (None, 8, 8, 3), 0), ("flat", (None, 192), 0),
                      ("out", (None, 4), 772)]),
}


@pytest.mark.parametrize("make", [inception_block, residual_block, siamese], ids=lambda f: f.__name__)
def test_layers_shapes_and_counts_equal_keras(make):
    model = make()
    total, rows = KERAS[model.name]
    assert [(l.name, l.output.shape, l.count_params()) for l in model.layers] == rows
    assert model.count_params() == total
    lines = []
    model.summary(print_fn=lines.append)
    table = lines[0]
    assert f"Total params: {total:,}" in table and "Connected to" in table
    for name, shape, params in rows:
        assert any(line.startswith(f"{name} (") and str(shape) in line and f"{params:,}" in line
                   for line in table.splitlines()), (name, table)


def test_summary_connected_to_column_numbers_calls_as_keras():
    lines = []
    siamese().summary(print_fn=lines.append)
    rows = lines[0].splitlines()
    at = next(i for i, r in enumerate(rows) if r.startswith("shared (Conv2D)"))
    # Keras 3.15.1: "a[0][0], b[0][0], a[0][0]" for the shared conv; mul "shared[0][0], shared[1][0]";
    # avg "shared[2][0], mul[0][0]".
    assert [r.split()[-1] for r in rows[at : at + 3]] == ["a[0][0],", "b[0][0],", "a[0][0]"]
    mul = next(i for i, r in enumerate(rows) if r.startswith("mul (Multiply)"))
    assert [r.split()[-1] for r in rows[mul : mul + 2]] == ["shared[0][0],", "shared[1][0]"]
    avg = next(i for i, r in enumerate(rows) if r.startswith("avg (Average)"))
    assert [r.split()[-1] for r in rows[avg : avg + 2]] == ["shared[2][0],", "mul[0][0]"]


def test_summary_keras_options_trainable_column_layer_range_and_chain_tables():
    model = residual_block()
    model.get_layer("c1").trainable = False
    lines = []
    model.summary(print_fn=lines.append, show_trainable=True)
    rows = lines[0].splitlines()
    assert rows[2].split()[-2:] == ["to", "Trainable"]
    # Keras 3.15.1's column: "-" for a layer without weights, else Y or N.
    trainable = {r.split()[0]: r.split()[-1] for r in rows if r.split() and r.split()[0] in KERAS_NAMES}
    assert trainable == {"x": "-", "c1": "N", "c2": "Y", "proj": "Y", "add": "-", "relu": "-", "flat": "-",
                         "out": "Y"}
    lines = []
    model.summary(print_fn=lines.append, layer_range=["c2", "add"])
    listed = [r.split()[0] for r in lines[0].splitlines() if r.split() and r.split()[0] in KERAS_NAMES]
    assert listed == ["c2", "proj", "add"] and "Total params: 3,187" in lines[0]
    with pytest.raises(ValueError, match="layer_range names 'nope'"):
        model.summary(layer_range=["c2", "nope"])
    with pytest.raises(ValueError, match="positions must be 4"):
        model.summary(positions=[0.5, 1.0])
    lines = []
    model.summary(print_fn=lines.append, positions=[30, 60, 70, 100], expand_nested=True)
    assert lines[0].splitlines()[2].index("Output Shape") == 30
    # A chain (each layer called once, on the one before): Keras 3 drops "Connected to".
    x = convforge.Input((6, 6, 1))
    chain = convforge.Model(x, layers.Dense(2)(layers.Flatten()(layers.Conv2D(2, 3)(x))))
    lines = []
    chain.summary(print_fn=lines.append)
    assert "Connected to" not in lines[0] and "(InputLayer)" in lines[0]
    lines = []
    siamese().summary(print_fn=lines.append)
    assert "Connected to" in lines[0]
    # A narrow line: every column still at least one space wider than its header ("Param #" ran
    # into "Connected to" at line_length=60).
    lines = []
    model.summary(print_fn=lines.append, line_length=60)
    assert "Param # " in lines[0].splitlines()[2] and "#Connected" not in lines[0]


KERAS_NAMES = {"x", "c1", "c2", "proj", "add", "relu", "flat", "out"}


def test_symbolic_tensors_layer_input_output_and_model_io():
    x = convforge.Input(shape=(28, 28, 1), name="image")
    conv = layers.Conv2D(8, 3, activation="relu")
    y = conv(x)
    assert x.shape == (None, 28, 28, 1) and y.shape == (None, 26, 26, 8) and y.dtype == "float32"
    assert conv.input is x and conv.output is y
    z = layers.Dense(5)(layers.Flatten()(y))
    model = convforge.Model(inputs=x, outputs=z)
    assert isinstance(model, convforge.Model) and isinstance(model, convforge.models.Functional)
    assert model.inputs == [x] and model.outputs == [z] and model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 5)
    # Keras's model.input / model.output: the structures given to Model(...), the tensors
    # themselves (a feature extractor is Model(base.input, base.get_layer(...).output)).
    assert model.input is x and model.output is z
    features = convforge.Model(model.input, model.layers[1].output)
    assert features.output_shape == (None, 26, 26, 8)
    two = convforge.Model([x], [z, y])
    assert two.input == [x] and two.output == [z, y]
    assert isinstance(model.layers[0], layers.InputLayer) and model.layers[0].name == "image"
    # Named when made, as Keras's (its message names the layer): not "The layer None".
    with pytest.raises(ValueError, match=r"^The layer dense_\d+ has never been called"):
        _ = layers.Dense(3).output


def test_get_layer_by_name_or_index_and_its_errors_as_keras():
    x = convforge.Input((3,), name="gl_in")
    model = convforge.Model(x, layers.Dense(2, name="gl_out")(layers.Dense(4, name="gl_mid")(x)))
    assert model.get_layer("gl_mid") is model.layers[1] and model.get_layer(index=-1).name == "gl_out"
    # Keras raises ValueError for both, neither, and an index past the end (not IndexError, nor
    # a silent pick of the index when a name is given too).
    with pytest.raises(ValueError, match="name or an index, not both"):
        model.get_layer("gl_mid", 2)
    with pytest.raises(ValueError, match="needs a layer name or an index"):
        model.get_layer()
    with pytest.raises(ValueError, match="index 3 is out of range: the model has 3 layers"):
        model.get_layer(index=3)
    with pytest.raises(ValueError, match="index -4 is out of range"):
        model.get_layer(index=-4)
    with pytest.raises(TypeError, match="index must be an int; got '1'"):
        model.get_layer(index="1")
    seq = convforge.Sequential([convforge.Input((3,)), layers.Dense(2, name="gl_seq")])
    assert seq.get_layer(index=0).name == "gl_seq"
    with pytest.raises(ValueError, match="index 1 is out of range: the model has 1 layers"):
        seq.get_layer(index=1)


def test_feature_maps_of_a_sequential_model_through_a_functional_one():
    convforge.seed(1)
    seq = convforge.Sequential([
        layers.Input(shape=(10, 10, 2)),
        layers.Conv2D(4, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    assert isinstance(seq, convforge.Model) and seq.inputs[0].shape == (None, 10, 10, 2)
    assert seq.outputs[0] is seq.layers[-1].output
    maps = convforge.Model(seq.inputs, [layer.output for layer in seq.layers])
    x = np.random.default_rng(0).standard_normal((5, 10, 10, 2)).astype(np.float32)
    got = maps.predict(x, verbose=0)
    want = seq.activations(x)
    assert len(got) == 4
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_a_sequential_without_input_shape_is_built_by_the_tensor_it_is_called_on():
    # Keras: head = Sequential([Dense(..), ...]) with no Input, then head(features) in a graph.
    convforge.seed(3)
    head = convforge.Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(2)], name="head")
    x = convforge.Input((8, 8, 3))
    y = head(x)
    assert head.built and y.shape == (None, 2) and head.count_params() == 3 * 3 * 3 * 4 + 4 + 6 * 6 * 4 * 2 + 2
    model = convforge.Model(x, y)
    data = np.random.default_rng(0).standard_normal((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(data, verbose=0), head.predict(data, verbose=0))
    with pytest.raises(ValueError, match=r"input 0 has shape \(None, 8, 8, 3\); the tensor it was called on has "
                                         r"\(None, 9, 9, 3\)"):
        head(convforge.Input((9, 9, 3)))
    with pytest.raises(ValueError, match="without layers"):
        convforge.Sequential()(convforge.Input((3,)))


def _data(rng, shapes, n=6):
    return [rng.standard_normal((n, *s)) for s in shapes]


def _check(model, x, y, loss):
    return check_model_gradients(model, x, y, loss=loss, num_coords=6)


@pytest.mark.parametrize("merge", ["add", "concatenate", "multiply", "average", "subtract", "maximum", "minimum"])
def test_gradients_of_merge_graphs(merge):
    convforge.seed(2)
    x = convforge.Input((6, 6, 2), dtype="float64")
    a = layers.Conv2D(3, 3, padding="same", activation="tanh")(x)
    b = layers.Conv2D(3, 3, padding="same", activation="relu")(x)  # relu output also read by the merge
    merged = {
        "add": layers.Add(),
        "concatenate": layers.Concatenate(),
        "multiply": layers.Multiply(),
        "average": layers.Average(),
        "subtract": layers.Subtract(),
        "maximum": layers.Maximum(),
        "minimum": layers.Minimum(),
    }[merge]([a, b])
    pooled = layers.MaxPooling2D(2)(b)  # fan-out 2 from the ReLU: the pool must not apply its gradient
    y = layers.Dense(3)(layers.Concatenate()([layers.Flatten()(merged), layers.Flatten()(pooled)]))
    model = convforge.Model(x, y)
    rng = np.random.default_rng(3)
    xs, ys = rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((4, 3))
    report = _check(model, xs, ys, "mse")
    assert report.passed, report
    assert not any(getattr(l, "_gates_relu", False) for l in model.layers)


def test_gradients_of_shared_layers_and_several_inputs_and_outputs():
    convforge.seed(4)
    model = siamese("float64")
    rng = np.random.default_rng(5)
    xs = _data(rng, [(10, 10, 2), (10, 10, 2)], 3)
    report = _check(model, xs, rng.standard_normal((3, 4)), "mse")
    assert report.passed, report
    # Two outputs, losses per output and weights: the checked loss is the weighted sum.
    a = convforge.Input((5,), dtype="float64", name="a")
    shared = layers.Dense(4, activation="tanh", name="shared")
    h1, h2 = shared(a), shared(layers.Dense(5, name="pre")(a))
    out1 = layers.Dense(3, activation="softmax", name="cls")(layers.Add()([h1, h2]))
    out2 = layers.Dense(2, name="reg")(h2)
    two = convforge.Model(a, [out1, out2])
    two.compile("sgd", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, loss_weights=[0.7, 1.9])
    report = check_model_gradients(two, rng.standard_normal((4, 5)), [rng.integers(0, 3, 4), rng.standard_normal((4, 2))])
    assert report.passed, report


def test_gradient_check_fails_when_a_merge_backward_is_broken(monkeypatch):
    convforge.seed(6)
    rng = np.random.default_rng(7)
    xs, ys = rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 2))

    def build(merge):
        x = convforge.Input((6, 6, 2), dtype="float64")
        a = layers.Conv2D(2, 3, padding="same")(x)
        b = layers.Conv2D(3 if merge is layers.Concatenate else 2, 3, padding="same")(x)
        return convforge.Model(x, layers.Dense(2)(layers.Flatten()(merge()([a, b]))))

    for cls, broken in [
        (layers.Add, lambda self, dy: [dy, 0.5 * dy]),
        (layers.Multiply, lambda self, dy: [dy * self._xs[1], dy * self._xs[1]]),
        # the first piece read one channel too far along
        (layers.Concatenate, lambda self, dy: [np.ascontiguousarray(dy[:, 1 : 1 + self._sizes[0]]),
                                               np.ascontiguousarray(dy[:, self._sizes[0] :])]),
    ]:
        assert _check(build(cls), xs, ys, "mse").passed
        with monkeypatch.context() as patch:
            patch.setattr(cls, "backward", broken)
            report = _check(build(cls), xs, ys, "mse")
        assert not report.passed, (cls, report)


def test_gradient_check_fails_when_shared_calls_share_their_buffers(monkeypatch):
    """Each extra call of a shared layer runs on a copy with its own caches; without it the second
    call overwrites what the first keeps for backward, and the checker sees it."""
    convforge.seed(8)
    rng = np.random.default_rng(9)
    xs, ys = _data(rng, [(10, 10, 2), (10, 10, 2)], 3), rng.standard_normal((3, 4))
    assert _check(siamese("float64"), xs, ys, "mse").passed
    monkeypatch.setattr(functional, "call_copy", lambda layer: layer)
    report = _check(siamese("float64"), xs, ys, "mse")
    assert not report.passed
    assert any(r.key.startswith("shared/") for r in report.failures)


def test_shared_layer_gradient_is_the_sum_over_its_calls():
    convforge.seed(10)
    a = convforge.Input((3,), dtype="float64")
    dense = layers.Dense(2, use_bias=False)
    model = convforge.Model(a, layers.Add()([dense(a), dense(a)]))
    model.compile("sgd", "mse")
    x, y = np.ones((2, 3)), np.zeros((2, 2))
    loss, grads = model.loss_and_gradients(x, y)
    (key, kernel, g), = grads
    # y = 2 x W, L = mean((2xW)^2) -> dL/dW = x^T (2 * 2 * 2xW / (N*units)) -- both calls counted
    pred = 2 * x @ kernel
    np.testing.assert_allclose(g, x.T @ (2 * 2 * pred / pred.size), rtol=1e-12)
    assert loss == pytest.approx(np.mean(pred**2))


def test_fit_reduces_the_loss_and_a_residual_block_learns():
    convforge.seed(11)
    rng = np.random.default_rng(12)
    n = 96
    labels = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 12, 12, 3)).astype(np.float32) * 0.3
    for c in range(3):  # class c: a bright channel c
        x[labels == c, :, :, c] += 1.0
    model = residual_block()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert model._fused is False  # decided at fit
    history = model.fit(x, labels, batch_size=16, epochs=6, verbose=0)
    assert model._fused  # the softmax head is trained from its logits
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.evaluate(x, labels, verbose=0)[1] >= 0.9


def test_multi_input_multi_output_fit_logs_and_dict_data():
    convforge.seed(13)
    a = convforge.Input((4,), name="a")
    b = convforge.Input((3,), name="b")
    h = layers.Concatenate()([layers.Dense(5, activation="relu")(a), b])
    cls = layers.Dense(2, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = convforge.Model([a, b], [cls, reg])
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"], metrics={"cls": ["accuracy"], "reg": "mae"},
                  loss_weights={"cls": 1.0, "reg": 0.25})
    with pytest.raises(ValueError, match=r"one entry per output .* got a list of 1"):  # as Keras 3
        model.compile("adam", loss="mse", metrics=["mae"])
    per_output = convforge.Model([a, b], [cls, reg])
    per_output.compile("adam", loss="mse", metrics=["mae", ["mse", "mae"]])  # Keras 3.15.1's names and
    assert per_output.metrics_names == ["loss", "cls_loss", "reg_loss", "cls_mae", "reg_mae", "reg_mse"]  # order
    rng = np.random.default_rng(14)
    xa, xb = rng.standard_normal((40, 4)), rng.standard_normal((40, 3))
    y_cls, y_reg = (xa[:, 0] > 0).astype(int), xb[:, :1]
    history = model.fit({"a": xa, "b": xb}, {"cls": y_cls, "reg": y_reg}, epochs=2, batch_size=8, verbose=0,
                        validation_split=0.25)
    # Keras 3.15.1's names for the same compile arguments.
    assert set(history.history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae",
                                     "val_loss", "val_cls_loss", "val_reg_loss", "val_cls_accuracy", "val_reg_mae"}
    logs = model.evaluate([xa, xb], [y_cls, y_reg], verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + 0.25 * logs["reg_loss"], rel=1e-5)
    assert model.metrics_names == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    p_cls, p_reg = model.predict([xa, xb], verbose=0)
    assert p_cls.shape == (40, 2) and p_reg.shape == (40, 1)
    # A dict without an input names the keys it has (a misspelt name shows next to the right one).
    with pytest.raises(ValueError, match=r"x is a dict with keys \['A', 'b'\], without the model inputs \['a'\]; "
                                         r"the inputs are \['a', 'b'\]"):
        model.predict({"A": xa, "b": xb}, verbose=0)
    # A y dict with a key that names no output: its targets were silently unused (Keras refuses).
    with pytest.raises(ValueError, match=r"y has keys \['reg_typo'\] that name no output"):
        model.evaluate([xa, xb], {"cls": y_cls, "reg": y_reg, "reg_typo": y_reg}, verbose=0)


def test_outputs_given_as_a_tuple_come_back_as_a_tuple():
    # Keras 3: Model(x, (a, b)).predict and model.output are tuples (lists for a list); convforge
    # gave lists for both.
    inp = convforge.Input((3,))
    a, b = layers.Dense(2)(inp), layers.Dense(1)(inp)
    x = np.zeros((4, 3), np.float32)
    as_tuple, as_list = convforge.Model(inp, (a, b)), convforge.Model(inp, [a, b])
    for model, kind in ((as_tuple, tuple), (as_list, list)):
        assert type(model.predict(x, verbose=0)) is kind and type(model.predict(x[:1], verbose=0)) is kind
        assert type(model.output) is kind and type(model.outputs) is list
        again = convforge.Model.from_config(model.get_config())
        assert type(again.predict(x, verbose=0)) is kind


def test_one_input_or_output_takes_its_array_inside_a_list_as_keras():
    # Keras flattens data structures: a model of one input and one output takes x=[x], y=[y]
    # (and a model made as Model([inp], [out]) is given data that way); convforge read the list
    # as a batch of one sample.
    convforge.seed(15)
    rng = np.random.default_rng(16)
    x_data, y_data = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((6, 2)).astype(np.float32)
    inp = convforge.Input((4,))
    out = layers.Dense(2)(inp)
    for model in (convforge.Model([inp], [out]), convforge.Model(inp, out),
                  convforge.Sequential([convforge.Input((4,)), layers.Dense(2)])):
        want = model.predict(x_data, verbose=0)
        np.testing.assert_array_equal(model.predict([x_data], verbose=0), want)
        np.testing.assert_array_equal(model.predict((x_data,), verbose=0), want)
        np.testing.assert_array_equal(model([x_data]), want)
        model.compile("sgd", loss="mse")
        assert model.evaluate([x_data], [y_data], verbose=0) == pytest.approx(model.evaluate(x_data, y_data, verbose=0))
        assert len(model.fit([x_data], (y_data,), epochs=1, verbose=0).history["loss"]) == 1
    unbuilt = convforge.Sequential([layers.Dense(2)])
    unbuilt.compile("sgd", loss="mse")
    unbuilt.fit([x_data], [y_data], epochs=1, verbose=0)
    assert unbuilt.input_shape == (None, 4)
    # A nested Python list of numbers is still the samples it spells.
    assert unbuilt.predict([[1.0, 2.0, 3.0, 4.0]], verbose=0).shape == (1, 2)


def test_loss_weights_are_finite_numbers_named_by_output():
    x = convforge.Input((4,))
    model = convforge.Model(x, [layers.Dense(2, name="lw_a")(x), layers.Dense(1, name="lw_b")(x)])
    # NaN made every total loss NaN (each batch skipped as diverged); a string failed in float().
    with pytest.raises(ValueError, match=r"the weight of output 'lw_a' must be finite; got nan"):
        model.compile("sgd", loss="mse", loss_weights=[float("nan"), 1.0])
    with pytest.raises(ValueError, match=r"the weight of output 'lw_b' must be finite; got inf"):
        model.compile("sgd", loss="mse", loss_weights={"lw_b": float("inf")})
    with pytest.raises(TypeError, match=r"the weight of output 'lw_a' must be a number; got 'x'"):
        model.compile("sgd", loss="mse", loss_weights=["x", 1.0])
    with pytest.raises(TypeError, match=r"must be a number; got True"):
        model.compile("sgd", loss="mse", loss_weights=[True, 1.0])
    model.compile("sgd", loss="mse", loss_weights=[-0.5, np.float32(2)])  # Keras takes any finite weight
    logs = model.evaluate(np.ones((4, 4), np.float32), [np.ones((4, 2)), np.ones((4, 1))], verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(-0.5 * logs["lw_a_loss"] + 2 * logs["lw_b_loss"], rel=1e-5)


def test_a_model_from_an_inner_tensor_stands_an_input_in_for_it(tmp_path):
    # Found by a review: Model(model.get_layer('h').output, model.output) predicted and trained,
    # but summary, get_config, save, deepcopy and clone_model failed with a bare KeyError (the
    # input's layer is not the model's). As Keras, an Input of its shape stands in for it.
    import copy

    inp = convforge.Input((6, 6, 2))
    h = layers.Conv2D(2, 3, name="inner_h")(inp)
    out = layers.Flatten(name="inner_f")(layers.BatchNormalization(name="inner_bn")(h))
    full, head = convforge.Model(inp, out), convforge.Model(h, out)
    assert isinstance(head.layers[0], layers.InputLayer) and [layer.name for layer in head.layers[1:]] == \
        ["inner_bn", "inner_f"]
    assert head.inputs[0] is not h and head.input_shape == (None, 4, 4, 2)
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 2)).astype(np.float32)
    want = head.predict(x, verbose=0)
    head.summary(print_fn=lambda *_: None)
    head.save(tmp_path / "head.npz")
    for twin in (convforge.load_model(tmp_path / "head.npz"), copy.deepcopy(head)):
        np.testing.assert_array_equal(twin.predict(x, verbose=0), want)
    clone = convforge.models.clone_model(head)
    assert [type(layer).__name__ for layer in clone.layers] == ["InputLayer", "BatchNormalization", "Flatten"]
    assert full.predict(np.zeros((2, 6, 6, 2), np.float32), verbose=0).shape == (2, 32)


def test_a_functional_chain_in_a_sequential_adds_its_layers_and_a_branchy_one_is_refused_by_name():
    # Found by a review: Sequential([base_model, ...]) said "expects a convforge layer; got
    # Functional". A chain is a stack of layers (added as a nested Sequential's are); a model
    # with branches is not, and the message says how to call it in a functional model.
    inp = convforge.Input((8, 8, 3))
    base = convforge.Model(inp, layers.Conv2D(4, 3, name="chain_conv")(inp), name="chain_base")
    model = convforge.Sequential([base, layers.GlobalAveragePooling2D(), layers.Dense(2)])
    assert model.layers[0] is base and model.count_params() == 4 * 3 * 9 + 4 + 4 * 2 + 2
    assert model.weights[0] is base.layers[1].weights[0]  # its layers are the base's own
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((2, 2), np.float32), verbose=0)
    branch_in = convforge.Input((8, 8, 3))
    branches = convforge.Model(branch_in, layers.Add()([layers.Conv2D(2, 1)(branch_in), layers.Conv2D(2, 1)(branch_in)]),
                               name="two_branches")
    with pytest.raises(NotImplementedError, match=r"Sequential cannot hold the functional model 'two_branches': .*"
                                                  r"convforge.Model\(inputs, outputs\)"):
        convforge.Sequential([branches, layers.Flatten()])
    two = convforge.Input((3,))
    with pytest.raises(NotImplementedError, match="1 inputs and 2 outputs"):
        convforge.Sequential().add(convforge.Model(two, [layers.Dense(1)(two), layers.Dense(2)(two)]))


def test_a_relu_setting_changed_after_fusion_is_followed():
    # A plain ReLU fused into the BatchNormalization, Add or conv before it (and into the
    # inference plan) computed max(x, 0) still after its max_value was set (Keras's layer reads
    # it at each call): predict ignored it, silently.
    def build(cap=None, conv_cap=None):
        convforge.seed(0)
        inp = convforge.Input((6, 6, 2))
        h = layers.ReLU(max_value=cap)(layers.BatchNormalization()(layers.Conv2D(3, 3)(inp)))
        h = layers.ReLU(max_value=cap)(layers.Add()([h, layers.Conv2D(3, 1)(h)]))
        conv = layers.Conv2D(3, 3, activation=layers.ReLU(max_value=conv_cap) if conv_cap else "relu")
        model = convforge.Model(inp, layers.Flatten()(conv(h)))
        model.compile("sgd", "mse")
        return model

    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype(np.float32) * 5
    y = np.random.default_rng(1).standard_normal((4, 12)).astype(np.float32)
    model = build()
    model.fit(x, y, verbose=0)
    model.predict(x, verbose=0)
    for layer in model.layers:
        if type(layer) is layers.ReLU:
            layer.max_value = 0.3
    model.layers[-2].activation.max_value = 0.2
    want = build(0.3, 0.2)
    want.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.predict(x, verbose=0), want.predict(x, verbose=0))
    model.fit(x, y, verbose=0, shuffle=False)
    want.fit(x, y, verbose=0, shuffle=False)
    for got, expected in zip(model.get_weights(), want.get_weights()):
        np.testing.assert_array_equal(got, expected)


def test_a_setting_of_a_shared_layer_reaches_every_call():
    # A layer's second call in a model runs on a copy (its own caches); a setting made on the
    # layer after the model was built stayed on the first call only: a shared ReLU's max_value
    # capped one output and not the other, silently. Keras has one object: both calls see it.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 4)) * 3).astype(np.float32)
    a, b = convforge.Input((4,)), convforge.Input((4,))
    dense, relu = layers.Dense(4, activation="relu"), layers.ReLU()
    model = convforge.Model([a, b], [relu(dense(a)), relu(dense(b))])
    model.predict([x, x], verbose=0)
    relu.max_value = 0.1
    for out in model.predict([x, x], verbose=0):
        assert out.max() == pytest.approx(0.1)
    # A layer held by the shared one: set in place, or replaced (each call then gets its own copy).
    dense.activation.max_value = 0.05
    model.predict([x, x], verbose=0)
    dense.activation = layers.ReLU(max_value=0.02)
    for out in model.predict([x, x], verbose=0):
        assert out.max() <= 0.02 + 1e-7
    calls = model._calls[id(dense)]
    assert len(calls) == 2 and calls[0].activation is not calls[1].activation
    # Settings the trainer reads: a shared Dropout's rate, a shared layer frozen after compile.
    model.compile("sgd", "mse")
    dense.trainable = False
    before = [w.copy() for w in model.get_weights()]
    model.fit([x, x], [x, x], verbose=0)
    for got, was in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, was)
    drop = layers.Dropout(0.0)
    twice = convforge.Model([a, b], [drop(a), drop(b)])
    drop.rate = 0.5
    assert [call.rate for call in twice._calls[id(drop)]] == [0.5, 0.5]
    # Each call keeps what is its own: gradients and whether its input needs one.
    assert all(call.grads is not calls[0].grads for call in calls[1:])


def test_sample_weights_per_output_are_refused_by_name():
    # Found by a review: a dict of weights per output failed in float() ("not 'dict'"), a list of
    # them as a shape mismatch; one array weighs each sample's total loss.
    a = convforge.Input((5,))
    h = layers.Dense(4)(a)
    model = convforge.Model(a, [layers.Dense(3, activation="softmax", name="sw_cls")(h), layers.Dense(1, name="sw_reg")(h)])
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    x = np.random.default_rng(0).random((20, 5)).astype(np.float32)
    y = [np.arange(20) % 3, np.ones((20, 1), np.float32)]
    for per_output in ({"sw_cls": np.ones(20), "sw_reg": np.ones(20)}, [np.ones(20), np.ones(20)]):
        with pytest.raises(NotImplementedError, match=r"sample_weight: one array per output .* give one array of shape "
                                                      r"\(20,\)"):
            model.evaluate(x, y, sample_weight=per_output, verbose=0)
        with pytest.raises(NotImplementedError, match=r"validation_data\[2\]: one array per output"):
            model.fit(x, y, validation_data=(x, y, per_output), verbose=0)
        # fit itself (a second review: "float() argument must be ... not 'dict'" from a checksum)
        with pytest.raises(NotImplementedError, match=r"sample_weight: one array per output .* give one array"):
            model.fit(x, y, sample_weight=per_output, verbose=0)
    with pytest.raises(TypeError, match="sample_weight must be an array of numbers"):
        model.evaluate(x, y, sample_weight="heavy", verbose=0)
    with pytest.raises(TypeError, match="sample_weight must be an array of numbers"):
        model.fit(x, y, sample_weight="heavy", verbose=0)
    # A list of numbers, or a column of them, is one weight per sample.
    model.evaluate(x, y, sample_weight=[1.0] * 20, verbose=0)
    model.evaluate(x, y, sample_weight=[[1.0]] * 20, verbose=0)


def test_an_output_returned_by_a_nested_model_is_named_after_the_model(tmp_path):
    # Keras 3 prints ['enc', 'aux'] and ['seq_head', 'enc'] for these graphs: the output a model's call
    # returned takes the model's name (its layers being this graph's own does not change that).
    i = convforge.Input((4,))
    enc = convforge.Model(i, layers.Dense(3, name="enc_dense")(i), name="enc")
    x = convforge.Input((4,), name="x_nested")
    code = enc(x)
    model = convforge.Model(x, [code, layers.Dense(1, name="aux")(code)])
    assert model.output_names == ["enc", "aux"]
    model.compile("sgd", loss={"enc": "mse", "aux": "mse"})
    data = np.ones((4, 4), np.float32)
    logs = model.fit(data, {"enc": np.ones((4, 3), np.float32), "aux": np.ones((4, 1), np.float32)}, verbose=0).history
    assert sorted(logs) == ["aux_loss", "enc_loss", "loss"]
    head = convforge.Sequential([layers.Dense(2)], name="seq_head")
    two = convforge.Model(x, [head(x), enc(x)])
    assert two.output_names == ["seq_head", "enc"]
    two.compile("sgd", loss={"seq_head": "mse", "enc": "mse"})
    two.save(tmp_path / "two.npz")
    assert convforge.load_model(tmp_path / "two.npz").output_names == ["seq_head", "enc"]
    assert convforge.Model.from_config(two.get_config()).output_names == ["seq_head", "enc"]
    # An input a model passes through unchanged keeps its own name.
    assert convforge.Model(x, [enc(x), convforge.Model(i, i, name="same")(x)]).output_names == ["enc", "x_nested"]


def test_save_load_round_trip_and_resume_of_a_graph(tmp_path):
    convforge.seed(15)
    rng = np.random.default_rng(16)
    xs = _data(rng, [(10, 10, 2), (10, 10, 2)], 8)
    xs = [x.astype(np.float32) for x in xs]
    y = rng.standard_normal((8, 4)).astype(np.float32)
    model = siamese()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(xs, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "graph.npz"
    model.save(path)
    loaded = convforge.load_model(path)
    assert isinstance(loaded, convforge.models.Functional)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))
    assert loaded.get_compile_config() == model.get_compile_config()
    # Training continues identically from the file: one more epoch on both.
    state = convforge.random.get_state()
    model.fit(xs, y, epochs=2, initial_epoch=1, batch_size=4, verbose=0)
    convforge.random.set_state(state)
    loaded.fit(xs, y, epochs=2, initial_epoch=1, batch_size=4, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Weights only, into a fresh graph of the same architecture.
    model.save_weights(tmp_path / "w.npz")
    other = siamese()
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.predict(xs, verbose=0), model.predict(xs, verbose=0))


def test_multi_output_compile_settings_survive_saving(tmp_path):
    a = convforge.Input((3,), name="a")
    h = layers.Dense(4, name="h")(a)
    model = convforge.Model(a, [layers.Dense(2, activation="softmax", name="p")(h), layers.Dense(1, name="q")(h)])
    model.compile("sgd", loss=["sparse_categorical_crossentropy", None], metrics=[["accuracy"], []],
                  loss_weights=[2.0, 1.0])
    model.save(tmp_path / "m.npz")
    loaded = convforge.load_model(tmp_path / "m.npz")
    assert loaded.get_compile_config() == model.get_compile_config()
    # One output with a loss: no 'p_loss' beside 'loss' (Keras 3.15.1's history: ['loss', 'p_accuracy'])
    assert loaded.metrics_names == model.metrics_names == ["loss", "p_accuracy"]


def test_callbacks_work_on_graphs(tmp_path):
    convforge.seed(17)
    x = np.random.default_rng(18).standard_normal((16, 12, 12, 3)).astype(np.float32)
    y = np.arange(16) % 3
    model = residual_block()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="loss", save_best_only=True)
    stop = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[ckpt, stop])
    assert len(history.history["loss"]) == 2  # stopped by EarlyStopping
    assert isinstance(convforge.load_model(tmp_path / "best.npz"), convforge.models.Functional)


# --------------------------------------------------------------------------- bad input


def test_disconnected_and_unused_inputs():
    a, b = convforge.Input((3,), name="a1"), convforge.Input((3,), name="b1")
    y = layers.Add()([layers.Dense(2)(a), layers.Dense(2)(b)])
    with pytest.raises(ValueError, match=r"Graph disconnected: .*'b1'.*\(None, 3\).*\['a1'\]"):
        convforge.Model(a, y)
    with pytest.raises(ValueError, match=r"input 1 \('b1', shape \(None, 3\)\) is not connected to any output"):
        convforge.Model([a, b], layers.Dense(2)(a))


def test_a_cycle_is_reported():
    a = convforge.Input((3,), name="a2")
    d1, d2 = layers.Dense(3, name="cyc1"), layers.Dense(3, name="cyc2")
    h = d1(a)
    y = d2(h)
    d1._inbound_nodes[0].inputs = [y]  # forged: the public API cannot make a cycle
    with pytest.raises(ValueError, match="cycle through layer 'cyc"):
        convforge.Model(a, y)


def test_mismatched_merge_shapes_name_layers_and_shapes():
    x = convforge.Input((6, 6, 2), name="img3")
    a = layers.Conv2D(3, 3, name="conv_a")(x)
    b = layers.Conv2D(3, 1, name="conv_b")(x)
    with pytest.raises(ValueError, match=r"layer 'add_bad' \(Add\) cannot take .*\(None, 4, 4, 3\), \(None, 6, 6, 3\) "
                                         r"\(from 'conv_a', 'conv_b'\).*incompatible shapes"):
        layers.Add(name="add_bad")([a, b])
    with pytest.raises(ValueError, match=r"Concatenate.*matching shapes except for the concatenation axis"):
        layers.Concatenate()([a, b])
    with pytest.raises(ValueError, match=r"out of range .* or is the batch axis"):
        layers.Concatenate(axis=0)([a, a])
    with pytest.raises(ValueError, match="call it on a list"):
        layers.Add()(a)


def test_concatenate_axes_follow_keras():
    x = convforge.Input((4, 5, 2))
    assert layers.Concatenate(axis=1)([x, x]).shape == (None, 8, 5, 2)
    assert layers.Concatenate(axis=2)([x, x]).shape == (None, 4, 10, 2)
    assert layers.Concatenate(axis=-1)([x, x]).shape == (None, 4, 5, 4)
    model = convforge.Model(x, [layers.Concatenate(axis=ax)([x, x]) for ax in (1, 2, 3)])
    data = np.arange(2 * 4 * 5 * 2, dtype=np.float32).reshape(2, 4, 5, 2)
    for got, ax in zip(model.predict(data, verbose=0), (1, 2, 3)):
        np.testing.assert_array_equal(got, np.concatenate([data, data], axis=ax))


def test_input_dtype_is_float32_float64_or_integer_and_nothing_else():
    assert convforge.Input((3,), dtype="float64").dtype == "float64" and convforge.Input((3,)).dtype == "float32"
    assert convforge.Input((3,), dtype=np.float64).dtype == "float64"
    assert convforge.Input((3,), dtype="int64").dtype == "float32"  # ids enter as float32 values
    # An unknown name once became float64 (None compares equal to np.dtype('float64')).
    for bad in ("banana", "bool", "float16", "complex64", [1]):
        with pytest.raises(ValueError, match=r"Input dtype must be 'float32', 'float64' or an integer type \(ids for "
                                             r"an Embedding\); got " + re.escape(repr(bad))):
            convforge.Input((3,), dtype=bad)


def _token_classifiers(lib, dtype):
    """keras.io's text classifiers' shape: integer ids, Embedding, a Conv1D, pooling; functional and Sequential."""
    layers = lib.layers
    inputs = lib.Input(shape=(12,), dtype=dtype)
    h = layers.Embedding(50, 8)(inputs)
    h = layers.GlobalMaxPooling1D()(layers.Conv1D(4, 3, activation="relu")(h))
    functional = lib.Model(inputs, layers.Dense(1, activation="sigmoid")(h))
    sequential = lib.Sequential([lib.Input(shape=(12,), dtype=dtype), layers.Embedding(50, 8),
                                 layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")])
    return functional, sequential


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_an_integer_input_takes_token_ids(dtype, tmp_path):
    # Keras's text tutorials start with Input(shape=..., dtype="int64"): it was refused.
    ids = np.random.default_rng(0).integers(0, 50, (6, 12)).astype(dtype)
    for model in _token_classifiers(convforge, dtype):
        np.testing.assert_array_equal(model.predict(ids, verbose=0), model.predict(ids.astype(np.float32), verbose=0))
        assert model.layers[0].get_config()["dtype"] == dtype if isinstance(model.layers[0], convforge.layers.InputLayer) \
            else True
        for file in ("m.keras", "m.npz"):
            model.save(tmp_path / file)
            back = convforge.load_model(tmp_path / file)
            np.testing.assert_array_equal(back.predict(ids, verbose=0), model.predict(ids, verbose=0))
        # A Sequential's config, and so its copies and files, keep the dtype too (they said float32).
        for copy in (convforge.models.clone_model(model), type(model).from_config(model.get_config())):
            copy.save(tmp_path / "copy.keras")
            with zipfile.ZipFile(tmp_path / "copy.keras") as z:
                first = json.loads(z.read("config.json"))["config"]["layers"][0]
            assert first["class_name"] == "InputLayer" and first["config"]["dtype"] == dtype


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's torch -> NumPy of int ids
def test_integer_inputs_in_keras_files_both_ways(tmp_path):
    from model_checks import real_keras

    keras = real_keras()
    ids = np.random.default_rng(1).integers(0, 50, (6, 12)).astype("int64")
    for ours, theirs in zip(_token_classifiers(convforge, "int64"), _token_classifiers(keras, "int64")):
        theirs.save(tmp_path / "k.keras")
        back = convforge.load_model(tmp_path / "k.keras")
        np.testing.assert_allclose(back.predict(ids, verbose=0), theirs.predict(ids, verbose=0), rtol=1e-5, atol=1e-6)
        ours.save(tmp_path / "c.keras")
        loaded = keras.models.load_model(tmp_path / "c.keras")
        assert loaded.inputs[0].dtype == "int64"
        np.testing.assert_allclose(loaded.predict(ids, verbose=0), ours.predict(ids, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_variable_input_size_is_refused_with_its_reason():
    # Keras's Input(shape=(None, None, 3)) (any image size): convforge plans every layer for one size,
    # and said only "must be a tuple of positive ints", as if None were a typo.
    for shape in ((None, None, 3), (None, 8)):
        with pytest.raises(ValueError, match=r"has a None \(variable\) size: convforge builds every model for fixed "
                                             r"sizes"):
            convforge.Input(shape=shape)
    with pytest.raises(ValueError, match="None"):
        convforge.Input(batch_shape=(None, None, 4))
    assert "``None`` (a variable height or width) is not supported" in " ".join(convforge.Input.__doc__.split())


def test_model_names_must_be_strings_without_a_slash():
    # Keras: "Argument `name` must be a string and cannot contain character `/`"; convforge took any
    # object, which then titled the summary and went into the model file.
    x = convforge.Input((3,))
    y = layers.Dense(2)(x)
    for bad in (3, ["a"], "a/b"):
        with pytest.raises(ValueError, match=r"name must be a string without '/'; got " + re.escape(repr(bad))):
            convforge.Model(x, y, name=bad)
        with pytest.raises(ValueError, match=r"name must be a string without '/'; got " + re.escape(repr(bad))):
            convforge.Sequential([layers.Dense(2)], name=bad)
    assert convforge.Model(x, y, name="").name == "functional" and convforge.Model(x, y, name="net").name == "net"
    assert convforge.Sequential(name=None).name == "sequential"


def test_non_symbolic_inputs_are_rejected():
    x = convforge.Input((3,))
    with pytest.raises(TypeError, match="^input 1 of layer 'add' \\(Add\\) is a NumPy array of shape \\(2, 3\\), not a symbolic "
                                        "tensor: .*or on NumPy arrays alone"):
        layers.Add()([x, np.zeros((2, 3))])
    with pytest.raises(TypeError, match=r"input 1 of layer 'add_1' \(Add\) is list"):
        layers.Add()([x, [x]])
    with pytest.raises(TypeError, match=r"Model inputs\[0\] is ndarray"):
        convforge.Model(np.zeros(3), layers.Dense(2)(x))


def test_shared_layer_with_another_shape_is_rejected():
    dense = layers.Dense(4, name="shared_dense")
    dense(convforge.Input((3,), name="in3"))
    with pytest.raises(ValueError, match=r"'shared_dense' \(Dense\) was built for input \(batch, 3\) and cannot take "
                                         r"\(None, 5\)"):
        dense(convforge.Input((5,)))
    pool = layers.MaxPooling2D(2, name="shared_pool")
    pool(convforge.Input((8, 8, 2)))
    with pytest.raises(ValueError, match=r"'shared_pool' .* reused with input shape \(None, 6, 6, 2\) but was first "
                                         r"called on \(None, 8, 8, 2\)"):
        pool(convforge.Input((6, 6, 2)))


def test_a_layer_built_in_one_dtype_is_not_converted_under_its_model_by_another_graph():
    # A float64 graph on a float32 base converted the base's weights in place: the base itself then
    # failed in predict ("w must be float32 like the other arrays"), while base.dtype said float32.
    i = convforge.Input((6, 6, 2))
    base = convforge.Model(i, layers.Dense(3)(layers.Flatten()(layers.Conv2D(4, 3, name="dt_conv")(i))))
    data = np.random.default_rng(2).standard_normal((3, 6, 6, 2)).astype(np.float32)
    want = base.predict(data, verbose=0)
    x64 = convforge.Input((6, 6, 2), dtype="float64")
    with pytest.raises(TypeError, match=r"'dt_conv' \(Conv2D\) holds float32 weights and cannot take the float64 "
                                        r"tensor .*model.astype\('float64'\)"):
        convforge.Model(x64, base(x64))
    dense = layers.Dense(2, name="dt_dense")
    dense(convforge.Input((3,)))
    with pytest.raises(TypeError, match="'dt_dense' \\(Dense\\) holds float32 weights"):
        dense(convforge.Input((3,), dtype="float64"))
    assert base.layers[1].params["kernel"].dtype == np.float32
    np.testing.assert_array_equal(base.predict(data, verbose=0), want)
    base.astype("float64")  # the way to a float64 graph on it
    assert convforge.Model(x64, base(x64)).dtype == np.float64


def test_unsupported_keras_arguments_say_so():
    x = convforge.Input((3,))
    with pytest.raises(NotImplementedError, match="'training'"):
        layers.Dense(2)(x, training=True)
    with pytest.raises(NotImplementedError, match="batch_size=4"):
        convforge.Input((3,), batch_size=4)
    with pytest.raises(NotImplementedError, match=r"batch_shape=\(4, 3\)"):
        convforge.Input(batch_shape=(4, 3))
    with pytest.raises(NotImplementedError, match="optional=True"):
        convforge.Input((3,), optional=True)
    # Keras 3's spellings of the defaults: a free batch size, a required input.
    assert convforge.Input(batch_shape=(None, 28, 28, 1)).shape == (None, 28, 28, 1)
    assert convforge.Input(shape=(3,), batch_size=None, optional=False).shape == (None, 3)
    with pytest.raises(ValueError, match="shape or batch_shape, not both"):
        convforge.Input((3,), batch_shape=(None, 3))
    # Keras 3's trainable argument: the graph's layers frozen, as model.trainable = False does.
    frozen = convforge.Model(x, layers.Dense(2)(x), trainable=False)
    assert frozen.trainable is False and not frozen.trainable_weights and len(frozen.non_trainable_weights) == 2
    with pytest.raises(TypeError, match="trainable must be True or False"):
        convforge.Model(x, layers.Dense(2)(x), trainable="no")
    with pytest.raises(NotImplementedError, match="'jit_compile'"):
        convforge.Model(x, layers.Dense(2)(x), jit_compile=True)
    with pytest.raises(TypeError, match="argument 'dtype' of Add"):  # as every layer's (dtype=None is taken)
        layers.Add(dtype="float32")
    with pytest.raises(NotImplementedError, match="subclassing API"):
        class Mine(convforge.Model):
            pass

        Mine()
    with pytest.raises(NotImplementedError, match="channels_first"):
        layers.Conv2D(2, 3, data_format="channels_first")(convforge.Input((8, 8, 1)))
    with pytest.raises(ValueError, match="cannot be a layer of a Sequential model"):
        convforge.Sequential([layers.Input((3,)), layers.Add()])


def test_merge_layers_match_numpy():
    x1, x2 = convforge.Input((3,)), convforge.Input((3,))
    outs = [layers.Add()([x1, x2]), layers.Subtract()([x1, x2]), layers.Multiply()([x1, x2]),
            layers.Average()([x1, x2]), layers.Concatenate()([x1, x2])]
    model = convforge.Model([x1, x2], outs)
    rng = np.random.default_rng(19)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    got = model.predict([a, b], verbose=0)
    for g, w in zip(got, [a + b, a - b, a * b, (a + b) / 2, np.concatenate([a, b], 1)]):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_keras_merge_functions_are_their_layers():
    """keras.io's functional-API guide builds its toy ResNet with ``layers.add([x, block_output])``:
    the lower-case functions are the merge layers called on the list (Concatenate's axis included)."""
    x1, x2 = convforge.Input((3,)), convforge.Input((3,))
    outs = [layers.add([x1, x2]), layers.subtract([x1, x2]), layers.multiply([x1, x2]),
            layers.average([x1, x2]), layers.concatenate([x1, x2], axis=-1, name="joined")]
    model = convforge.Model([x1, x2], outs)
    assert [type(model.get_layer(name=t._node.layer.name)).__name__ for t in outs] == [
        "Add", "Subtract", "Multiply", "Average", "Concatenate"]
    assert model.output_names[-1] == "joined"
    rng = np.random.default_rng(20)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    got = model.predict([a, b], verbose=0)
    for g, w in zip(got, [a + b, a - b, a * b, (a + b) / 2, np.concatenate([a, b], 1)]):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_deep_graphs_with_many_paths_build_in_linear_time():
    x = convforge.Input((4, 4, 2))
    h = x
    for _ in range(40):  # 2**40 input-to-output paths: no walk may enumerate them
        h = layers.Add()([layers.Conv2D(2, 3, padding="same")(h), h])
    model = convforge.Model(x, h)
    assert len(model.layers) == 81 and model.predict(np.ones((1, 4, 4, 2)), verbose=0).shape == (1, 4, 4, 2)


def test_relu_into_max_pool_fusion_only_where_the_pool_is_the_one_consumer():
    convforge.seed(20)
    x = convforge.Input((8, 8, 2), dtype="float64")
    conv = layers.Conv2D(3, 3, padding="same", activation="relu")
    pool = layers.MaxPooling2D(2)
    model = convforge.Model(x, layers.Dense(2)(layers.Flatten()(pool(conv(x)))))
    rng = np.random.default_rng(21)
    report = _check(model, rng.standard_normal((3, 8, 8, 2)), rng.standard_normal((3, 2)), "mse")
    assert report.passed, report
    assert pool._gates_relu and conv.activation._masked_by_next


def _bn_relu_graph(frozen: bool, dtype="float32"):
    """Conv -> BN -> ReLU (fused), Conv -> BN -> Activation('relu') (fused), and a BN whose output a
    ReLU and an Add both read (not fused)."""
    x = convforge.Input((6, 6, 2), dtype=dtype)
    bn1, relu1 = layers.BatchNormalization(trainable=not frozen), layers.ReLU()
    h = relu1(bn1(layers.Conv2D(4, 3, padding="same", use_bias=False)(x)))
    bn2, relu2 = layers.BatchNormalization(), layers.Activation("relu")
    h = relu2(bn2(layers.Conv2D(4, 3, padding="same")(h)))
    bn3, relu3 = layers.BatchNormalization(), layers.ReLU()
    t = bn3(layers.Conv2D(4, 1)(h))
    h = layers.Add()([relu3(t), t])
    model = convforge.Model(x, layers.Dense(3)(layers.GlobalAveragePooling2D()(h)))
    return model, (bn1, relu1, bn2, relu2, bn3, relu3)


def _fused_pairs(model):
    """(BatchNormalization, ReLU) layer pairs the model trains as one."""
    steps = model._steps
    return [(a.layer, b.layer) for a in steps if a.relu_next for b in steps if b.relu_done and b.inputs == [a.out]]


def _training_step(model, x, y):
    """Outputs and gradients of one training step (nothing applied)."""
    xb, yb = model._batches(*model._prepare(x, y), len(x)).slice(0, len(x))
    _, outs, dhead = model._forward_loss(xb, yb, training=True, need_grad=True)
    model._backward(dhead)
    return [o.copy() for o in outs] + [g.copy() for _, _, g in model._gradients()]


def _plan_for_training(model, seed: int):
    """Compile ``model`` (SGD, mse: 6x6x2 images in, 3 values out) and plan it for training on a
    random batch of 5, which it returns as (x, y)."""
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((5, 6, 6, 2)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    model._build_from_data(x)
    model._plan_backward()
    model._resolve_loss_path()
    return x, y


def _planned_bn_relu_graph(frozen: bool, seed: int):
    """_bn_relu_graph compiled and planned for training, with a batch (x, y) of 5."""
    convforge.seed(seed)
    model, pairs = _bn_relu_graph(frozen)
    x, y = _plan_for_training(model, seed + 1)
    return model, pairs, x, y


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
def test_batch_norm_relu_fusion_trains_bit_for_bit_as_unfused(frozen):
    model, (bn1, relu1, bn2, relu2, bn3, relu3), x, y = _planned_bn_relu_graph(frozen, 30)
    # bn3's output has two readers (its ReLU and the Add): not fused.
    assert _fused_pairs(model) == [(bn1, relu1), (bn2, relu2)]
    fused = _training_step(model, x, y)
    for step in model._steps:
        step.relu_next = step.relu_done = False
    unfused = _training_step(model, x, y)
    assert len(fused) == len(unfused) and len(fused) >= 8
    for a, b in zip(fused, unfused):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_relu_fusion_belongs_to_the_model_not_the_layers():
    # A second model over the same layers (the feature-map recipe) must not change what the
    # first computes, nor the first what it computes: the fusion is marked on each model's steps.
    convforge.seed(34)
    seq = convforge.Sequential([layers.Input((6, 6, 2)), layers.Conv2D(4, 3, padding="same"),
                                layers.BatchNormalization(), layers.ReLU(), layers.Flatten(), layers.Dense(2)])
    seq.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(35)
    x, y = rng.standard_normal((4, 6, 6, 2)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    seq.train_on_batch(x, y)
    features = convforge.Model(seq.inputs, [seq.layers[1].output, seq.layers[2].output])
    bn_out, relu_out = features(x, training=True)
    assert bn_out.min() < 0 and relu_out.min() == 0
    np.testing.assert_array_equal(relu_out, np.maximum(bn_out, 0))
    seq.train_on_batch(x, y)  # plans (and fuses) seq again
    bn_out2, _ = features(x, training=True)
    assert bn_out2.min() < 0  # the BatchNormalization's own output, not rectified
    probe = convforge.Model(seq.inputs, seq.layers[1].output)
    assert probe(x, training=True).min() < 0
    assert seq(x, training=True).shape == (4, 2)
    assert _fused_pairs(seq._graph) == [(seq.layers[1], seq.layers[2])]


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
def test_predict_between_forward_and_backward_leaves_the_training_step_alone(frozen):
    # predict may run in another thread during fit (docs/RELIABILITY.md): an inference call
    # between a step's forward and backward must not touch what the backward reads.
    model, _, x, y = _planned_bn_relu_graph(frozen, 36)
    want = _training_step(model, x, y)
    xb, yb = model._batches(*model._prepare(x, y), 5).slice(0, 5)
    _, outs, dhead = model._forward_loss(xb, yb, training=True, need_grad=True)
    model(np.random.default_rng(38).standard_normal((3, 6, 6, 2)).astype(np.float32))  # inference, in between
    model._backward(dhead)
    got = [o.copy() for o in outs] + [g.copy() for _, _, g in model._gradients()]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_relu_fusion_gradients_are_the_numerical_derivative():
    convforge.seed(32)
    model, (bn1, relu1, *_rest) = _bn_relu_graph(False, "float64")
    rng = np.random.default_rng(33)
    report = _check(model, rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((4, 3)), "mse")
    assert report.passed, report
    assert (bn1, relu1) in _fused_pairs(model)


def _add_relu_graph(dtype="float32"):
    """Residual tails: Add -> ReLU (fused), a three-input Add -> Activation('relu') (fused), and an
    Add whose output a ReLU and the next Add both read (not fused)."""
    x = convforge.Input((6, 6, 2), dtype=dtype)
    stem = layers.Conv2D(4, 3, padding="same")(x)
    add1, relu1 = layers.Add(), layers.ReLU()
    h = relu1(add1([layers.Conv2D(4, 3, padding="same")(stem), stem]))
    add2, relu2 = layers.Add(), layers.Activation("relu")
    h = relu2(add2([layers.Conv2D(4, 1)(h), h, layers.Conv2D(4, 3, padding="same")(h)]))
    add3, relu3 = layers.Add(), layers.ReLU()
    t = add3([layers.Conv2D(4, 1)(h), h])
    h = layers.Add()([relu3(t), t])
    model = convforge.Model(x, layers.Dense(3)(layers.GlobalAveragePooling2D()(h)))
    return model, (add1, relu1, add2, relu2, add3, relu3)


def test_add_relu_fusion_trains_bit_for_bit_as_unfused():
    convforge.seed(40)
    model, (add1, relu1, add2, relu2, add3, relu3) = _add_relu_graph()
    x, y = _plan_for_training(model, 41)
    # add3's output has two readers (its ReLU and the last Add): not fused.
    assert _fused_pairs(model) == [(add1, relu1), (add2, relu2)]
    # The fused Adds sum their ReLUs' output gradient parts and apply the mask in one pass
    # (relu1's output feeds three layers, relu2's two).
    gated = [step for step in model._steps if step.out in model._gated_sums]
    assert [step.layer for step in gated] == [relu1, relu2]
    fused = _training_step(model, x, y)
    assert add1._gate is not None and add1._gate.min() == 0  # rectified in the Add's pass
    for step in model._steps:
        step.relu_next = step.relu_done = False
    model._gated_sums = set()
    unfused = _training_step(model, x, y)
    assert add1._gate is None
    assert len(fused) == len(unfused) and len(fused) >= 12
    for a, b in zip(fused, unfused):
        np.testing.assert_array_equal(a, b)


def test_add_relu_fusion_gradients_are_the_numerical_derivative():
    convforge.seed(42)
    model, (add1, relu1, add2, relu2, *_rest) = _add_relu_graph("float64")
    rng = np.random.default_rng(43)
    report = _check(model, rng.standard_normal((4, 6, 6, 2)), rng.standard_normal((4, 3)), "mse")
    assert report.passed, report
    assert (add1, relu1) in _fused_pairs(model) and (add2, relu2) in _fused_pairs(model)


def test_batch_norm_writes_its_input_gradient_over_dy_only_where_the_model_owns_dy(monkeypatch):
    # Block tail: the Add hands one dy array to both BatchNormalizations (main and projection);
    # the first must not write over it, the second may; so may the BN -> ReLU pair's (fused) BN,
    # whose dy is the next conv's input gradient.
    convforge.seed(44)
    x = convforge.Input((6, 6, 2))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same", use_bias=False)(x)))
    main = layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same", use_bias=False)(h))
    proj = layers.BatchNormalization()(layers.Conv2D(4, 1, use_bias=False)(x))
    y = layers.Dense(3)(layers.GlobalAveragePooling2D()(layers.ReLU()(layers.Add()([main, proj]))))
    model = convforge.Model(x, y)
    data, target = _plan_for_training(model, 45)
    assert sum(step.overwrites_dy for step in model._steps) == 3
    overwritten = []
    real = layers.BatchNormalization._backward_overwriting
    monkeypatch.setattr(layers.BatchNormalization, "_backward_overwriting",
                        lambda self, dy: overwritten.append(self.name) or real(self, dy))
    in_place = _training_step(model, data, target)
    assert len(overwritten) == 2  # one of the Add's two readers, and the first block's BN
    for step in model._steps:
        step.overwrites_dy = False
    fresh = _training_step(model, data, target)
    assert len(overwritten) == 2 and len(in_place) == len(fresh) >= 10
    for a, b in zip(in_place, fresh):
        np.testing.assert_array_equal(a, b)


def test_a_chain_trains_bit_for_bit_as_the_sequential_model():
    """A chain built with Input and layer calls trains exactly as the same Sequential model (which runs
    on the same executor): same entry conversion, fusions, loss path and update order."""
    def stack():
        return [layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2), layers.Conv2D(6, 3),
                layers.Flatten(), layers.Dropout(0.2), layers.Dense(5, activation="softmax")]

    convforge.seed(22)
    seq = convforge.Sequential([layers.Input((12, 12, 2)), *stack()])
    x = convforge.Input((12, 12, 2))
    h = x
    graph_layers = stack()
    for layer in graph_layers:
        h = layer(h)
    graph = convforge.Model(x, h)
    graph.set_weights(seq.get_weights())
    rng = np.random.default_rng(23)
    data, labels = rng.standard_normal((40, 12, 12, 2)).astype(np.float32), rng.integers(0, 5, 40)
    results = []
    for model in (seq, graph):
        convforge.seed(24)  # same shuffles and dropout masks
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(data, labels, batch_size=8, epochs=2, verbose=0)
        results.append((model.get_weights(), history.history["loss"]))
    assert results[0][1] == results[1][1]
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)
    assert graph_layers[1]._gates_relu  # the ReLU->MaxPool fusion applies in the chain graph too


def test_terminate_on_nan_locates_the_layer_in_a_graph():
    convforge.seed(25)
    a = convforge.Input((3,), name="na")
    h = layers.Dense(4, name="dense_ok")(a)
    bad = layers.Dense(4, name="dense_bad")
    y = layers.Dense(1, name="head")(layers.Add()([h, bad(a)]))
    model = convforge.Model(a, y)
    model.compile("sgd", "mse")
    bad.params["kernel"][0, 0] = np.nan
    guard = callbacks.TerminateOnNaN()
    model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0, callbacks=[guard])
    assert "Weight 'kernel' of layer 'dense_bad'" in guard.message


def test_gradients_of_a_residual_graph_with_batch_normalization(monkeypatch):
    convforge.seed(26)
    x = convforge.Input((6, 6, 2), dtype="float64")
    h = layers.Conv2D(3, 3, padding="same", use_bias=False)(x)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.BatchNormalization()(layers.Conv2D(3, 3, padding="same", use_bias=False)(h))
    s = layers.Conv2D(3, 1, use_bias=False)(x)
    y = layers.Dense(2)(layers.Flatten()(layers.ReLU()(layers.Add()([h, s]))))
    model = convforge.Model(x, y)
    rng = np.random.default_rng(27)
    data, target = rng.standard_normal((5, 6, 6, 2)), rng.standard_normal((5, 2))
    report = _check(model, data, target, "mse")
    assert report.passed, report
    assert sum(l.count_params() - l.count_trainable_params() for l in model.layers) == 2 * 2 * 3  # moving stats
    real = layers.BatchNormalization.backward
    monkeypatch.setattr(layers.BatchNormalization, "backward", lambda self, dy: 1.1 * real(self, dy))
    assert not _check(model, data, target, "mse").passed


def test_inference_keeps_only_what_later_layers_read():
    x = convforge.Input((4,))
    a = layers.Dense(3)(x)
    b = layers.Dense(3)(a)
    model = convforge.Model(x, [layers.Add()([a, b]), b])
    values = model._run([np.ones((2, 4), np.float32)], training=False, logits=False)
    kept = [i for i, v in enumerate(values) if v is not None]
    assert kept == sorted(model._outputs_index)  # x and a are dropped once the Add has read them


def test_maximum_and_minimum_merge_as_keras():
    """Found by a review: Keras's Maximum and Minimum merge layers (and their functions) were
    missing. Ties share the gradient evenly (torch.maximum's rule, Keras's on torch)."""
    x1, x2, x3 = convforge.Input((3,)), convforge.Input((3,)), convforge.Input((3,))
    outs = [layers.Maximum()([x1, x2]), layers.Minimum()([x1, x2, x3]), layers.maximum([x1, x2, x3]),
            layers.minimum([x1, x2])]
    model = convforge.Model([x1, x2, x3], outs)
    rng = np.random.default_rng(21)
    a, b, c = (rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3))
    got = model.predict([a, b, c], verbose=0)
    for g, w in zip(got, [np.maximum(a, b), np.minimum(np.minimum(a, b), c), np.maximum(np.maximum(a, b), c),
                          np.minimum(a, b)]):
        np.testing.assert_array_equal(g, w)
    layer = layers.Maximum()
    layer.forward([np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 5.0, 0.0]])], training=True)
    da, db = layer.backward(np.array([[4.0, 4.0, 4.0]]))
    np.testing.assert_array_equal(da, [[2.0, 0.0, 4.0]])
    np.testing.assert_array_equal(db, [[2.0, 4.0, 0.0]])
    with pytest.raises(TypeError, match="does not support the argument 'axis' of Minimum"):
        layers.Minimum(axis=1)


def test_a_layer_called_on_arrays_runs_eagerly_as_keras():
    # Keras's eager call: `y = layer(x)` (the Sequential guide, the image-classification tutorial's
    # `for layer in data_augmentation_layers: images = layer(images)`). It raised a TypeError.
    rng = np.random.default_rng(0)
    x = rng.random((4, 6, 6, 3)).astype(np.float32)
    dense = layers.Dense(2)
    y = dense(x.reshape(4, -1))  # built at its first call, as Keras builds it
    assert dense.built and y.shape == (4, 2)
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(y, x.reshape(4, -1) @ kernel + bias, rtol=1e-5, atol=1e-6)
    conv = layers.Conv2D(5, 3, activation="relu")
    out = conv(x)
    assert out.shape == (4, 4, 4, 5)  # channels-last, as Keras's
    k, b = conv.get_weights()  # Keras's (kh, kw, in, out) layout
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (4, 4, 4, 3, 3, 3)
    expected = np.maximum(np.einsum("nhwcij,ijco->nhwo", windows, k) + b, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layers.Add()([x, x]), 2 * x)
    np.testing.assert_allclose(layers.Rescaling(1 / 255)(x * 255), x, rtol=1e-6)
    # training as Keras: not given, the layer's own default.
    np.testing.assert_array_equal(layers.Dropout(0.5)(x), x)
    assert (layers.Dropout(0.5)(x, training=True) == 0).any()
    flip = layers.RandomFlip("horizontal", seed=1)
    flipped = flip(x)
    assert all(np.array_equal(f, i) or np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, x))
    assert not np.array_equal(flipped, x)
    np.testing.assert_array_equal(flip(x, training=False), x)
    bn = layers.BatchNormalization()
    np.testing.assert_allclose(bn(x), x / np.sqrt(1 + 1e-3), rtol=1e-6)  # the moving statistics (0, 1)
    assert bn.get_weights()[2].max() == 0  # and left as they were
    # A layer of a model: its weights, and nothing of the model changes (it still trains).
    model = convforge.Sequential([convforge.Input((6, 6, 3)), conv, layers.Flatten(), layers.Dense(2)])
    np.testing.assert_array_equal(model.layers[0](x), out)
    assert len(conv._inbound_nodes) == 1
    model.compile(optimizer="sgd", loss="mse")
    before = conv.get_weights()[0].copy()
    model.fit(x, np.ones((4, 2), np.float32), epochs=1, verbose=0)
    assert not np.array_equal(before, conv.get_weights()[0])
    with pytest.raises(ValueError, match=r"an input is a batch, \(samples, \.\.\.\) .*got an array of shape \(3,\)"):
        layers.Dense(2)(np.ones(3))
    with pytest.raises(TypeError, match="training must be True, False or None; got 'yes'"):
        flip(x, training="yes")
    with pytest.raises(ValueError, match="cannot take"):
        conv(np.ones((2, 5, 5, 4), np.float32))  # built for 3 channels


def test_a_channels_first_sequential_shows_its_tensors_channels_first():
    # Keras: (None, 4, 8, 10) for the first output; convforge showed (None, 8, 10, 4) there while its
    # summary, output_shape and predict said channels-first, and the feature-map recipe built a
    # channels-last model of such tensors.
    model = convforge.Sequential([convforge.Input((3, 10, 12)), layers.Conv2D(4, 3, data_format="channels_first"),
                                  layers.MaxPooling2D(data_format="channels_first"), layers.Flatten(), layers.Dense(2)])
    assert [l.output.shape for l in model.layers] == [(None, 4, 8, 10), (None, 4, 4, 5), (None, 80), (None, 2)]
    assert model.inputs[0].shape == model.layers[0].input.shape == (None, 3, 10, 12)
    with pytest.raises(NotImplementedError, match="reads channels-first images, and functional models are "
                                                  "channels-last; .*model.activations\\(x\\)"):
        convforge.Model(model.inputs, [l.output for l in model.layers])
    maps = model.activations(np.zeros((2, 3, 10, 12), np.float32))
    assert [m.shape[1:] for m in maps] == [l.output.shape[1:] for l in model.layers]


def test_eager_calls_of_channels_first_layers_and_their_cost():
    # A channels-first layer ran through a channels-last functional model: refused, and left built
    # for the wrong channels; a layer of a channels-first Sequential could not be called at all.
    from convforge.layers import base, symbolic

    x = np.random.default_rng(0).random((4, 3, 6, 6)).astype(np.float32)
    conv = layers.Conv2D(2, 3, data_format="channels_first")
    out = conv(x)
    assert out.shape == (4, 2, 4, 4) and conv.get_weights()[0].shape == (3, 3, 3, 2)
    model = convforge.Sequential([convforge.Input((3, 6, 6)), conv, layers.BatchNormalization(axis=1)])
    np.testing.assert_allclose(model.predict(x, verbose=0), model.layers[1](conv(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.layers[1](out), out / np.sqrt(1 + 1e-3), rtol=1e-6)  # moving statistics
    assert layers.MaxPooling2D(data_format="channels_first")(x).shape == (4, 3, 3, 3)
    # NumPy in, NumPy out: an eager Flatten flattens in Keras's (height, width, channels) order,
    # moving a channels-first image's channels last first, as Keras's does.
    images = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(layers.Flatten()(images), images.reshape(4, -1))
    np.testing.assert_array_equal(layers.Flatten(data_format="channels_first")(x), images.reshape(4, -1))
    # Eager calls leave no names and no live copies behind (each took a name, searched one by one).
    dense, batch = layers.Dense(3), np.ones((2, 5), np.float32)
    dense(batch)
    names = len(symbolic._USED_NAMES)
    for _ in range(200):
        dense(batch)
    assert len(symbolic._USED_NAMES) == names
    assert len(base._call_copies.get(dense, [])) < 50


def test_eager_calls_from_threads_leave_the_name_registry_whole():
    # Each eager call swapped the module's registry of names for its own and back: from several
    # threads one swap undid another's, the registry was lost and "dense" handed out twice.
    import sys
    import threading

    from convforge.layers import symbolic

    registry = symbolic._USED_NAMES
    inputs = convforge.Input((4,))
    hidden = layers.Dense(4)(inputs)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def work():
            for _ in range(100):
                layers.Dense(3)(np.ones((2, 4), np.float32))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert symbolic._USED_NAMES is registry
    model = convforge.Model(inputs, layers.Dense(2)(hidden))  # unique names
    assert len({l.name for l in model.layers}) == len(model.layers)


def test_automatic_names_cost_a_few_lookups_each_however_many_layers_share_a_base():
    """Each automatic name tried re_lu, re_lu_1, re_lu_2, ... against every name handed out: n layers
    of one kind cost n^2 / 2 lookups, and an ONNX file of 50,000 Relu nodes did not load in 400 s
    (a review; 16,000 nodes took 26 s). Counted, not timed: each name now costs about one lookup."""
    from convforge.layers import symbolic

    class Counting(symbolic._NameRegistry):
        lookups = 0

        def __contains__(self, name):
            Counting.lookups += 1
            return super().__contains__(name)

    registry = Counting()
    token = symbolic._EAGER_NAMES.set(registry)  # this registry, not the process's, for the calls below
    try:
        registry.add("re_lu_3")  # taken by a named layer: skipped
        names = [symbolic.unique_name("re_lu") for _ in range(2000)]
        assert names[:5] == ["re_lu", "re_lu_1", "re_lu_2", "re_lu_4", "re_lu_5"] and len(set(names)) == 2000
        assert Counting.lookups <= 2 * 2000 + 10, Counting.lookups
        registry.clear()  # clear_session: the next one is re_lu again
        assert symbolic.unique_name("re_lu") == "re_lu"
    finally:
        symbolic._EAGER_NAMES.reset(token)


def test_per_output_losses_are_logged_where_several_outputs_have_one():
    """Keras 3.15.1 logs '<output>_loss' only when more than one output has a loss: loss=[None,
    'categorical_crossentropy', None] gives history ['loss'] and evaluate a number (convforge added
    'o2_loss', and evaluate gave a list)."""
    a = convforge.Input((4,), name="a")
    h = layers.Dense(4)(a)
    model = convforge.Model(a, [layers.Dense(1, name="o1")(h), layers.Dense(2, activation="softmax", name="o2")(h),
                                layers.Dense(1, name="o3")(h)])
    x = np.ones((8, 4), np.float32)
    ys = [np.ones((8, 1), np.float32), np.eye(2, dtype=np.float32)[np.arange(8) % 2], np.ones((8, 1), np.float32)]
    for loss, keys in (([None, "categorical_crossentropy", None], ["loss"]),
                       (["mse", "categorical_crossentropy", None], ["loss", "o1_loss", "o2_loss"]),
                       (["mse", "categorical_crossentropy", "mse"], ["loss", "o1_loss", "o2_loss", "o3_loss"])):
        model.compile(optimizer="sgd", loss=loss)
        assert sorted(model.fit(x, ys, epochs=1, verbose=0).history) == keys
        result = model.evaluate(x, ys, verbose=0)
        assert (isinstance(result, float) if keys == ["loss"] else len(result) == len(keys))


def test_evaluate_lists_several_outputs_metrics_in_keras_s_order_and_model_metrics_holds_them():
    # Keras 3.15.1 (checked): [loss, score_loss, cls_loss, cls_accuracy, score_mae] -- the losses in
    # output order, the metrics sorted by name. convforge listed score_mae before cls_accuracy:
    # code unpacking evaluate's list took swapped values.
    rng = np.random.default_rng(0)
    x = rng.random((48, 8)).astype("float32")
    ys, yc = rng.random((48, 1)).astype("float32"), rng.integers(0, 4, 48)
    a = convforge.Input(shape=(8,))
    h = layers.Dense(8, activation="relu")(a)
    model = convforge.Model(a, [layers.Dense(1, name="score")(h), layers.Dense(4, activation="softmax", name="cls")(h)])
    assert model.metrics == []
    model.compile("sgd", loss=["mse", "sparse_categorical_crossentropy"], metrics=[["mae"], ["accuracy"]])
    expected = ["loss", "score_loss", "cls_loss", "cls_accuracy", "score_mae"]
    assert model.metrics_names == expected
    logs = model.evaluate(x, [ys, yc], verbose=0, return_dict=True)
    assert model.evaluate(x, [ys, yc], verbose=0) == pytest.approx([logs[k] for k in expected])
    assert model.test_on_batch(x, [ys, yc]) == pytest.approx([logs[k] for k in expected])
    # model.metrics: the metric objects compile made (Keras 3 wraps the compiled ones in one
    # CompileMetrics object), holding the latest evaluate's values.
    held = {m.name: float(m.result()) for m in model.metrics}
    assert held["accuracy"] == pytest.approx(logs["cls_accuracy"]) and held["mae"] == pytest.approx(logs["score_mae"])
    one = convforge.Sequential([convforge.Input((8,)), layers.Dense(4, activation="softmax")])
    one.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    assert one.metrics_names == ["loss", "accuracy", "sparse_top_k_categorical_accuracy"]  # as given, one output


def test_a_metric_on_an_output_without_a_loss_is_measured_as_keras_measures_it():
    # loss=[None, ...] with metrics on that output: its targets were dropped and fit failed at the
    # first batch ("cannot reshape array of size 1"). Keras 3.15.1 (checked) logs score_mae as
    # the mean |prediction - target| of that output, and the loss is the other output's alone.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype("float32")
    ys, yc = rng.standard_normal((8, 1)).astype("float32"), np.eye(3)[rng.integers(0, 3, 8)].astype("float32")
    inp = convforge.Input((4,))
    h = layers.Dense(5)(inp)
    model = convforge.Model(inp, [layers.Dense(1, name="score")(h), layers.Dense(3, activation="softmax", name="cls")(h)])
    model.compile("sgd", loss=[None, "categorical_crossentropy"], metrics=[["mae"], ["accuracy"]])
    history = model.fit(x, [ys, yc], epochs=1, verbose=0, batch_size=4)
    assert sorted(history.history) == ["cls_accuracy", "loss", "score_mae"]
    logs = model.evaluate(x, [ys, yc], verbose=0, return_dict=True)
    score, cls = model.predict(x, verbose=0)
    assert logs["score_mae"] == pytest.approx(np.abs(score - ys).mean(), rel=1e-5)
    assert logs["loss"] == pytest.approx(-np.mean(np.sum(yc * np.log(cls), axis=1)), rel=1e-4)
    unmeasured = convforge.Model(inp, model.outputs)
    unmeasured.compile("sgd", loss=[None, "categorical_crossentropy"])
    unmeasured.fit(x, [None, yc], epochs=1, verbose=0)  # no metric there: no targets needed


def _naming_script(lib):
    """Layers made in one order and used in another, as Keras names them (when made)."""
    layers = lib.layers
    unattached = layers.Dense(3)
    d1, d2 = layers.Dense(4), layers.Dense(5)
    conv = layers.Conv1D(2, 2, activation="relu")  # its activation is no layer of Keras's: takes no name
    relu = layers.ReLU()
    model = lib.Sequential([lib.Input((6, 3)), conv, relu, layers.Flatten(), d2, d1])

    class Block(layers.Layer):  # a layer of one's own: its sublayers are named, as Keras names them
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = layers.Dense(4, activation="relu")

    class ReluDense(layers.Dense):  # a built-in's subclass: its activation is still no layer
        def __init__(self, units, **kwargs):
            super().__init__(units, activation="relu", **kwargs)

    block, relu_dense = Block(), ReluDense(3)
    return [unattached.name, unattached.get_config()["name"], *(layer.name for layer in model.layers),
            block.name, block.inner.name, relu_dense.name, layers.ReLU().name]


def test_layers_are_named_when_made_as_keras_names_them():
    assert _naming_script(convforge) == ["dense", "dense", "conv1d", "re_lu", "flatten", "dense_2", "dense_1",
                                         "block", "dense_3", "relu_dense", "re_lu_1"]


def test_layer_names_match_real_keras():
    from model_checks import real_keras

    keras = real_keras()
    keras.backend.clear_session()
    assert _naming_script(convforge) == _naming_script(keras)
