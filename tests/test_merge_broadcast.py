"""Merge layers that broadcast, as Keras 3's do: NumPy's rules on the shapes the user sees
(channels-last, the batch first). Squeeze-and-excitation blocks (``Multiply()([x, se])``), a
per-channel vector added to images, a mask of one channel: values against a NumPy oracle in the
user's layout, gradients checked numerically, the compiled plan and saving (ONNX: test_onnx.py)."""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import layers
from convforge.gradcheck import check_model_gradients
from model_checks import fits_and_reloads

# (first input, second input, output) per-sample shapes, as Keras shows them.
CASES = [((6, 5, 4), (1, 1, 4), (6, 5, 4)), ((6, 5, 4), (4,), (6, 5, 4)), ((6, 5, 4), (6, 5, 1), (6, 5, 4)),
         ((6, 5, 4), (5, 4), (6, 5, 4)), ((6, 5, 4), (1, 5, 4), (6, 5, 4)), ((1, 1, 4), (6, 5, 1), (6, 5, 4)),
         ((7, 3), (1, 3), (7, 3)), ((7, 3), (3,), (7, 3)), ((8,), (1,), (8,))]
OPS = {"Add": np.add, "Subtract": np.subtract, "Multiply": np.multiply, "Average": lambda a, b: (a + b) * 0.5,
       "Maximum": np.maximum, "Minimum": np.minimum}


def _pair(kind, first, second, dtype="float32"):
    a, b = convforge.Input(first, dtype=dtype), convforge.Input(second, dtype=dtype)
    return convforge.Model([a, b], getattr(layers, kind)()([a, b]))


@pytest.mark.parametrize("kind", sorted(OPS))
@pytest.mark.parametrize("first, second, out", CASES)
def test_merge_broadcasts_as_numpy_on_the_users_layout(kind, first, second, out, rng):
    model = _pair(kind, first, second)
    assert model.output_shape == (None, *out)
    a = rng.standard_normal((3, *first)).astype(np.float32)
    b = rng.standard_normal((3, *second)).astype(np.float32)
    # NumPy broadcasts the trailing axes: in the user's shapes, with the batch axis in front.
    pad = (1,) * (len(out) - len(second))
    b_full = b.reshape((3, *pad, *second))
    a_full = a.reshape((3, *((1,) * (len(out) - len(first))), *first))
    want = OPS[kind](a_full, b_full).astype(np.float32)
    np.testing.assert_allclose(model.predict([a, b], verbose=0), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model([a, b], training=True), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(OPS))
def test_broadcast_merge_gradients_are_the_numerical_derivative(kind, rng):
    convforge.seed(7)
    x = convforge.Input((6, 6, 2), dtype="float64")
    h = layers.Conv2D(4, 3, padding="same", activation="tanh")(x)
    gate = layers.Dense(4)(layers.GlobalAveragePooling2D()(h))  # (batch, 4): over every pixel
    column = layers.Conv2D(1, 1)(h)  # (batch, 6, 6, 1): over every channel
    merge = getattr(layers, kind)
    y = merge()([merge()([h, gate]), column])
    model = convforge.Model(x, layers.Dense(3)(layers.Flatten()(y)))
    report = check_model_gradients(model, rng.standard_normal((3, 6, 6, 2)), rng.standard_normal((3, 3)),
                                   loss="mse", num_coords=8)
    assert report.passed, report


def test_broadcast_add_with_the_relu_after_it_fused_trains_as_the_numerical_derivative(rng):
    # A residual-style Add -> ReLU is fused in training (the Add applies the ReLU and its gradient,
    # summing the parts of a ReLU output read twice): with a broadcast input too.
    convforge.seed(11)
    x = convforge.Input((5, 5, 2), dtype="float64")
    h = layers.Conv2D(3, 3, padding="same")(x)
    bias = layers.Dense(3)(layers.GlobalAveragePooling2D()(h))
    add, relu = layers.Add(), layers.ReLU()
    r = relu(add([h, bias]))
    y = layers.Add()([layers.Conv2D(3, 1)(r), r])  # r read twice: its gradient's parts summed in add's pass
    model = convforge.Model(x, layers.Dense(2)(layers.Flatten()(y)))
    report = check_model_gradients(model, rng.standard_normal((3, 5, 5, 2)), rng.standard_normal((3, 2)),
                                   loss="mse", num_coords=8)
    assert report.passed, report
    step = next(s for s in model._steps if s.layer is add)
    assert step.relu_next and add._broadcasting()


