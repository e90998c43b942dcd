"""A Dense layer after a Flatten of images speaks Keras's row order in get_weights/set_weights.

convforge flattens NCHW feature maps in (channels, height, width) order, for free; Keras flattens
channels-last maps in (height, width, channels) order. The Dense after the Flatten stores its
kernel's rows in convforge's order and gives and takes them in Keras's, so that weights from a
Keras model (``set_weights(keras_model.get_weights())``) predict as they do in Keras
(``tests/port/keras_weight_order.py`` runs the same check on Keras 3 itself). The expected
outputs here are Keras's by definition: the channels-last maps flattened as NumPy does."""

import warnings

import numpy as np
import pytest

import convforge
from convforge import layers

X = np.random.default_rng(0).standard_normal((5, 6, 6, 2)).astype(np.float32)


def _set_random(model, seed=1):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    return weights


def _keras_head(model, maps_layer, head_layer, x=X, maps_model=None):
    source = maps_model or model  # the model whose own graph holds the maps layer's first call
    maps = convforge.Model(source.inputs, source.get_layer(maps_layer).output).predict(x, verbose=0)
    kernel, bias = model.get_layer(head_layer).get_weights()
    return maps.reshape(len(x), -1) @ kernel + bias


def _sequential(*between):
    return convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(3, 3, name="maps"), layers.Flatten(),
                                 *between, layers.Dense(4, name="head")])


@pytest.mark.parametrize("between", [(), (layers.Dropout(0.5),), (layers.Activation("linear"), layers.GaussianNoise(0.1))],
                         ids=["direct", "dropout", "activation+noise"])
def test_a_stack_predicts_with_keras_weights_as_keras(between):
    model = _sequential(*between)
    weights = _set_random(model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    np.testing.assert_allclose(model.predict(X, verbose=0), _keras_head(model, "maps", "head"), rtol=1e-5, atol=1e-5)
    # Stored: the same rows in the Flatten's (channels, height, width) order.
    kernel = model.get_layer("head").get_weights()[0]
    stored = model.get_layer("head").params["kernel"]
    np.testing.assert_array_equal(stored, kernel.reshape(4, 4, 3, 4).transpose(2, 0, 1, 3).reshape(48, 4))


def test_a_graph_and_a_nested_model_predict_with_keras_weights_as_keras(tmp_path):
    i = convforge.Input((6, 6, 2))
    graph = convforge.Model(i, layers.Dense(4, name="head")(layers.Flatten()(layers.Conv2D(3, 3, name="maps")(i))))
    _set_random(graph)
    np.testing.assert_allclose(graph.predict(X, verbose=0), _keras_head(graph, "maps", "head"), rtol=1e-5, atol=1e-5)
    base = convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(3, 3, name="nmaps"), layers.Flatten()],
                                name="nbase")
    model = convforge.Sequential([convforge.Input((6, 6, 2)), base, layers.Dense(4, name="nhead")])
    weights = _set_random(model)
    np.testing.assert_allclose(model.predict(X, verbose=0), _keras_head(model, "nmaps", "nhead", maps_model=base), rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m.npz")  # the file holds the stored order; loaded, the same weights come back
    loaded = convforge.load_model(tmp_path / "m.npz")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), weights))
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


def test_channels_first_one_channel_and_sequences_keep_the_stored_order():
    first = convforge.Sequential([convforge.Input((2, 6, 6)), layers.Conv2D(3, 3, data_format="channels_first"),
                                  layers.Flatten(), layers.Dense(4, name="head")])
    one = convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(1, 3), layers.Flatten(),
                                layers.Dense(4, name="head")])
    steps = convforge.Sequential([convforge.Input((8, 2)), layers.Conv1D(3, 3), layers.Flatten(),
                                  layers.Dense(4, name="head")])
    for model in (first, one, steps):  # Keras flattens these in the stored order already
        head = model.get_layer("head")
        np.testing.assert_array_equal(head.get_weights()[0], head.params["kernel"])


def _maps(model, name, x=X):
    """The channels-last maps of layer ``name`` (on the model's first input), flattened as Keras
    flattens them."""
    return convforge.Model(model.inputs[0], model.get_layer(name).output).predict(x, verbose=0).reshape(len(x), -1)


@pytest.mark.parametrize("make, apply", [
    (lambda: layers.BatchNormalization(name="between"),
     lambda v, w: (v - w[2]) / np.sqrt(w[3] + 1e-3) * w[0] + w[1]),
    (lambda: layers.LayerNormalization(name="between"),
     lambda v, w: (v - v.mean(1, keepdims=True)) / np.sqrt(v.var(1, keepdims=True) + 1e-3) * w[0] + w[1]),
    (lambda: layers.PReLU(name="between"), lambda v, w: np.where(v > 0, v, w[0] * v)),
], ids=["batchnorm", "layernorm", "prelu"])
def test_a_layer_with_weights_per_feature_between_flatten_and_dense_speaks_keras_s_order(make, apply, tmp_path):
    # Its vectors, like the Dense's rows, follow the Flatten's order inside and Keras's in
    # get_weights/set_weights and .keras files: both kept the stored order until stop 40, and
    # Keras's weights (or files) predicted wrong by up to 21.
    model = _sequential(make())
    weights = _set_random(model)
    if isinstance(model.get_layer("between"), layers.BatchNormalization):
        weights[5] = np.abs(weights[5]) + 0.5  # a variance
        model.set_weights(weights)
    between = model.get_layer("between").get_weights()
    kernel, bias = model.get_layer("head").get_weights()
    want = apply(_maps(model, "maps").astype(np.float64), between) @ kernel + bias
    np.testing.assert_allclose(model.predict(X, verbose=0), want, rtol=1e-4, atol=1e-4)
    stored = next(iter(model.get_layer("between").params.values()))
    assert not np.array_equal(stored, between[0])  # stored in the Flatten's order
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(convforge.load_model(tmp_path / "m.keras").predict(X, verbose=0),
                                  model.predict(X, verbose=0))


def test_a_concatenate_or_an_add_of_flattens_passes_each_part_s_order_to_the_dense():
    # Image and metadata features side by side (Concatenate([Flatten(maps), vector])), or two
    # Flattens summed: the Dense's rows for the image part follow Keras's order in get_weights.
    image, meta = convforge.Input((6, 6, 2)), convforge.Input((3,))
    maps = layers.Conv2D(3, 3, name="maps")(image)
    joined = layers.Concatenate()([layers.Flatten()(maps), layers.Dense(5, name="meta")(meta)])
    summed = layers.Add()([layers.Flatten()(maps), layers.Flatten()(layers.Conv2D(3, 3, name="maps2")(image))])
    model = convforge.Model([image, meta], [layers.Dense(4, name="head")(joined), layers.Dense(2, name="head2")(summed)])
    _set_random(model)
    m = np.random.default_rng(2).standard_normal((len(X), 3)).astype(np.float32)
    features = np.concatenate([_maps(model, "maps"), model.get_layer("meta")(m)], axis=1)
    kernel, bias = model.get_layer("head").get_weights()
    both = _maps(model, "maps") + _maps(model, "maps2")
    kernel2, bias2 = model.get_layer("head2").get_weights()
    got = model.predict([X, m], verbose=0)
    np.testing.assert_allclose(got[0], features @ kernel + bias, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1], both @ kernel2 + bias2, rtol=1e-4, atol=1e-4)


def test_a_rebuilt_stack_tells_its_dense_again():
    model = _sequential()
    model.pop()
    model.add(layers.Dense(4, name="head2"))
    head = model.get_layer("head2")
    assert not np.array_equal(head.get_weights()[0], head.params["kernel"])  # after the Flatten: Keras's order
    model.pop()
    model.pop()
    model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(4, name="head3"))
    head = model.get_layer("head3")
    np.testing.assert_array_equal(head.get_weights()[0], head.params["kernel"])


# A review's findings, each failing before its fix.

def test_a_head_model_after_a_flatten_takes_that_models_order_whatever_is_done_to_it():
    head = convforge.Sequential([convforge.Input((48,)), layers.Dense(4, name="head")], name="vector_head")
    i = convforge.Input((6, 6, 2))
    model = convforge.Model(i, head(layers.Flatten()(layers.Conv2D(3, 3, name="maps")(i))))
    nested = convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(3, 3, name="smaps"), layers.Flatten(),
                                   convforge.Sequential([layers.Dropout(0.1), layers.Dense(4, name="shead")])])
    head.build((None, 48))  # built again on its own: it reads its input, so it tells no order
    head.add(layers.Dropout(0.1))
    head.pop()
    for m, maps, name in ((model, "maps", "head"), (nested, "smaps", "shead")):
        _set_random(m)
        np.testing.assert_allclose(m.predict(X, verbose=0), _keras_head(m, maps, name), rtol=1e-5, atol=1e-5)