def test_a_broadcast_gradient_not_summed_is_caught(rng, monkeypatch):
    convforge.seed(8)
    x = convforge.Input((5, 5, 2), dtype="float64")
    h = layers.Conv2D(3, 3, padding="same")(x)
    se = layers.Reshape((1, 1, 3))(layers.Dense(3, activation="sigmoid")(layers.GlobalAveragePooling2D()(h)))
    model = convforge.Model(x, layers.Dense(2)(layers.Flatten()(layers.Multiply()([h, se]))))
    xs, ys = rng.standard_normal((3, 5, 5, 2)), rng.standard_normal((3, 2))
    assert check_model_gradients(model, xs, ys, loss="mse").passed
    original = layers.Multiply._reduce_to_input

    def mean_instead(self, g, k):
        reduced = original(self, g, k)
        return reduced if self._views[k] is None else reduced / 25.0

    monkeypatch.setattr(layers.Multiply, "_reduce_to_input", mean_instead)
    assert not check_model_gradients(model, xs, ys, loss="mse").passed


def test_squeeze_and_excitation_block_trains_saves_and_predicts(tmp_path, rng):
    convforge.seed(9)
    x = convforge.Input((8, 8, 1))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    se = layers.GlobalAveragePooling2D()(h)
    se = layers.Dense(2, activation="relu")(se)
    se = layers.Dense(8, activation="sigmoid")(se)
    h = layers.Multiply()([h, layers.Reshape((1, 1, 8))(se)])
    h = layers.Add()([h, layers.Dense(8)(se)])  # a (batch, 8) vector on every pixel
    model = convforge.Model(x, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(h)))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    # predict: the compiled plan around the NumPy merges.
    fits_and_reloads(model, rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 32), tmp_path)


def test_shapes_that_do_not_broadcast_are_refused_naming_them():
    a, b = convforge.Input((6, 5, 4)), convforge.Input((6, 5, 3))
    with pytest.raises(ValueError, match=r"incompatible shapes.*\(None, 6, 5, 4\), \(None, 6, 5, 3\).*broadcast"):
        layers.Multiply()([a, b])
    with pytest.raises(ValueError, match="incompatible shapes"):
        layers.Add()([convforge.Input((6, 5, 4)), convforge.Input((5,))])


def test_a_shape_query_leaves_how_a_built_merge_broadcasts(rng):
    # compute_output_shape of other shapes on a built layer set the views its next call used.
    a, b = convforge.Input((6, 6, 4)), convforge.Input((1, 1, 4))
    mul = layers.Multiply()
    model = convforge.Model([a, b], mul([a, b]))
    assert mul.compute_output_shape([(None, 6, 6, 4), (None, 6, 6, 1)]) == (None, 6, 6, 4)
    x, s = rng.random((2, 6, 6, 4), dtype=np.float32), rng.random((2, 1, 1, 4), dtype=np.float32)
    np.testing.assert_allclose(model.predict([x, s], verbose=0), x * s, rtol=1e-6)
    np.testing.assert_allclose(model([x, s], training=True), x * s, rtol=1e-6)


# ---------------------------------------------------------------------------
# Found by review against Keras 3.15.1 (torch backend)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls, op", [(layers.Maximum, np.maximum), (layers.Minimum, np.minimum)])
def test_ties_of_three_inputs_split_the_gradient_as_keras_pairwise_reduction(cls, op):
    # Keras computes op(op(x0, x1), x2), each step giving half to each side of a tie: three equal
    # inputs get 1/4, 1/4, 1/2 (convforge gave 1/3 each).
    xs = [np.array([[1.0, 2.0, 3.0, 3.0]]), np.array([[1.0, 5.0, 3.0, 0.0]]), np.array([[1.0, 2.0, 3.0, 3.0]])]
    layer = cls()
    layer._build([(4,)] * 3, np.float64)
    y = layer.forward(xs, training=True)
    np.testing.assert_array_equal(y, op(op(xs[0], xs[1]), xs[2]))
    grads = layer.backward(np.ones((1, 4)))
    if cls is layers.Maximum:
        expected = [[0.25, 0, 0.25, 0.5], [0.25, 1, 0.25, 0], [0.5, 0, 0.5, 0.5]]
    else:
        expected = [[0.25, 0.5, 0.25, 0], [0.25, 0, 0.25, 1], [0.5, 0.5, 0.5, 0]]
    for g, e in zip(grads, expected):
        np.testing.assert_array_equal(g, [e])


def test_merge_layers_take_keras_neutral_arguments_and_refuse_others_by_name():
    for cls in (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum, layers.Minimum,
                layers.Concatenate):
        for given in (dict(dtype=None), dict(autocast=True), dict(activity_regularizer=None), dict(input_shape=(4,)),
                      dict(trainable=False)):
            cls(**given)  # Keras 3 takes these (its defaults); convforge refused them all
        with pytest.raises(TypeError, match=rf"does not support the argument 'dtype' of {cls.__name__}"):
            cls(dtype="float64")
        with pytest.raises(TypeError, match=rf"argument 'foo' of {cls.__name__}; its arguments are"):
            cls(foo=1)