def test_a_tail_cut_after_a_channels_first_flatten_tells_no_order():
    model = convforge.Sequential([convforge.Input((2, 6, 6)), layers.Conv2D(3, 3, data_format="channels_first"),
                                  layers.Flatten(), layers.Dense(4, name="head")])
    convforge.Model(model.layers[1].output, model.output)  # the tail: its Flatten reads channels-first maps
    head = model.get_layer("head")
    np.testing.assert_array_equal(head.get_weights()[0], head.params["kernel"])  # Keras's order is the stored one


def test_a_dense_after_a_flatten_in_one_call_and_after_a_dense_in_another_warns_and_keeps_the_stored_order():
    shared = layers.Dense(4, name="shared_head")
    i = convforge.Input((6, 6, 2))
    flat = layers.Flatten()(layers.Conv2D(3, 3)(i))
    with pytest.warns(UserWarning, match="'shared_head' \\(Dense\\) follows a Flatten of images in one call and not"):
        convforge.Model(i, [shared(flat), shared(layers.Dense(48)(flat))])
    np.testing.assert_array_equal(shared.get_weights()[0], shared.params["kernel"])


def test_rescaling_and_a_flat_reshape_keep_the_order_and_the_dense_pickles():
    import pickle

    model = _sequential(layers.Rescaling(0.5), layers.Reshape((-1,)))
    _set_random(model)
    maps = convforge.Model(model.inputs, model.get_layer("maps").output).predict(X, verbose=0)
    kernel, bias = model.get_layer("head").get_weights()
    np.testing.assert_allclose(model.predict(X, verbose=0), 0.5 * maps.reshape(len(X), -1) @ kernel + bias,
                               rtol=1e-5, atol=1e-5)
    again = pickle.loads(pickle.dumps(model.get_layer("head")))  # a closure in its layouts did not pickle
    np.testing.assert_array_equal(again.params["kernel"], model.get_layer("head").params["kernel"])
    # Alone, it is in no model: no Flatten before it, the stored order is its order.
    np.testing.assert_array_equal(again.get_weights()[0], again.params["kernel"])


# A second review's findings, each failing before its fix.

def test_keras_channels_first_flatten_moves_the_channels_last_as_keras_does():
    # Keras's Flatten(data_format='channels_first') transposes the channels to the end first.
    image = convforge.Sequential([convforge.Input((2, 6, 6)), layers.Conv2D(3, 3, data_format="channels_first",
                                                                            name="maps"),
                                  layers.Flatten(data_format="channels_first"), layers.Dense(4, name="head")])
    _set_random(image)
    maps = image.activations(X.transpose(0, 3, 1, 2).copy())[0]  # (batch, channels, height, width)
    kernel, bias = image.get_layer("head").get_weights()
    expected = maps.transpose(0, 2, 3, 1).reshape(len(X), -1) @ kernel + bias
    np.testing.assert_allclose(image.predict(X.transpose(0, 3, 1, 2).copy(), verbose=0), expected, rtol=1e-5, atol=1e-5)
    steps = convforge.Sequential([convforge.Input((2, 8)), layers.Conv1D(3, 3, data_format="channels_first"),
                                  layers.Flatten(data_format="channels_first"), layers.Dense(4, name="head")])
    head = steps.get_layer("head")  # (channels, steps) flattened as (steps, channels)
    np.testing.assert_array_equal(head.get_weights()[0], head.params["kernel"].reshape(3, 6, 4).transpose(1, 0, 2)
                                  .reshape(18, 4))


def test_a_model_that_went_away_or_popped_the_dense_no_longer_decides():
    import gc

    shared = layers.Dense(4, name="kept_head")
    main = _sequential()
    main.pop()
    main.add(shared)  # after the Flatten: Keras's order
    with pytest.warns(UserWarning, match="'kept_head'"):
        temporary = convforge.Sequential([convforge.Input((4,)), layers.Dense(48), shared])
    del temporary
    gc.collect()
    _set_random(main)
    np.testing.assert_allclose(main.predict(X, verbose=0), _keras_head(main, "maps", "kept_head"), rtol=1e-5, atol=1e-5)
    assert main.pop() is shared
    vectors = convforge.Sequential([convforge.Input((4,)), layers.Dense(48), shared])  # no warning: main let it go
    np.testing.assert_array_equal(shared.get_weights()[0], shared.params["kernel"])
    del vectors