def test_merge_calls_on_an_empty_list_or_one_tensor_say_what_they_take():
    x = convforge.Input(shape=(4,))
    with pytest.raises(ValueError, match=r"layer 'add' \(Add\) merges a list of tensors: it needs at least one; got an empty list"):
        layers.Add()([])  # a KeyError from inside the dtype check before
    with pytest.raises(ValueError, match=r"call it on a list of tensors, e\.g\. Add\(\)\(\[a, b\]\)"):
        layers.Add()(x)
    assert layers.Add()([x]).shape == (None, 4)  # a list of one, as Keras takes


def test_a_keras_regularizer_object_is_named_as_keras_s():
    keras = pytest.importorskip("keras")
    with pytest.raises(TypeError, match=r"is Keras's L2, not a convforge regularizer: use convforge\.regularizers\.L2"):
        layers.PReLU(alpha_regularizer=keras.regularizers.L2(0.1))


def test_layer_normalization_output_shape_checks_its_axes():
    with pytest.raises(ValueError, match=r"^layer 'layer_normalization' \(LayerNormalization\): axis=5 does not name distinct axes"):
        layers.LayerNormalization(axis=5).compute_output_shape((None, 4, 4, 2))
    assert layers.LayerNormalization(axis=[1, 2]).compute_output_shape((None, 4, 4, 2)) == (None, 4, 4, 2)


def test_a_nan_result_gives_the_gradient_to_both_sides_as_torch():
    # torch.maximum's rule (Keras's torch backend): where the two do not compare (a NaN), each
    # side gets all of the gradient; the first version of the pairwise rule gave neither any.
    a, b = np.array([[np.nan, 1.0, 2.0]]), np.array([[1.0, np.nan, 2.0]])
    for cls in (layers.Maximum, layers.Minimum):
        layer = cls()
        layer._build([(3,)] * 2, np.float64)
        layer.forward([a, b], training=True)
        for g in layer.backward(np.ones((1, 3))):
            np.testing.assert_array_equal(g, [[1.0, 1.0, 0.5]])


@pytest.mark.parametrize("first,second,axes,normalize,out", [
    ((5,), (5,), 1, False, (1,)),             # a user-item score
    ((5,), (5,), -1, True, (1,)),             # the cosine similarity of two embeddings
    ((4, 5), (3, 5), 2, False, (4, 3)),       # attention scores
    ((4, 5), (5,), (2, 1), True, (4,)),
    ((4, 5), (4, 3), 1, False, (5, 3)),
])
def test_dot_trains_as_the_numerical_derivative(rng, first, second, axes, normalize, out):
    """Dot of two branches, Keras's shapes, its gradient the numerical one through both inputs
    (and through the normalisation)."""
    convforge.seed(12)
    a, b = convforge.Input((6,), dtype="float64"), convforge.Input((6,), dtype="float64")
    left = layers.Reshape(first)(layers.Dense(int(np.prod(first)))(a))
    right = layers.Reshape(second)(layers.Dense(int(np.prod(second)))(b))
    dot = layers.Dot(axes, normalize=normalize)([left, right])
    assert tuple(dot.shape[1:]) == out
    model = convforge.Model([a, b], layers.Dense(2)(layers.Flatten()(dot)))
    report = check_model_gradients(model, [rng.standard_normal((3, 6)), rng.standard_normal((3, 6))],
                                   rng.standard_normal((3, 2)), loss="mse", num_coords=8)
    assert report.passed, report


def test_dot_refuses_what_keras_refuses_or_it_does_not_take():
    a, b = convforge.Input((5,)), convforge.Input((4,))
    with pytest.raises(ValueError, match=r"Incompatible input shapes: axis values 5 \(at axis 1\) != 4 \(at axis 1\)"):
        layers.Dot(1)([a, b])
    with pytest.raises(ValueError, match="Dot axes must be an int or a pair of ints"):
        layers.Dot([1, 2, 3])
    with pytest.raises(ValueError, match="is out of range for inputs .* or is the batch axis"):
        layers.Dot(0)([a, convforge.Input((5,))])
    with pytest.raises(ValueError, match=r"Dot takes vectors \(batch, d\) and sequences"):
        layers.Dot(-1)([convforge.Input((4, 4, 3)), convforge.Input((4, 4, 3))])
    assert layers.dot([a, convforge.Input((5,))], axes=1).shape[1:] == (1,)