def test_a_channels_first_flatten_after_channels_last_maps_leaves_the_model_channels_last():
    # Flatten(data_format='channels_first') made the whole model read channels-first images: the
    # conv took a (6, 6, 6) input as (channels, height, width). In Keras a Flatten's data_format
    # says only how it orders the values (axis 1 moved last).
    model = convforge.Sequential([convforge.Input((6, 6, 6)), layers.Conv2D(3, 3, name="maps"),
                                  layers.Flatten(data_format="channels_first"), layers.Dense(2, name="head")])
    x = np.random.default_rng(3).standard_normal((3, 6, 6, 6)).astype(np.float32)
    _set_random(model)
    assert model.get_layer("maps").output_shape == (None, 4, 4, 3)
    maps = convforge.Model(model.inputs, model.get_layer("maps").output).predict(x, verbose=0)  # (n, h, w, c)
    kernel, bias = model.get_layer("head").get_weights()
    want = np.moveaxis(maps, 1, -1).reshape(3, -1) @ kernel + bias
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-4)


def test_a_scalar_normalization_passes_the_flatten_s_order_on():
    # One mean and variance for all: the features keep their places (the Dense after it kept the
    # stored order: 37 off with Keras's weights).
    model = _sequential(layers.Normalization(mean=0.5, variance=2.0))
    _set_random(model)
    kernel, bias = model.get_layer("head").get_weights()
    want = (_maps(model, "maps") - 0.5) / np.sqrt(2.0) @ kernel + bias
    np.testing.assert_allclose(model.predict(X, verbose=0), want, rtol=1e-4, atol=1e-4)


def _graph_after_flatten(combine):
    image, vector = convforge.Input((6, 6, 2)), convforge.Input((48,))
    flat = layers.Flatten()(layers.Conv2D(3, 3)(image))
    return convforge.Model([image, vector], layers.Dense(2)(combine(flat, vector)))


@pytest.mark.parametrize("make, what", [
    (lambda: _sequential(layers.Reshape((48, 1)), layers.Conv1D(2, 3), layers.Flatten()), "'reshape' \\(Reshape\\) reshapes"),
    (lambda: _sequential(layers.Normalization(mean=np.arange(48.0), variance=np.ones(48))),
     "\\(Normalization\\) normalises with a mean and variance per feature"),
    (lambda: _graph_after_flatten(lambda f, v: layers.Add()([f, v])), "\\(Add\\) combines, value by value"),
    (lambda: _graph_after_flatten(lambda f, v: layers.Multiply()([f, layers.Dense(48, activation="sigmoid")(v)])),
     "\\(Multiply\\) combines, value by value"),
], ids=["reshape-to-steps", "normalization-per-feature", "add-an-input", "gate"])
def test_layers_no_weight_order_can_put_right_after_a_flatten_warn(make, what):
    # These computed otherwise than Keras's same model, silently (22 to 154 off with its weights).
    with pytest.warns(UserWarning, match=f"{what}.* the features of a Flatten of channels-last images: .*Reshape"):
        make()


def test_flattens_combined_in_one_order_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = convforge.Input((6, 6, 2))
        maps = layers.Conv2D(3, 3)(image)
        summed = layers.Add()([layers.Flatten()(maps), layers.Flatten()(layers.ReLU()(maps))])
        convforge.Model(image, layers.Dense(2)(summed))
        convforge.Sequential([convforge.Input((2, 6, 6)), layers.Conv2D(3, 3, data_format="channels_first"),
                              layers.Flatten(), layers.Reshape((48, 1)), layers.Conv1D(2, 3)])  # Keras's order already


def test_a_per_sample_gate_keeps_the_flatten_s_order_and_the_warning_comes_once():
    # Multiply([Flatten(maps), gate (batch, 1)]): the gate is broadcast and the features keep their
    # places, so the Dense after it takes the Flatten's order (it was warned about, and 1.5 off).
    image, gate_in = convforge.Input((6, 6, 2)), convforge.Input((1,))
    gated = layers.Multiply()([layers.Flatten()(layers.Conv2D(3, 3, name="maps")(image)), gate_in])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = convforge.Model([image, gate_in], layers.Dense(2, name="head")(gated))
    _set_random(model)
    g = np.linspace(0.5, 1.5, len(X)).astype(np.float32)[:, None]
    kernel, bias = model.get_layer("head").get_weights()
    np.testing.assert_allclose(model.predict([X, g], verbose=0), _maps(model, "maps") * g @ kernel + bias,
                               rtol=1e-4, atol=1e-4)
    # A Sequential is built again at every add(): its warning came once per build.
    stack = convforge.Sequential([convforge.Input((6, 6, 2)), layers.Conv2D(3, 3), layers.Flatten()])
    with pytest.warns(UserWarning, match="reshapes") as caught:
        stack.add(layers.Reshape((48, 1)))
        stack.add(layers.Conv1D(2, 3))
        stack.add(layers.Flatten())
    assert len([w for w in caught if "reshapes" in str(w.message)]) == 1
